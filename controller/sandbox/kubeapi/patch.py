"""PATCH bodies: JSON merge patch (RFC 7386) and JSON patch (RFC 6902), as the API server applies them.

Emulates the outcomes a client can observe: a merge patch replaces lists whole and deletes keys set
to ``null``; a JSON patch is all-or-nothing, and a failed ``test`` or an operation on a missing path is
reported with the json-patch library's wording (the HTTP layer turns it into a 422).

Deliberately not emulated: strategic merge patch. For built-in kinds the emulator applies a
``application/strategic-merge-patch+json`` body as a plain merge patch, so list merging by key
(``containers`` by ``name``) and ``$patch`` directives are not honoured; for custom resources the media
type is refused with 415, as the real server does. Server-side apply is not emulated either.
"""

from __future__ import annotations

import copy
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


def _json_equal(a: Any, b: Any) -> bool:
    """Equality as RFC 6902 ``test`` defines it: numbers by value, booleans are not numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


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
        value = copy.deepcopy(operation.get("value"))
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
                if value is not None:
                    raise PatchError(f"testing value {path} failed: test failed") from None
            if not _json_equal(current, value):
                raise PatchError(f"testing value {path} failed: test failed")
        else:
            raise MalformedPatchError(f"Unexpected kind: {op}")
    return doc
