"""Block-style YAML text for JSON-shaped data, fast: what ``canaryctl plan`` prints for each object.

PyYAML's representer walks every node in Python and takes seconds for an object with 10,000 routes
(written once per step). Plan objects are JSON-shaped (mappings with string keys, lists, strings, numbers,
booleans, null), so this emitter writes them directly, in PyYAML's block layout (sequences under a key are
not indented). Every string that is not plainly a word or a name is written double-quoted with escapes,
so nothing a YAML 1.1 or 1.2 reader resolves differently (``on``, ``y``, ``1e3``, ``2024-05-01``,
``*``...) and no control character ever appears raw. Anything else (dates, bytes, sets, non-string keys,
a top-level scalar) gives ``None``: the caller then uses PyYAML.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

# Plain scalars: a letter, "_" or "/" first, then letters, digits, spaces and "_./-", not ending in a
# space (no ":", "#" or quote can start a YAML indicator then). Of those, YAML readers turn these words into
# booleans or null (YAML 1.1 and Go's yaml.v2 include y/n and on/off).
_PLAIN = re.compile(r"[A-Za-z_/](?:[A-Za-z0-9_./ -]*[A-Za-z0-9_./-])?")
_SPECIAL_WORDS = frozenset(
    word
    for base in ("y", "n", "yes", "no", "true", "false", "on", "off", "null")
    for word in (base, base.capitalize(), base.upper())
)
_LINE_BREAKS = frozenset("\x85\u2028\u2029\ufeff")


class _NotJson(Exception):
    """The data holds a value this emitter does not write."""


def block_yaml(value: Any) -> str | None:
    """``value`` (a mapping or list) as block-style YAML ending in a newline, or None when not JSON-shaped."""
    lines: list[str] = []
    try:
        if isinstance(value, Mapping) and value:
            _mapping(value, 0, lines, "")
        elif isinstance(value, list) and value:
            _sequence(value, 0, lines, "")
        else:
            return None
    except _NotJson:
        return None
    return "\n".join(lines) + "\n"


def _mapping(value: Mapping[Any, Any], indent: int, lines: list[str], lead: str) -> None:
    pad = " " * indent
    for number, (key, item) in enumerate(value.items()):
        if not isinstance(key, str):
            raise _NotJson
        start = (lead if number == 0 else pad) + _string(key) + ":"
        if isinstance(item, Mapping) and item:
            lines.append(start)
            _mapping(item, indent + 2, lines, " " * (indent + 2))
        elif isinstance(item, list) and item:
            lines.append(start)
            _sequence(item, indent, lines, pad)
        else:
            lines.append(f"{start} {_scalar(item)}")


def _sequence(value: list[Any], indent: int, lines: list[str], lead: str) -> None:
    pad = " " * indent
    for number, item in enumerate(value):
        start = (lead if number == 0 else pad) + "- "
        if isinstance(item, Mapping) and item:
            _mapping(item, indent + 2, lines, start)
        elif isinstance(item, list) and item:
            _sequence(item, indent + 2, lines, start)
        else:
            lines.append(start + _scalar(item))


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return _string(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, Mapping) and not value:
        return "{}"
    if isinstance(value, list) and not value:
        return "[]"
    raise _NotJson


def _float(value: float) -> str:
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value)
    # YAML 1.1 floats need a dot: 1e-05 would read back as a string.
    if "." not in text and "e" in text:
        text = text.replace("e", ".0e", 1)
    return text


def _string(value: str) -> str:
    if _PLAIN.fullmatch(value) and value not in _SPECIAL_WORDS:
        return value
    out = ['"']
    for char in value:
        if char in '"\\':
            out.append("\\" + char)
        elif char.isprintable() and char not in _LINE_BREAKS:
            out.append(char)
        else:
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    out.append('"')
    return "".join(out)
