"""Formatting shared by the sinks: times, numbers, JSON bodies, and the words and links of a message."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from controller.core.alerts import AlertMessage, FailingCheck

_COLORS = {"critical": 0xD70000, "warning": 0xFFA500, "info": 0x0078D7}
_RESOLVED_COLOR = 0x2EB886


def rfc3339(moment: datetime) -> str:
    """``moment`` as RFC 3339 in UTC with milliseconds, e.g. ``2024-05-01T12:00:00.000Z`` (naive = UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def format_number(value: float | None) -> str:
    """A measured value for people: ``n/a``, ``NaN``, ``+Inf``, ``1200``, ``0.0123``."""
    if value is None:
        return "n/a"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def json_number(value: float | None) -> float | None:
    """A value JSON can carry (NaN and infinities become null)."""
    return value if value is not None and math.isfinite(value) else None


def dumps(payload: Any) -> bytes:
    """Compact UTF-8 JSON; NaN and infinities are refused (a sink would reject them)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def clip(text: str, limit: int) -> str:
    """``text`` at most ``limit`` characters (line breaks kept; ``…`` marks a cut)."""
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def color(message: AlertMessage) -> int:
    """The RGB colour of a message: by severity while firing, one colour once resolved."""
    return _RESOLVED_COLOR if message.state == "resolved" else _COLORS.get(message.severity, _COLORS["info"])


def state_word(message: AlertMessage) -> str:
    """``FIRING`` or ``RESOLVED``."""
    return "RESOLVED" if message.state == "resolved" else "FIRING"


def phase_change(message: AlertMessage) -> str:
    """``Progressing → RolledBack`` (``(start)`` when there was no phase before)."""
    return f"{message.from_phase or '(start)'} → {message.to_phase}"


def step_text(message: AlertMessage) -> str:
    """``step 3, weight 50%`` (``n/a`` when no weight is known)."""
    weight = "n/a" if message.weight is None else f"{message.weight}%"
    return f"step {message.step}, weight {weight}"


def check_numbers(check: FailingCheck) -> str:
    """A check's measured values: canary, stable, threshold when set, sample size."""
    parts = [f"canary {format_number(check.canary_value)}", f"stable {format_number(check.stable_value)}"]
    if check.threshold:
        parts.append(f"threshold {check.threshold}")
    parts.append(f"sample size {format_number(check.sample_size)}")
    return ", ".join(parts)


def check_line(check: FailingCheck) -> str:
    """One line per check: ``error-rate: fail (canary 0.05, stable 0.001, sample size 1200): why``."""
    line = f"{check.name}: {check.verdict} ({check_numbers(check)})"
    return f"{line}: {check.reason}" if check.reason else line


def graph_links(message: AlertMessage) -> list[tuple[str, str]]:
    """(label, URL) of every graph link, the controller's own link first."""
    links: list[tuple[str, str]] = []
    if message.source_url:
        links.append(("controller", message.source_url))
    for check in message.checks:
        for index, url in enumerate(check.graph_urls):
            label = check.name if len(check.graph_urls) == 1 else f"{check.name} ({index + 1})"
            links.append((label, url))
    return links


def first_graph(message: AlertMessage) -> str:
    """The first check's first graph URL, or an empty string."""
    return next((url for check in message.checks for url in check.graph_urls), "")
