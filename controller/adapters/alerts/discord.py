"""Discord webhooks: a one-line ``content`` and one embed within Discord's limits."""

from __future__ import annotations

import re
from typing import Any

import httpx

from controller.adapters.alerts.base import WebhookSink, retry_after_seconds
from controller.adapters.alerts.formatting import (
    check_numbers,
    clip,
    color,
    first_graph,
    graph_links,
    phase_change,
    rfc3339,
    state_word,
    step_text,
)
from controller.core.alerts import AlertMessage, FailingCheck

# Discord embed limits (discord.com/developers/docs/resources/message#embed-object-embed-limits).
DISCORD_CONTENT = 2000
DISCORD_TITLE = 256
DISCORD_DESCRIPTION = 4096
DISCORD_MAX_FIELDS = 25
DISCORD_FIELD_NAME = 256
DISCORD_FIELD_VALUE = 1024
DISCORD_FOOTER = 2048
DISCORD_TOTAL = 6000
"""Characters across title, description, field names and values and footer text of all embeds."""

_DISCORD_MARKDOWN = re.compile(r"([\\`*_~|>\[\]()#-])")


def _discord_escape(text: str) -> str:
    return _DISCORD_MARKDOWN.sub(r"\\\1", text)


def embed_size(embed: dict[str, Any]) -> int:
    """Characters Discord counts towards its 6000 a message: title, description, fields, footer, author."""
    total = len(embed.get("title", "")) + len(embed.get("description", ""))
    total += sum(len(field["name"]) + len(field["value"]) for field in embed.get("fields", []))
    total += len(embed.get("footer", {}).get("text", "")) + len(embed.get("author", {}).get("name", ""))
    return total


class DiscordSink(WebhookSink):
    """Posts to a Discord webhook: ``content`` (a one-line notice) and one embed.

    The embed has the title (linked to the controller or the first graph), the summary and description,
    ``color`` by severity (green when resolved), ``timestamp`` (the start, or the end when resolved), fields
    for policy, target, route, step and weight, phase change, reason and run id, one field per failing check
    (numbers, reason, query) and one with the graph links, and a footer with the message key. Discord's limits
    are respected by cutting: 25 fields, 256 characters a field name, 1024 a value, 4096 the description and
    6000 in total (checks beyond the budget are counted, not shown). ``allowed_mentions`` is empty, so no
    text in an alert can ping anyone. Discord answers ``204``; its ``429`` carries ``retry_after``.

    Args:
        client: the HTTP client.
        webhook_url: the webhook URL (a secret).
    """

    name = "discord"

    def _retry_after(self, response: httpx.Response) -> float | None:
        header = retry_after_seconds(response)
        if header is not None:
            return header
        try:
            body = response.json()
        except ValueError:
            return None
        value = body.get("retry_after") if isinstance(body, dict) else None
        return float(value) if isinstance(value, int | float) and value >= 0 else None

    @staticmethod
    def render(message: AlertMessage) -> dict[str, Any]:
        """The webhook payload."""
        title = clip(f"{state_word(message)}: {message.title}", DISCORD_TITLE)
        description = _discord_escape(message.summary)
        if message.description:
            description += "\n\n" + _discord_escape(message.description)
        fields = [
            _discord_field("Policy", f"{message.namespace}/{message.policy}", inline=True),
            _discord_field("Target", message.target, inline=True),
            _discord_field("Route", message.route, inline=True),
            _discord_field("Step / weight", step_text(message), inline=True),
            _discord_field("Phase", phase_change(message), inline=True),
            _discord_field("Run id", message.run_id, inline=True),
            _discord_field("Reason", message.reason, inline=False),
        ]
        links = [
            f"[{_discord_escape(label)}]({url})"
            for label, url in graph_links(message)
            if len(url) < DISCORD_FIELD_VALUE - 50 and ")" not in url
        ]
        link_fields: list[dict[str, Any]] = []
        if links:
            value = ""
            for link in links:
                if len(value) + len(link) + 1 > DISCORD_FIELD_VALUE:
                    break
                value = f"{value}\n{link}" if value else link
            link_fields.append({"name": "Graphs", "value": value, "inline": False})
        embed: dict[str, Any] = {
            "title": title,
            "description": clip(description, DISCORD_DESCRIPTION),
            "color": color(message),
            "timestamp": rfc3339(
                message.ended_at if message.state == "resolved" and message.ended_at else message.started_at
            ),
            "footer": {"text": clip(f"canary-controller · {message.key}", DISCORD_FOOTER)},
        }
        link = message.source_url or first_graph(message)
        if link.startswith(("http://", "https://")) and len(link) <= 2048:
            embed["url"] = link
        # Fit the checks between the fixed fields and the links, within 25 fields and 6000 characters.
        room = DISCORD_MAX_FIELDS - len(fields) - len(link_fields) - 1
        budget = DISCORD_TOTAL - embed_size({**embed, "fields": fields + link_fields}) - 100
        checks = [_discord_check(check) for check in message.checks]
        shown: list[dict[str, Any]] = []
        for field in checks:
            size = len(field["name"]) + len(field["value"])
            if len(shown) >= room or size > budget:
                break
            shown.append(field)
            budget -= size
        if len(shown) < len(checks):
            more = f"{len(checks) - len(shown)} more failing checks; see the controller's status"
            shown.append({"name": "More checks", "value": more, "inline": False})
        embed["fields"] = fields + shown + link_fields
        content = clip(f"**{_discord_escape(title)}**: {_discord_escape(message.summary)}", DISCORD_CONTENT)
        return {"content": content, "embeds": [embed], "allowed_mentions": {"parse": []}}


def _discord_field(name: str, value: str, *, inline: bool) -> dict[str, Any]:
    return {
        "name": clip(name, DISCORD_FIELD_NAME) or "—",
        "value": clip(_discord_escape(value), DISCORD_FIELD_VALUE) or "—",
        "inline": inline,
    }


def _discord_check(check: FailingCheck) -> dict[str, Any]:
    value = _discord_escape(check_numbers(check))
    if check.reason:
        value += "\n" + _discord_escape(check.reason)
    if check.queries:
        room = DISCORD_FIELD_VALUE - len(value) - 10
        if room >= 40:
            value += "\n```" + clip("\n".join(check.queries).replace("`", "'"), room) + "```"
    return {
        "name": clip(f"Check {check.name}: {check.verdict}", DISCORD_FIELD_NAME),
        "value": clip(value, DISCORD_FIELD_VALUE),
        "inline": False,
    }
