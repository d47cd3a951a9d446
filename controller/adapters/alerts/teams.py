"""Microsoft Teams: an Adaptive Card for Workflows webhooks, or a legacy ``MessageCard`` when asked for.

Microsoft retired Office 365 connectors in Teams; their replacement, a Workflows webhook ("When a Teams
webhook request is received"), takes Adaptive Cards only, inside a message envelope
(``{"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
"content": <card>}]}``). The card is schema version 1.4 (Workflows render 1.4 and lower). ``MessageCard``
stays available (``format: messageCard``) for endpoints that still take it.
"""

from __future__ import annotations

import re
from typing import Any, Literal

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

TeamsFormat = Literal["adaptiveCard", "messageCard"]
TEAMS_FORMATS: tuple[TeamsFormat, ...] = ("adaptiveCard", "messageCard")

# Teams takes at most 28 KB a message; cards keep up to 4 buttons.
TEAMS_MAX_BYTES = 27_000
TEAMS_MAX_ACTIONS = 4
TEAMS_QUERY_TEXT = 1000

ADAPTIVE_CARD_VERSION = "1.4"
ADAPTIVE_CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
ADAPTIVE_CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"

_TEAMS_MARKDOWN = re.compile(r"([\\`*_\[\]#~])")

# Adaptive Card container styles and text colours by severity, and once resolved.
_STYLES = {"critical": "attention", "warning": "warning", "info": "accent"}
_TEXT_COLORS = {"critical": "attention", "warning": "warning", "info": "accent"}


def _teams_escape(text: str) -> str:
    """Text shown literally (MessageCard fields and Adaptive Card text blocks and facts are Markdown)."""
    return _TEAMS_MARKDOWN.sub(r"\\\1", text)


class TeamsSink(HttpSink):
    """Posts to a Microsoft Teams webhook: an Adaptive Card (Workflows) by default, a ``MessageCard`` on request.

    **Adaptive Card** (``card_format="adaptiveCard"``, for Workflows webhooks, ``https://...logic.azure.com/...``
    or ``https://...powerplatform.com/...``): the card (version 1.4) has a coloured container with the
    title and summary (red for critical, orange for warning, blue for info, green when resolved), the
    description, a fact set with the rollout facts, one container per failing check with its numbers and
    its query in monospace, and up to four ``Action.OpenUrl`` buttons opening the graphs. It goes in the
    Workflows message envelope. Workflows answer ``202`` with an empty body.

    **MessageCard** (``card_format="messageCard"``, Office 365 connector webhooks, which Microsoft retired):
    ``@type``/``@context``, ``summary``, ``themeColor``, ``title``, ``text``, ``sections`` with ``facts``,
    ``potentialAction`` ``OpenUri`` buttons.

    Either is kept under Teams' 28 KB by dropping failing checks from the end (a line says how many).
    Connectors report many failures (throttling, a too-large card, a removed channel) as ``200`` with a text
    "Webhook message delivery failed with error: ... HTTP error 429 ...": such an answer is a failure with
    the embedded status.

    Args:
        client: the HTTP client.
        webhook_url: the webhook URL (a secret: Workflows URLs carry their signature in the query).
        card_format: ``adaptiveCard`` (default) or ``messageCard`` (the policy's ``format``).
    """

    name = "teams"

    def __init__(self, client: httpx.Client, *, webhook_url: str, card_format: TeamsFormat = "adaptiveCard") -> None:
        if card_format not in TEAMS_FORMATS:
            raise ValueError(f"teams sink: unknown format {card_format!r} (known: {', '.join(TEAMS_FORMATS)})")
        super().__init__(client, webhook_url)
        self.card_format: TeamsFormat = card_format

    def send(self, message: AlertMessage, *, timeout: float | None = None) -> None:
        """Post the card once.

        Args:
            message: the alert.
            timeout: upper bound in seconds on each phase of the request (None: the client's timeouts).

        Raises:
            AlertDeliveryError: not delivered, including a ``200`` whose body reports a failure.
        """
        payload = self.render_message_card(message) if self.card_format == "messageCard" else self.render(message)
        response = self._post(self._url, dumps(payload), timeout=timeout)
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
        """The Workflows message: the envelope with one Adaptive Card attachment."""
        return workflows_message(adaptive_card(message))

    @staticmethod
    def render_message_card(message: AlertMessage) -> dict[str, Any]:
        """The legacy connector ``MessageCard``."""
        facts = _rollout_facts(message)
        rollout = {
            "activityTitle": "Rollout",
            "facts": [{"name": name, "value": _teams_escape(value or "—")} for name, value in facts],
            "markdown": True,
        }
        checks = [_message_card_check(check) for check in message.checks]
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


