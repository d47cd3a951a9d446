"""User-supplied text made safe to print: one line, no terminal control, bounded length.

``canaryctl lint`` prints ``FILE:LINE: field: message`` lines and ``canaryctl plan`` names objects and
destinations from the user's files. A value holding a newline could forge a line of its own, and escape
sequences (``ESC[...``) or bidirectional overrides would act on the terminal; so every value taken from
input is shown through :func:`shown` (Python's string escapes, quoted) and every name through
:func:`plain` (unchanged when harmless, escaped and quoted otherwise).
"""

from __future__ import annotations

from typing import Any

MAX_SHOWN = 120


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def shown(value: str, *, limit: int = MAX_SHOWN) -> str:
    """``value`` quoted, with every non-printable character escaped (``'a\\nb'``), cut after ``limit``."""
    cut = value if len(value) <= limit else value[:limit]
    text = repr(cut)
    return text if cut is value else text + "..."


def is_plain(value: str) -> bool:
    """True when ``value`` prints as itself on one line: printable, no quote or backslash."""
    return value.isprintable() and not any(char in value for char in "'\"\\")


def plain(value: str, *, limit: int = MAX_SHOWN) -> str:
    """``value`` itself when :func:`is_plain`, else :func:`shown`; cut after ``limit`` either way."""
    return _cut(value, limit) if is_plain(value) else shown(value, limit=limit)


def kind_of(value: Any) -> str:
    """What a non-text value is, in a message's words: ``true``/``false``, ``null``, ``a mapping``, ``a list``,
    else its Python type's name (``int``, ``float``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__
