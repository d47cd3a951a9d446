"""Keeping secrets and long remote texts out of messages: shared by every adapter that talks HTTP.

Remote error bodies are cut short (``cut``) before they reach an error, a log line or an alert; credentials
are replaced by ``***`` (``redact``); URLs whose path or query is a credential (Slack, Teams and Discord
webhooks) are shown as ``scheme://host/…`` (``safe_url``) and scrubbed from texts piece by piece
(``secret_url_parts``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlsplit

MAX_MESSAGE = 300
"""Longest error text taken from a remote service (or from a failed connection) into a message."""
MIN_REDACTED = 4
"""Secrets shorter than this are not searched for in messages (they would garble every message)."""
SECRET_SEGMENT = 8
"""Path segments and query values of a secret URL at least this long are scrubbed from remote bodies."""


def cut(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` on one line, at most ``limit`` characters (``...`` marks a cut)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret of at least ``MIN_REDACTED`` characters replaced by ``***``, longest first."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= MIN_REDACTED:
            text = text.replace(secret, "***")
    return text


def safe_url(url: str, *, secret_path: bool) -> str:
    """``url`` as it may appear in messages: no user info, query or fragment; only ``scheme://host/…`` when
    the path itself is a secret (Slack, Teams, Discord and generic webhook URLs)."""
    try:
        parts = urlsplit(url)
        host = parts.netloc.rsplit("@", 1)[-1]
    except ValueError:
        return "(invalid URL)"
    if not parts.scheme or not host:
        return "(invalid URL)"
    if secret_path:
        return f"{parts.scheme}://{host}/…"
    return f"{parts.scheme}://{host}{parts.path}"


def secret_url_parts(url: str, *, secret_path: bool) -> list[str]:
    """Pieces of ``url`` that must not appear in messages, longest first: user info, the query and its long
    values, and, when the path is a secret, the URL, the path and its long segments."""
    parts = urlsplit(url)
    pieces: list[str] = []
    if "@" in parts.netloc:
        userinfo = parts.netloc.rsplit("@", 1)[0]
        pieces += [userinfo, *userinfo.split(":", 1)]
    if parts.query:
        pieces += [parts.query] + [value for _, value in parse_qsl(parts.query) if len(value) >= SECRET_SEGMENT]
    if secret_path:
        pieces += [url, parts.path] + [
            segment for segment in re.split(r"[/@]", parts.path) if len(segment) >= SECRET_SEGMENT
        ]
    return sorted({piece for piece in pieces if len(piece) >= MIN_REDACTED}, key=len, reverse=True)
