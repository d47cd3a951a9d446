"""Slack incoming webhooks: a ``text`` fallback and a Block Kit layout within Slack's limits."""

from __future__ import annotations

from typing import Any

from controller.adapters.alerts.base import WebhookSink
from controller.adapters.alerts.formatting import (
    check_line,
    check_numbers,
    clip,
    graph_links,
    phase_change,
    state_word,
    step_text,
)
from controller.core.alerts import AlertMessage, FailingCheck

_SLACK_EMOJI = {"critical": ":red_circle:", "warning": ":large_orange_circle:", "info": ":large_blue_circle:"}


# Slack Block Kit limits (docs.slack.dev/reference/block-kit): 50 blocks a message, header text 150
# characters, section text 3000, at most 10 section fields of 2000 each, 10 context elements.
SLACK_MAX_BLOCKS = 50
SLACK_HEADER_TEXT = 150
SLACK_SECTION_TEXT = 3000
SLACK_MAX_FIELDS = 10
SLACK_FIELD_TEXT = 2000
SLACK_MAX_CONTEXT = 10
SLACK_TEXT = 3000
"""The ``text`` fallback (notifications, screen readers) is kept short, though Slack allows far more."""


def _slack_escape(text: str) -> str:
    """Text safe inside Slack ``mrkdwn`` (only ``&``, ``<`` and ``>`` are control characters)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_code(text: str) -> str:
    return _slack_escape(text.replace("`", "'"))


class SlackSink(WebhookSink):
    """Posts to a Slack incoming webhook: a ``text`` fallback and a Block Kit ``blocks`` layout.

    Layout: a ``header`` (state, alert name, policy); a ``section`` with the summary and description and
    fields for policy, target, route, step and weight, phase change, severity, reason and run id; one
    ``section`` per failing check with its verdict, reason, numbers and query; a ``context`` block with the
    graph links. Texts are cut to Slack's limits; beyond 50 blocks the remaining checks are counted.
    Slack answers ``200 ok``; errors are text (``invalid_payload``, ``no_service``...).

    Args:
        client: the HTTP client.
        webhook_url: the incoming-webhook URL (a secret).
    """

    name = "slack"

    @staticmethod
    def render(message: AlertMessage) -> dict[str, Any]:
        """The webhook payload."""
        emoji = ":white_check_mark:" if message.state == "resolved" else _SLACK_EMOJI.get(message.severity, "")
        header = clip(f"{emoji} {state_word(message)}: {message.title}".strip(), SLACK_HEADER_TEXT)
        intro = f"*{_slack_escape(message.summary)}*"
        if message.description:
            intro += "\n" + _slack_escape(message.description)
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
        fields = [
            {"type": "mrkdwn", "text": clip(f"*{name}*\n{_slack_escape(value or '—')}", SLACK_FIELD_TEXT)}
            for name, value in facts[:SLACK_MAX_FIELDS]
        ]
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}},
            {"type": "section", "text": {"type": "mrkdwn", "text": clip(intro, SLACK_SECTION_TEXT)}, "fields": fields},
        ]
        links = [
            f"<{url}|{_slack_escape(label).replace('|', '/')}>"
            for label, url in graph_links(message)
            if len(url) < SLACK_SECTION_TEXT - 100 and "|" not in url and ">" not in url
        ]
        room = SLACK_MAX_BLOCKS - len(blocks) - (1 if links else 0)
        checks = list(message.checks)
        shown = checks if len(checks) <= room else checks[: room - 1]
        blocks += [{"type": "section", "text": {"type": "mrkdwn", "text": _slack_check(check)}} for check in shown]
        if len(shown) < len(checks):
            more = f"… and {len(checks) - len(shown)} more failing checks (see the controller's status)"
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": more}})
        if links:
            elements = links if len(links) <= SLACK_MAX_CONTEXT else [*links[: SLACK_MAX_CONTEXT - 1], "…"]
            blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": text} for text in elements]})
        fallback = f"[{state_word(message)}] {message.title}: {message.summary}"
        if message.checks:
            fallback += " — " + "; ".join(check_line(check) for check in message.checks)
        return {"text": clip(_slack_escape(fallback), SLACK_TEXT), "blocks": blocks}


def _slack_check(check: FailingCheck) -> str:
    """One check as a ``mrkdwn`` section text within Slack's 3000 characters (the query is cut first)."""
    head = f"*Check {_slack_escape(check.name)}*: {_slack_escape(check.verdict)}"
    if check.reason:
        head += f" — {_slack_escape(check.reason)}"
    head += f"\n{_slack_escape(check_numbers(check))}"
    if not check.queries:
        return clip(head, SLACK_SECTION_TEXT)
    room = SLACK_SECTION_TEXT - len(head) - 10
    if room < 40:
        return clip(head, SLACK_SECTION_TEXT)
    query = clip(_slack_code("\n".join(check.queries)), room)
    return f"{head}\n```{query}```"
