"""Go-style durations (``30s``, ``2m``, ``1h30m``), as Kubernetes users write them.

The accepted text is what Go's ``time.ParseDuration`` accepts, matched as a whole (a trailing newline, as
YAML's ``key: |`` block leaves, is not part of a duration), and bounded the way Go bounds it: a duration is
an int64 count of nanoseconds, so nothing longer than ``2562047h47m16.854775807s`` (about 292 years)
exists. Longer values would otherwise overflow the controller's date arithmetic.
"""

from __future__ import annotations

import functools
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
_WHOLE = re.compile(GO_DURATION_PATTERN.removeprefix("^").removesuffix("$"))

# Go's time.Duration is an int64 of nanoseconds: 9223372036854775807 ns.
MAX_GO_DURATION_SECONDS = 9_223_372_036.854775807
MAX_GO_DURATION = "2562047h47m16.854775807s"

# A positive duration: at least one part holds a non-zero digit. Written without look-ahead, so that the
# same pattern serves JSON Schema (ECMA-262) and Kubernetes (RE2) alike.
_ZERO_PART = rf"(?:(?:0+(?:\.0*)?|\.0+){_UNIT})"
_NONZERO_PART = rf"(?:(?:\d*[1-9]\d*(?:\.\d*)?|\d*\.\d*[1-9]\d*){_UNIT})"
POSITIVE_GO_DURATION_PATTERN = rf"^\+?{_ZERO_PART}*{_NONZERO_PART}(?:{_NUMBER}{_UNIT})*$"


@functools.lru_cache(maxsize=4096)
def parse_go_duration(text: str) -> float:
    """Return the duration in seconds (remembered: a pass parses its policy's few durations again and again).

    Args:
        text: a Go duration string such as ``90s``, ``2m`` or ``1h30m``.

    Raises:
        ValueError: when ``text`` is not a Go duration, or is longer than Go's longest duration
            (``MAX_GO_DURATION``).
    """
    if not _WHOLE.fullmatch(text):
        raise ValueError(f"not a Go-style duration such as 30s, 2m or 1h30m (got {text!r})")
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    if body == "0":
        return 0.0
    seconds = sum(float(number) * _UNITS[unit] for number, unit in _PART.findall(body))
    if seconds > MAX_GO_DURATION_SECONDS:
        raise ValueError(f"longer than the longest Go duration, {MAX_GO_DURATION} (about 292 years) (got {text!r})")
    return sign * seconds


def format_go_duration(seconds: float) -> str:
    """Render whole seconds the way Go prints them (``1h30m0s`` becomes ``1h30m``)."""
    total = round(seconds)
    if total <= 0:
        return "0s"
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return "".join(parts)
