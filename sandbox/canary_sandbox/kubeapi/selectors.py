"""Label and field selectors of LIST and WATCH requests, parsed and matched as the API server does.

Label selectors take the full syntax: ``k=v``, ``k==v``, ``k!=v``, ``k``, ``!k``, ``k in (a,b)`` and
``k notin (a,b)``; ``!=`` and ``notin`` also match objects without the label, as on a cluster.
Field selectors take ``metadata.name`` and ``metadata.namespace`` with ``=``, ``==`` and ``!=``.

Deliberately not emulated: the per-kind field selectors of some built-ins (``involvedObject.name`` for
events, ``status.phase`` for namespaces...), which answer 400 here like any unknown field label.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Matcher = Callable[[Mapping[str, Any]], bool]

_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_SET_RE = re.compile(rf"^\s*({_KEY})\s+(in|notin)\s*\(([^)]*)\)\s*$")
_OP_RE = re.compile(rf"^\s*({_KEY})\s*(==|!=|=)\s*([-A-Za-z0-9_.]*)\s*$")
_EXISTS_RE = re.compile(rf"^\s*(!?)\s*({_KEY})\s*$")
SUPPORTED_FIELDS = ("metadata.name", "metadata.namespace")


class SelectorError(ValueError):
    """The selector does not parse (answered with 400 BadRequest)."""


def _split(selector: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    current = ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p for p in parts if p.strip()]


def _labels(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels if isinstance(labels, Mapping) else {}


def _label_requirement(text: str) -> Matcher:
    if match := _SET_RE.match(text):
        key, op, raw = match.groups()
        values = {v.strip() for v in raw.split(",") if v.strip()}
        if op == "in":
            return lambda obj: _labels(obj).get(key) in values
        return lambda obj: _labels(obj).get(key) not in values
    if match := _OP_RE.match(text):
        key, op, value = match.groups()
        if op == "!=":
            return lambda obj: _labels(obj).get(key) != value
        return lambda obj: _labels(obj).get(key) == value
    if match := _EXISTS_RE.match(text):
        negate, key = match.groups()
        if negate:
            return lambda obj: key not in _labels(obj)
        return lambda obj: key in _labels(obj)
    raise SelectorError(f"unable to parse requirement: found '{text.strip()}', expected: a valid label selector")


def parse_label_selector(selector: str | None) -> Matcher:
    """A predicate on objects for a ``labelSelector`` query value (everything matches when empty).

    Raises:
        SelectorError: the selector does not parse.
    """
    requirements = [_label_requirement(part) for part in _split(selector or "")]
    return lambda obj: all(req(obj) for req in requirements)


def _field_value(obj: Mapping[str, Any], field: str) -> str:
    metadata = obj.get("metadata") or {}
    return str(metadata.get(field.split(".", 1)[1]) or "")


def _field_requirement(text: str) -> Matcher:
    match = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|!=|=)\s*(.*?)\s*$", text)
    if not match:
        raise SelectorError(f"invalid selector: '{text.strip()}'; can't understand '{text.strip()}'")
    field, op, value = match.groups()
    if field not in SUPPORTED_FIELDS:
        raise SelectorError(f"field label not supported: {field}")
    if op == "!=":
        return lambda obj: _field_value(obj, field) != value
    return lambda obj: _field_value(obj, field) == value


def parse_field_selector(selector: str | None) -> Matcher:
    """A predicate on objects for a ``fieldSelector`` query value (everything matches when empty).

    Raises:
        SelectorError: the selector does not parse or names an unsupported field.
    """
    requirements = [_field_requirement(part) for part in (selector or "").split(",") if part.strip()]
    return lambda obj: all(req(obj) for req in requirements)
