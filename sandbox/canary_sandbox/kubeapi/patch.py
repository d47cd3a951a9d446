"""PATCH bodies: JSON merge patch (RFC 7386) and JSON patch (RFC 6902), as the API server applies them.

Emulates the outcomes a client can observe: a merge patch replaces lists whole and deletes keys set
to ``null``; a JSON patch is all-or-nothing, and a failed ``test`` or an operation on a missing path is
reported with the json-patch library's wording (the HTTP layer turns it into the generic 422).

A ``test`` compares as the real library does (``evanphx/json-patch``, ``lazyNode.equal``): objects key by
key, arrays item by item, and scalars as bytes: the stored value as Go's ``encoding/json`` writes it
against the patch's own compacted text. So ``20.0`` does not test equal to a stored ``20``, nor ``"<"`` to a
stored ``"<"`` (Go writes ``"\u003c"``). Bodies read over HTTP keep their number literals
(:func:`parse_json_patch`); string escapes are not kept, so ``"\u0041"`` tests equal to ``"A"`` here but
not on a real server.

Deliberately not emulated: strategic merge patch. For built-in kinds the emulator applies a
``application/strategic-merge-patch+json`` body as a plain merge patch, so list merging by key
(``containers`` by ``name``) and ``$patch`` directives are not honoured; for custom resources the media
type is refused with 415, as the real server does. Server-side apply is not emulated either.
"""

from __future__ import annotations

import copy
import decimal
import json
from typing import Any

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"


class PatchError(Exception):
    """The patch is well formed but cannot be applied to this object (answered with 422)."""


class MalformedPatchError(Exception):
    """The patch body is not a patch of its declared type (answered with 400)."""


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 merge patch; returns a new document and leaves ``target`` unchanged."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class NumberLiteral:
    """A number in a JSON patch body, kept as the client wrote it (``20``, ``20.0``, ``2e1``)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def value(self) -> int | float:
        """The number as JSON decoding gives it."""
        try:
            return int(self.text)
        except ValueError:
            return float(self.text)

    def __repr__(self) -> str:
        return f"NumberLiteral({self.text!r})"


def parse_json_patch(raw: bytes) -> Any:
    """Decode a JSON patch body keeping each number's literal text, for ``test`` to compare as bytes.

    Raises:
        ValueError: the body is not JSON.
    """
    return json.loads(raw, parse_int=NumberLiteral, parse_float=NumberLiteral)


def _plain(value: Any) -> Any:
    """A patch value with its number literals turned into numbers, as stored."""
    if isinstance(value, NumberLiteral):
        return value.value()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


_GO_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_GO_HEX_ESCAPED = frozenset("<>&\u2028\u2029")


def _go_string(text: str) -> str:
    """A string as Go's ``encoding/json`` writes it: HTML characters and U+2028/9 as ``\\u00XX``."""
    out = ['"']
    for char in text:
        if char in _GO_SHORT_ESCAPES:
            out.append(_GO_SHORT_ESCAPES[char])
        elif char < " " or char in _GO_HEX_ESCAPED:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def go_json_scalar(value: Any) -> str:
    """A scalar as Go's ``encoding/json`` writes it (how the server serialises the stored object)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-6 or abs(value) >= 1e21):
            text = repr(value)
            mantissa, _, exponent = text.partition("e")
            sign, digits = exponent[0], exponent[1:].lstrip("0") or "0"
            return f"{mantissa}e{sign}{digits.zfill(1)}"
        text = format(decimal.Decimal(repr(value)), "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    return _go_string(str(value))


def _patch_json_scalar(value: Any) -> str:
    """A patch value's compacted JSON text (``json.Compact`` of the raw bytes)."""
    if isinstance(value, NumberLiteral):
        return value.text
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (dict, list)):
        return json.dumps(_plain(value), separators=(",", ":"), ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False)


def _test_equal(stored: Any, wanted: Any) -> bool:
    """``lazyNode.equal``: the stored document's node against the patch's ``value``."""
    if isinstance(stored, dict):
        if not isinstance(wanted, dict) or len(stored) != len(wanted):
            return False
        return all(k in wanted and _test_equal(v, wanted[k]) for k, v in stored.items())
    if isinstance(stored, list):
        if not isinstance(wanted, list) or len(stored) != len(wanted):
            return False
        return all(_test_equal(x, y) for x, y in zip(stored, wanted, strict=True))
    if isinstance(wanted, (dict, list)):
        return False
    return go_json_scalar(stored) == _patch_json_scalar(wanted)


