"""Go-style durations (``30s``, ``2m``, ``1h30m``), as Kubernetes users write them."""

from __future__ import annotations

import re

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_UNIT = r"(?:ns|us|µs|μs|ms|s|m|h)"
_PART = re.compile(rf"({_NUMBER})({_UNIT})")
GO_DURATION_PATTERN = rf"^[-+]?(?:0|(?:{_NUMBER}{_UNIT})+)$"
_WHOLE = re.compile(GO_DURATION_PATTERN)


def parse_go_duration(text: str) -> float:
    """Return the duration in seconds.

    Args:
        text: a Go duration string such as ``90s``, ``2m`` or ``1h30m``.

    Raises:
        ValueError: when ``text`` is not a Go duration.
    """
    if not _WHOLE.match(text):
        raise ValueError(f"not a Go-style duration such as 30s, 2m or 1h30m (got {text!r})")
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    if body == "0":
        return 0.0
    return sign * sum(float(number) * _UNITS[unit] for number, unit in _PART.findall(body))


def format_go_duration(seconds: float) -> str:
    """Render whole seconds the way Go prints them (``1h30m0s`` becomes ``1h30m``)."""
    total = round(seconds)
    if total <= 0:
        return "0s"
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return "".join(parts)
