"""Microsoft Teams incoming webhooks (Office 365 connectors): a legacy ``MessageCard``."""

from __future__ import annotations

import re
from typing import Any

import httpx

from controller.adapters.alerts.base import HttpSink
from controller.adapters.alerts.formatting import (
    clip,
    color,
    dumps,
    format_number,
    graph_links,
    phase_change,
    state_word,
    step_text,
)
from controller.core.alerts import AlertMessage, FailingCheck

_TEAMS_FAILURE = re.compile(r"webhook message delivery failed", re.IGNORECASE)
_TEAMS_STATUS = re.compile(r"HTTP error (\d{3})")


# Teams: an Office 365 connector card ("MessageCard"), at most 28 KB a message, up to 4 actions.
TEAMS_MAX_BYTES = 27_000
TEAMS_MAX_ACTIONS = 4
TEAMS_QUERY_TEXT = 1000

_TEAMS_MARKDOWN = re.compile(r"([\\`*_\[\]#~])")


def _teams_escape(text: str) -> str:
    """Text shown literally in a MessageCard (every text field is Markdown)."""
    return _TEAMS_MARKDOWN.sub(r"\\\1", text)


class TeamsSink(HttpSink):
    """Posts to a Microsoft Teams incoming webhook as a legacy actionable ``MessageCard``.

    The MessageCard (``@type``/``@context``, ``summary``, ``themeColor``, ``title``, ``text``, ``sections``
    with ``facts``, ``potentialAction`` ``OpenUri`` buttons) is what Office 365 connector webhooks
    (``https://<tenant>.webhook.office.com/webhookb2/...``) take and what most tools send; Teams Workflows
    webhooks expect an Adaptive Card instead and are not supported by this sink. ``themeColor`` is red for
    critical, orange for warning, blue for info, green when resolved. One section holds the rollout facts,
    one section per failing check holds its numbers and query; up to four buttons open the graphs. The
    card is kept under Teams' 28 KB by dropping check sections from the end.

    Teams connectors answer ``200`` with ``1``, and report many failures (throttling, a too-large card, a
    removed channel) as ``200`` with a text "Webhook message delivery failed with error: ... HTTP error
    429 ...": such an answer is a failure with the embedded status.

    Args:
        client: the HTTP client.
        webhook_url: the incoming-webhook URL (a secret).
    """

    name = "teams"

    def __init__(self, client: httpx.Client, *, webhook_url: str) -> None:
        super().__init__(client, webhook_url)

    def send(self, message: AlertMessage, *, timeout: float | None = None) -> None:
        """Post the card once.

        Args:
            message: the alert.
            timeout: upper bound in seconds on each phase of the request (None: the client's timeouts).

        Raises:
            AlertDeliveryError: not delivered, including a ``200`` whose body reports a failure.
        """
        response = self._post(self._url, dumps(self.render(message)), timeout=timeout)
        text = response.text
        if _TEAMS_FAILURE.search(text):
            found = _TEAMS_STATUS.search(text)
            status = int(found.group(1)) if found else 0
            retryable = status == 0 or status >= 500 or status in {408, 429}
            raise self._fail(
                f"answered HTTP {response.status_code} but reported HTTP error {status or 'unknown'}: "
                f"{self._remote_text(response)}",
                status=status,
                retryable=retryable,
            )

    @staticmethod
    def render(message: AlertMessage) -> dict[str, Any]:
        """The MessageCard."""
        facts = [
            ("Policy", f"{message.namespace}/{message.policy}"),
            ("Target", message.target),
            ("Route", message.route),
            ("Step / weight", step_text(message)),
            ("Phase", phase_change(message)),
            ("Severity", f"{message.severity} ({message.state})"),
            ("Reason", message.reason),
            ("Run id", message.run_id),
        ]
        rollout = {
            "activityTitle": "Rollout",
            "facts": [{"name": name, "value": _teams_escape(value or "—")} for name, value in facts],
            "markdown": True,
        }
        checks = [_teams_check(check) for check in message.checks]
        actions = [
            {"@type": "OpenUri", "name": clip(f"Graph: {label}", 100), "targets": [{"os": "default", "uri": url}]}
            for label, url in graph_links(message)
        ][:TEAMS_MAX_ACTIONS]
        text = _teams_escape(message.summary)
        if message.description:
            text += "\n\n" + _teams_escape(message.description)
        card: dict[str, Any] = {
            "@type": "MessageCard",
            "@context": "https://schema.org/extensions",
            "summary": clip(f"{state_word(message)}: {message.title}", 200),
            "themeColor": f"{color(message):06X}",
            "title": _teams_escape(f"{state_word(message)}: {message.title}"),
            "text": text,
            "sections": [rollout, *checks],
        }
        if actions:
            card["potentialAction"] = actions
        dropped = 0
        while len(dumps(card)) > TEAMS_MAX_BYTES and len(card["sections"]) > 1:
            card["sections"].pop()
            dropped += 1
        if dropped:
            more = {"activityTitle": f"… and {dropped} more failing checks (see the controller's status)"}
            card["sections"].append(more)
        return card


def _teams_check(check: FailingCheck) -> dict[str, Any]:
    facts = [
        ("Canary value", format_number(check.canary_value)),
        ("Stable value", format_number(check.stable_value)),
        ("Threshold", check.threshold or "—"),
        ("Sample size", format_number(check.sample_size)),
    ]
    section: dict[str, Any] = {
        "activityTitle": _teams_escape(f"Check {check.name}: {check.verdict}"),
        "facts": [{"name": name, "value": _teams_escape(value)} for name, value in facts],
        "markdown": True,
    }
    if check.reason:
        section["activitySubtitle"] = _teams_escape(check.reason)
    if check.queries:
        query = clip("\n".join(check.queries), TEAMS_QUERY_TEXT)
        section["facts"].append({"name": "Query", "value": _teams_escape(query)})
    return section