def workflows_message(card: dict[str, Any]) -> dict[str, Any]:
    """``card`` in the message envelope Teams Workflows webhooks take."""
    return {
        "type": "message",
        "attachments": [{"contentType": ADAPTIVE_CARD_CONTENT_TYPE, "contentUrl": None, "content": card}],
    }


def _rollout_facts(message: AlertMessage) -> list[tuple[str, str]]:
    return [
        ("Policy", f"{message.namespace}/{message.policy}"),
        ("Target", message.target),
        ("Route", message.route),
        ("Step / weight", step_text(message)),
        ("Phase", phase_change(message)),
        ("Severity", f"{message.severity} ({message.state})"),
        ("Reason", message.reason),
        ("Run id", message.run_id),
    ]


def _check_facts(check: FailingCheck) -> list[tuple[str, str]]:
    return [
        ("Canary value", format_number(check.canary_value)),
        ("Stable value", format_number(check.stable_value)),
        ("Threshold", check.threshold or "—"),
        ("Sample size", format_number(check.sample_size)),
    ]


def _text(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": _teams_escape(text), "wrap": True, **style}


def _fact_set(facts: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "type": "FactSet",
        "facts": [{"title": name, "value": _teams_escape(value or "—")} for name, value in facts],
    }


def adaptive_card(message: AlertMessage) -> dict[str, Any]:
    """The Adaptive Card (schema 1.4) of ``message``, under Teams' 28 KB."""
    resolved = message.state == "resolved"
    style = "good" if resolved else _STYLES.get(message.severity, "accent")
    header: list[dict[str, Any]] = [
        _text(f"{state_word(message)}: {message.title}", size="Large", weight="Bolder"),
        _text(message.summary),
    ]
    body: list[dict[str, Any]] = [{"type": "Container", "style": style, "bleed": True, "items": header}]
    if message.description:
        body.append(_text(message.description, isSubtle=True, spacing="Medium"))
    body.append(_fact_set(_rollout_facts(message)))
    checks = [_adaptive_check(check, resolved=resolved, severity=message.severity) for check in message.checks]
    actions = [
        {"type": "Action.OpenUrl", "title": clip(f"Graph: {label}", 100), "url": url}
        for label, url in graph_links(message)
    ][:TEAMS_MAX_ACTIONS]
    card: dict[str, Any] = {
        "$schema": ADAPTIVE_CARD_SCHEMA,
        "type": "AdaptiveCard",
        "version": ADAPTIVE_CARD_VERSION,
        "fallbackText": clip(f"{state_word(message)}: {message.title}: {message.summary}", 500),
        "body": [*body, *checks],
    }
    if actions:
        card["actions"] = actions
    dropped = 0
    while len(dumps(workflows_message(card))) > TEAMS_MAX_BYTES and checks:
        checks.pop()
        dropped += 1
        card["body"] = [*body, *checks]
    if dropped:
        card["body"].append(_text(f"… and {dropped} more failing checks (see the controller's status)", isSubtle=True))
    return card


def _adaptive_check(check: FailingCheck, *, resolved: bool, severity: str) -> dict[str, Any]:
    title_color = "good" if resolved else _TEXT_COLORS.get(severity, "accent")
    items: list[dict[str, Any]] = [_text(f"Check {check.name}: {check.verdict}", weight="Bolder", color=title_color)]
    if check.reason:
        items.append(_text(check.reason))
    items.append(_fact_set(_check_facts(check)))
    if check.queries:
        query = clip("\n".join(check.queries), TEAMS_QUERY_TEXT)
        items.append(_text(query, fontType="Monospace", size="Small", isSubtle=True))
    return {"type": "Container", "separator": True, "spacing": "Medium", "items": items}


def _message_card_check(check: FailingCheck) -> dict[str, Any]:
    section: dict[str, Any] = {
        "activityTitle": _teams_escape(f"Check {check.name}: {check.verdict}"),
        "facts": [{"name": name, "value": _teams_escape(value)} for name, value in _check_facts(check)],
        "markdown": True,
    }
    if check.reason:
        section["activitySubtitle"] = _teams_escape(check.reason)
    if check.queries:
        query = clip("\n".join(check.queries), TEAMS_QUERY_TEXT)
        section["facts"].append({"name": "Query", "value": _teams_escape(query)})
    return section