def _tokens(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise MalformedPatchError(f"JSON pointer must be empty or start with '/': {pointer!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _index(token: str, size: int, *, op: str, path: str, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return size
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise PatchError(f"{op} operation does not apply: doc is missing path: {path!r}: missing value")
    index = int(token)
    if index > size or (index == size and not allow_end):
        raise PatchError(f"{op} operation does not apply: doc is missing path: {path!r}: missing value")
    return index


def _parent(doc: Any, tokens: list[str], *, op: str, path: str) -> Any:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(token, len(node), op=op, path=path, allow_end=False)]
        else:
            raise PatchError(f"{op} operation does not apply: doc is missing path: {path!r}: missing value")
    return node


def _get(doc: Any, path: str, *, op: str) -> Any:
    tokens = _tokens(path)
    if not tokens:
        return doc
    parent = _parent(doc, tokens, op=op, path=path)
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(last, len(parent), op=op, path=path, allow_end=False)]
    raise PatchError(f"{op} operation does not apply: doc is missing key: {path}: missing value")


def _add(doc: Any, path: str, value: Any, *, op: str = "add") -> Any:
    tokens = _tokens(path)
    if not tokens:
        return value
    parent = _parent(doc, tokens, op=op, path=path)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(last, len(parent), op=op, path=path, allow_end=True), value)
    else:
        raise PatchError(f"{op} operation does not apply: doc is missing path: {path!r}: missing value")
    return doc


def _remove(doc: Any, path: str, *, op: str = "remove") -> tuple[Any, Any]:
    tokens = _tokens(path)
    if not tokens:
        raise PatchError(f"{op} operation does not apply: cannot remove the whole document")
    parent = _parent(doc, tokens, op=op, path=path)
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(_index(last, len(parent), op=op, path=path, allow_end=False))
    raise PatchError(f"{op} operation does not apply: doc is missing path: {path!r}: missing value")


def json_patch(document: Any, operations: Any) -> Any:
    """Apply an RFC 6902 JSON patch atomically; returns a new document.

    Raises:
        MalformedPatchError: the body is not a list of operations with ``op`` and ``path``.
        PatchError: an operation does not apply (missing path, failed ``test``).
    """
    if not isinstance(operations, list):
        raise MalformedPatchError("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    doc = copy.deepcopy(document)
    for operation in operations:
        if not isinstance(operation, dict) or not isinstance(operation.get("op"), str):
            raise MalformedPatchError("Unexpected kind: missing or invalid 'op' in a JSON patch operation")
        op = operation["op"]
        path = operation.get("path")
        if not isinstance(path, str):
            raise MalformedPatchError(f"{op} operation: missing or invalid 'path'")
        if op in ("add", "replace", "test") and "value" not in operation:
            raise MalformedPatchError(f"{op} operation: missing 'value'")
        literal = operation.get("value")
        value = _plain(copy.deepcopy(literal))
        if op == "add":
            doc = _add(doc, path, value)
        elif op == "remove":
            doc, _ = _remove(doc, path)
        elif op == "replace":
            _get(doc, path, op="replace")
            if _tokens(path):
                doc, _ = _remove(doc, path, op="replace")
            doc = _add(doc, path, value, op="replace")
        elif op in ("move", "copy"):
            source = operation.get("from")
            if not isinstance(source, str):
                raise MalformedPatchError(f"{op} operation: missing or invalid 'from'")
            if op == "move":
                if path.startswith(source + "/"):
                    raise PatchError(f"move operation does not apply: cannot move {source} into its own child")
                doc, moved = _remove(doc, source, op="move")
            else:
                moved = copy.deepcopy(_get(doc, source, op="copy"))
            doc = _add(doc, path, moved, op=op)
        elif op == "test":
            try:
                current = _get(doc, path, op="test")
            except PatchError:
                current = None
            # A missing or null stored value passes only against a null value, as in the real library.
            if current is None or literal is None:
                if current is not None or literal is not None:
                    raise PatchError(f"testing value {path} failed: test failed")
            elif not _test_equal(current, literal):
                raise PatchError(f"testing value {path} failed: test failed")
        else:
            raise MalformedPatchError(f"Unexpected kind: {op}")
    return doc
