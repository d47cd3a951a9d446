"""The checks apiextensions-apiserver runs on a CRD version's ``openAPIV3Schema`` before it accepts the CRD.

Emulated (sources in kubernetes/kubernetes, ``staging/src/k8s.io/apiextensions-apiserver/``):

* structural invariants, ``pkg/apiserver/schema/validation.go`` ``validateStructuralInvariants``: every
  specified node has a ``type`` (unless ``x-kubernetes-int-or-string`` or
  ``x-kubernetes-preserve-unknown-fields``), ``object`` at the root, ``items`` on arrays, no
  ``additionalProperties`` at the root, ``kind``/``apiVersion`` strings, root ``metadata`` restricting only
  ``name`` and ``generateName``; inside ``allOf``/``anyOf``/``oneOf``/``not`` no ``type``, ``default``,
  ``description``, ``title``, ``nullable``, ``x-kubernetes-*`` or ``metadata`` (the int-or-string ``anyOf``
  excepted); ``validateExtensions``; regular-expression ``pattern``s;
* completeness, ``pkg/apiserver/schema/complete.go``: a property named inside a value validation exists
  in the structural part;
* ``pkg/apis/apiextensions/validation/validation.go``, ``ValidateCustomResourceDefinitionOpenAPISchema``
  and ``specStandardValidatorV3.validate``: ``uniqueItems``, ``properties`` with ``additionalProperties``,
  ``x-kubernetes-preserve-unknown-fields: false``, list and map types, ``x-kubernetes-validations`` rules
  (empty rule, message), unsupported keywords (``$ref``, ``patternProperties``, ``definitions``, ``id``,
  ``dependencies``, ``additionalItems``, ``type: null``), ``default`` in top-level ``metadata``,
  ``nullable`` at the root (``validateCustomResourceDefinitionValidation``);
* CEL rules compiled against the schema once the schema is structural (``cel.Compile``): syntax, and
  fields selected from ``self`` that the schema does not declare (cel-go's ``undefined field``, with its
  ``ERROR: <input>:L:C`` text and source snippet). Parsing is cel-python's, so a syntax error's detail
  after ``Syntax error:`` is cel-python's wording, not cel-go's.

Errors are sorted as ``ValidateStructural`` sorts them (by their text), and the schema-level checks follow.

Not emulated: cel-go's type checking beyond field selection (overloads, return type ``bool``), rule cost
estimates, ``oldSelf`` correlation checks, ``messageExpression`` compilation, default validation
(``structuraldefaulting.ValidateDefaults``), the root-field restriction when the status subresource is on,
``x-kubernetes-embedded-resource`` nested metadata rules.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from canary_sandbox.kubeapi.status import Cause

_V3_TYPES = ("array", "boolean", "integer", "number", "object", "string")
_NESTED_FORBIDDEN_GENERICS = (
    ("type", "must be empty to be structural"),
    ("default", "must be undefined to be structural"),
    ("title", "must be empty to be structural"),
    ("description", "must be empty to be structural"),
    ("nullable", "must be false to be structural"),
    ("externalDocs", "must be undefined to be structural"),
    ("x-kubernetes-preserve-unknown-fields", "must be false to be structural"),
    ("x-kubernetes-embedded-resource", "must be false to be structural"),
    ("x-kubernetes-int-or-string", "must be false to be structural"),
    ("x-kubernetes-list-map-keys", "must be empty to be structural"),
    ("x-kubernetes-list-type", "must be undefined to be structural"),
    ("x-kubernetes-map-type", "must be undefined to be structural"),
    ("x-kubernetes-validations", "must be empty to be structural"),
)
_INT_OR_STRING_ANY_OF = [{"type": "integer"}, {"type": "string"}]
_CHECKED: dict[tuple[str, str], tuple[Cause, ...]] = {}
_CEL_RESERVED = frozenset(
    [
        "true",
        "false",
        "null",
        "in",
        "as",
        "break",
        "const",
        "continue",
        "else",
        "for",
        "function",
        "if",
        "import",
        "let",
        "loop",
        "package",
        "namespace",
        "return",
        "var",
        "void",
        "while",
    ]
)


def _required(path: str, detail: str) -> Cause:
    return Cause("FieldValueRequired", f"Required value: {detail}", path)


def _forbidden(path: str, detail: str) -> Cause:
    return Cause("FieldValueForbidden", f"Forbidden: {detail}", path)


def _go_value(value: Any) -> str:
    """``field.Invalid``'s rendering of a bad value (``ErrorBody``): strings quoted, scalars bare."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[]string{" + ", ".join(_go_value(v) for v in value) + "}"
    return str(value)


def _invalid(path: str, value: Any, detail: str) -> Cause:
    return Cause("FieldValueInvalid", f"Invalid value: {_go_value(value)}: {detail}", path)


def _not_supported(path: str, value: Any, supported: tuple[str, ...]) -> Cause:
    allowed = ", ".join(_go_value(v) for v in supported)
    return Cause("FieldValueNotSupported", f"Unsupported value: {_go_value(value)}: supported values: {allowed}", path)


def _key(path: str, name: str) -> str:
    return f"{path}.properties[{name}]"


def check_schema(schema: Mapping[str, Any], path: str) -> list[Cause]:
    """Every reason apiextensions-apiserver would refuse this ``openAPIV3Schema``, as ``Status`` causes.

    Args:
        schema: a CRD version's ``schema.openAPIV3Schema``.
        path: its field path, ``spec.versions[0].schema.openAPIV3Schema``.

    Returns:
        The causes, empty when the schema would be accepted.
    """
    key = (json.dumps(schema, sort_keys=True, default=str), path)
    cached = _CHECKED.get(key)
    if cached is None:
        cached = tuple(_check_schema(schema, path))
        _CHECKED[key] = cached
    return list(cached)


def _check_schema(schema: Mapping[str, Any], path: str) -> list[Cause]:
    causes: list[Cause] = []
    if schema.get("nullable") is True:
        causes.append(_forbidden(f"{path}.nullable", "nullable cannot be true at the root"))
    structural = sorted(
        [*_invariants(schema, "root", path), *_completeness(schema, schema, path, path)],
        key=lambda c: f"{c.field}: {c.message}",
    )
    causes.extend(structural)
    schema_errors = list(_openapi_checks(schema, path, root=True, in_meta=False))
    causes.extend(schema_errors)
    if not structural and not schema_errors:
        causes.extend(_cel_checks(schema, path))
    return causes


# ---------------------------------------------------------------------------- structural invariants


def _invariants(s: Mapping[str, Any], level: str, path: str) -> Iterator[Cause]:
    """``validateStructuralInvariants`` for one structural node and everything below it."""
    kind = s.get("type") or ""
    items = s.get("items")
    if kind == "array" and items is None:
        yield _required(f"{path}.items", "must be specified")
    if isinstance(items, Mapping):
        yield from _invariants(items, "item", f"{path}.items")
    properties = s.get("properties") or {}
    for name, sub in properties.items():
        if isinstance(sub, Mapping):
            yield from _invariants(sub, "field", _key(path, name))
    additional = s.get("additionalProperties")
    if additional is not None:
        if level == "root":
            yield _forbidden(f"{path}.additionalProperties", "must not be used at the root")
        if isinstance(additional, Mapping):
            yield from _invariants(additional, "field", f"{path}.additionalProperties")
    int_or_string = s.get("x-kubernetes-int-or-string") is True
    preserve = s.get("x-kubernetes-preserve-unknown-fields") is True
    embedded = s.get("x-kubernetes-embedded-resource") is True
    if int_or_string and preserve:
        yield _invalid(
            f"{path}.x-kubernetes-preserve-unknown-fields", True, "must be false if x-kubernetes-int-or-string is true"
        )
    if int_or_string and embedded:
        yield _invalid(
            f"{path}.x-kubernetes-embedded-resource", True, "must be false if x-kubernetes-int-or-string is true"
        )
    yield from _value_validation(s, _skip_any_of(s), _skip_first_all_of_any_of(s), level, path)
    check_metadata = level == "root" or embedded
    if embedded and kind != "object":
        detail = "must be object if x-kubernetes-embedded-resource is true"
        yield _required(f"{path}.type", detail) if not kind else _invalid(f"{path}.type", kind, detail)
    elif not kind and not int_or_string and not preserve:
        detail = {
            "root": "must not be empty at the root",
            "item": "must not be empty for specified array items",
            "field": "must not be empty for specified object fields",
        }[level]
        yield _required(f"{path}.type", detail)
    if embedded and additional is not None:
        yield _forbidden(f"{path}.additionalProperties", "must not be used if x-kubernetes-embedded-resource is set")
    if level == "root" and kind and kind != "object":
        yield _invalid(f"{path}.type", kind, "must be object at the root")
    for meta_field in ("kind", "apiVersion"):
        sub = properties.get(meta_field)
        if isinstance(sub, Mapping) and check_metadata and sub.get("type") != "string":
            yield _invalid(f"{_key(path, meta_field)}.type", sub.get("type") or "", "must be string")
    metadata = properties.get("metadata")
    if isinstance(metadata, Mapping):
        yield from _metadata_invariants(metadata, check_metadata, level, _key(path, "metadata"))
    if embedded and not preserve and not properties:
        yield _required(
            f"{path}.properties",
            "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
        )


def _metadata_invariants(s: Mapping[str, Any], check: bool, level: str, path: str) -> Iterator[Cause]:
    """``validateStructuralMetadataInvariants``: root metadata may only constrain name and generateName."""
    if check and s.get("type") != "object":
        yield _invalid(f"{path}.type", s.get("type") or "", "must be object")
    if level != "root":
        return
    rest = {k: v for k, v in s.items() if k not in ("type", "default")}
    properties = rest.get("properties")
    if isinstance(properties, Mapping) and properties and set(properties) <= {"name", "generateName"}:
        rest.pop("properties")
    if rest:
        yield _forbidden(
            path, "must not specify anything other than name and generateName, but metadata is implicitly specified"
        )


def _skip_any_of(s: Mapping[str, Any]) -> bool:
    return s.get("anyOf") == _INT_OR_STRING_ANY_OF


def _skip_first_all_of_any_of(s: Mapping[str, Any]) -> bool:
    all_of = s.get("allOf")
    return (
        isinstance(all_of, list) and bool(all_of) and _skip_any_of(all_of[0] if isinstance(all_of[0], Mapping) else {})
    )


def _value_validation(
    v: Mapping[str, Any], skip_any_of: bool, skip_first_all_of_any_of: bool, level: str, path: str
) -> Iterator[Cause]:
    """``validateValueValidation``: the junctors below a node, and its ``pattern``."""
    if not skip_any_of:
        for index, sub in enumerate(v.get("anyOf") or []):
            yield from _nested(sub, False, level, f"{path}.anyOf[{index}]")
    for index, sub in enumerate(v.get("allOf") or []):
        yield from _nested(sub, skip_first_all_of_any_of and index == 0, level, f"{path}.allOf[{index}]")
    for index, sub in enumerate(v.get("oneOf") or []):
        yield from _nested(sub, False, level, f"{path}.oneOf[{index}]")
    if isinstance(v.get("not"), Mapping):
        yield from _nested(v["not"], False, level, f"{path}.not")
    pattern = v.get("pattern")
    if isinstance(pattern, str) and pattern:
        try:
            re.compile(pattern)
        except re.error as exc:
            # Go's regexp error text differs from Python's; the field and the lead-in are the server's.
            yield _invalid(f"{path}.pattern", pattern, f"must be a valid regular expression, but isn't: {exc}")


def _nested(v: Any, skip_any_of: bool, level: str, path: str) -> Iterator[Cause]:
    """``validateNestedValueValidation``: what may not appear inside ``allOf``/``anyOf``/``oneOf``/``not``."""
    if not isinstance(v, Mapping):
        return
    yield from _value_validation(v, skip_any_of, False, level, path)
    if isinstance(v.get("items"), Mapping):
        yield from _nested(v["items"], False, level, f"{path}.items")
    for name, sub in (v.get("properties") or {}).items():
        yield from _nested(sub, False, "field", _key(path, name))
    for key, detail in _NESTED_FORBIDDEN_GENERICS:
        present = v.get(key)
        if present not in (None, False, "", [], {}):
            yield _forbidden(f"{path}.{key}", detail)
        if key == "type" and v.get("additionalProperties") is not None:
            yield _forbidden(f"{path}.additionalProperties", "must be undefined to be structural")
    if "metadata" in (v.get("properties") or {}):
        yield _forbidden(_key(path, "metadata"), "must not be specified in a nested context")


# ---------------------------------------------------------------------------- completeness


def _completeness(v: Mapping[str, Any], s: Mapping[str, Any] | None, s_path: str, v_path: str) -> Iterator[Cause]:
    """``validateValueValidationCompleteness``: properties named in value validations exist structurally."""
    if s is None:
        yield _required(s_path, f"because it is defined in {v_path}")
        return
    if isinstance(v.get("not"), Mapping):
        yield from _nested_completeness(v["not"], s, s_path, f"{v_path}.not")
    for junctor in ("allOf", "anyOf", "oneOf"):
        for index, sub in enumerate(v.get(junctor) or []):
            if isinstance(sub, Mapping):
                yield from _nested_completeness(sub, s, s_path, f"{v_path}.{junctor}[{index}]")


def _nested_completeness(
    v: Mapping[str, Any], s: Mapping[str, Any] | None, s_path: str, v_path: str
) -> Iterator[Cause]:
    if s is None:
        yield _required(s_path, f"because it is defined in {v_path}")
        return
    yield from _completeness(v, s, s_path, v_path)
    if isinstance(v.get("items"), Mapping):
        items = s.get("items")
        yield from _nested_completeness(
            v["items"], items if isinstance(items, Mapping) else None, f"{s_path}.items", f"{v_path}.items"
        )
    structural = s.get("properties") or {}
    for name, sub in (v.get("properties") or {}).items():
        if not isinstance(sub, Mapping):
            continue
        if name not in structural:
            yield _required(_key(s_path, name), f"because it is defined in {_key(v_path, name)}")
        else:
            yield from _nested_completeness(sub, structural[name], _key(s_path, name), _key(v_path, name))


# ---------------------------------------------------------------------------- OpenAPI schema checks


def _openapi_checks(s: Mapping[str, Any], path: str, *, root: bool, in_meta: bool) -> Iterator[Cause]:
    """``ValidateCustomResourceDefinitionOpenAPISchema`` with ``specStandardValidatorV3`` (schema errors only)."""
    kind = s.get("type") or ""
    if kind and kind not in _V3_TYPES and kind != "null":
        yield _not_supported(f"{path}.type", kind, _V3_TYPES)
    if "default" in s and in_meta:
        yield _forbidden(f"{path}.default", "must not be set in top-level metadata")
    for key, detail in (
        ("id", "id is not supported"),
        ("additionalItems", "additionalItems is not supported"),
        ("patternProperties", "patternProperties is not supported"),
        ("definitions", "definitions is not supported"),
        ("dependencies", "dependencies is not supported"),
        ("$ref", "$ref is not supported"),
    ):
        if s.get(key) not in (None, "", {}):
            yield _forbidden(f"{path}.{key}", detail)
    if kind == "null":
        yield _forbidden(f"{path}.type", "type cannot be set to null, use nullable as an alternative")
    if s.get("uniqueItems") is True:
        yield _forbidden(
            f"{path}.uniqueItems", "uniqueItems cannot be set to true since the runtime complexity becomes quadratic"
        )
    properties = s.get("properties") or {}
    additional = s.get("additionalProperties")
    if additional is not None and properties and (additional is False or isinstance(additional, Mapping)):
        yield _forbidden(f"{path}.additionalProperties", "additionalProperties and properties are mutual exclusive")
    if isinstance(additional, Mapping):
        yield from _openapi_checks(additional, f"{path}.additionalProperties", root=False, in_meta=False)
    for name, sub in properties.items():
        if isinstance(sub, Mapping):
            meta = root and name in ("metadata", "kind", "apiVersion")
            yield from _openapi_checks(sub, _key(path, name), root=False, in_meta=meta)
    if isinstance(s.get("not"), Mapping):
        yield from _openapi_checks(s["not"], f"{path}.not", root=False, in_meta=in_meta)
    for junctor in ("allOf", "oneOf", "anyOf"):
        for index, sub in enumerate(s.get(junctor) or []):
            if isinstance(sub, Mapping):
                yield from _openapi_checks(sub, f"{path}.{junctor}[{index}]", root=False, in_meta=in_meta)
    if isinstance(s.get("items"), Mapping):
        yield from _openapi_checks(s["items"], f"{path}.items", root=False, in_meta=False)
    if s.get("x-kubernetes-preserve-unknown-fields") is False:
        yield _invalid(f"{path}.x-kubernetes-preserve-unknown-fields", False, "must be true or undefined")
    yield from _list_and_map_types(s, path, kind)
    yield from _rule_texts(s, path)


def _list_and_map_types(s: Mapping[str, Any], path: str, kind: str) -> Iterator[Cause]:
    map_type, list_type, keys = (
        s.get("x-kubernetes-map-type"),
        s.get("x-kubernetes-list-type"),
        s.get("x-kubernetes-list-map-keys") or [],
    )
    if map_type is not None and kind != "object":
        detail = "must be object if x-kubernetes-map-type is specified"
        yield _required(f"{path}.type", detail) if not kind else _invalid(f"{path}.type", kind, detail)
    if map_type is not None and map_type not in ("atomic", "granular"):
        yield _not_supported(f"{path}.x-kubernetes-map-type", map_type, ("atomic", "granular"))
    if list_type is not None and kind != "array":
        detail = "must be array if x-kubernetes-list-type is specified"
        yield _required(f"{path}.type", detail) if not kind else _invalid(f"{path}.type", kind, detail)
    if list_type is not None and list_type not in ("atomic", "set", "map"):
        yield _not_supported(f"{path}.x-kubernetes-list-type", list_type, ("atomic", "set", "map"))
    if keys:
        detail = "must be map if x-kubernetes-list-map-keys is non-empty"
        if list_type is None:
            yield _required(f"{path}.x-kubernetes-list-type", detail)
        elif list_type != "map":
            yield _invalid(f"{path}.x-kubernetes-list-type", list_type, detail)
    if list_type == "map":
        items = s.get("items")
        if not keys:
            yield _required(f"{path}.x-kubernetes-list-map-keys", "must not be empty if x-kubernetes-list-type is map")
        if items is None:
            yield _required(f"{path}.items", "must have a schema if x-kubernetes-list-type is map")
        elif isinstance(items, Mapping) and items.get("type") != "object":
            yield _invalid(
                f"{path}.items.type",
                items.get("type") or "",
                "must be object if parent array's x-kubernetes-list-type is map",
            )
        elif isinstance(items, Mapping):
            item_properties = items.get("properties") or {}
            for key in keys:
                if key not in item_properties:
                    yield _invalid(
                        f"{path}.x-kubernetes-list-map-keys", list(keys), "entries must all be names of item properties"
                    )


def _rule_texts(s: Mapping[str, Any], path: str) -> Iterator[Cause]:
    for index, rule in enumerate(s.get("x-kubernetes-validations") or []):
        if not isinstance(rule, Mapping):
            continue
        where = f"{path}.x-kubernetes-validations[{index}]"
        text, message = str(rule.get("rule") or ""), rule.get("message")
        if not text.strip():
            yield _required(f"{where}.rule", "rule is not specified")
        elif isinstance(message, str) and message and not message.strip():
            yield _invalid(f"{where}.message", message, "message must be non-empty if specified")
        elif isinstance(message, str) and re.search(r"[\n\r]", message.strip()):
            yield _invalid(f"{where}.message", message, "message must not contain line breaks")
        elif re.search(r"[\n\r]", text.strip()) and not str(message or "").strip():
            yield _required(f"{where}.message", "message must be specified if rule contains line breaks")


# ---------------------------------------------------------------------------- CEL compilation


def _rule_struct(rule: Mapping[str, Any]) -> str:
    """``%#v`` of an ``apiextensions.ValidationRule`` (the internal type, fields as of Kubernetes 1.31)."""

    def quoted(value: Any) -> str:
        return _go_value(str(value or ""))

    reason = rule.get("reason")
    reason_text = (
        "(*apiextensions.FieldValueErrorReason)(nil)"
        if reason is None
        else f"(*apiextensions.FieldValueErrorReason)({quoted(reason)})"
    )
    optional = rule.get("optionalOldSelf")
    optional_text = "(*bool)(nil)" if optional is None else f"(*bool)({_go_value(bool(optional))})"
    return (
        f"apiextensions.ValidationRule{{Rule:{quoted(rule.get('rule'))}, Message:{quoted(rule.get('message'))}, "
        f"MessageExpression:{quoted(rule.get('messageExpression'))}, Reason:{reason_text}, "
        f"FieldPath:{quoted(rule.get('fieldPath'))}, OptionalOldSelf:{optional_text}}}"
    )


def _cel_error(text: str, offset: int, message: str) -> str:
    """cel-go's ``Error.ToDisplayString``: the position, the message, the line and a caret under the column."""
    line_no = text.count("\n", 0, offset) + 1
    line_start = text.rfind("\n", 0, offset) + 1
    line_end = text.find("\n", offset)
    line = text[line_start : line_end if line_end >= 0 else len(text)].replace("\t", " ")
    column = offset - line_start
    return f"ERROR: <input>:{line_no}:{column + 1}: {message}\n | {line}\n | {'.' * column}^"


def _cel_checks(schema: Mapping[str, Any], path: str) -> list[Cause]:
    causes: list[Cause] = []
    for node, where in _walk(schema, path):
        for index, rule in enumerate(node.get("x-kubernetes-validations") or []):
            if not isinstance(rule, Mapping) or not str(rule.get("rule") or "").strip():
                continue
            detail = compile_rule(str(rule["rule"]), node)
            if detail is not None:
                causes.append(
                    Cause(
                        "FieldValueInvalid",
                        f"Invalid value: {_rule_struct(rule)}: compilation failed: {detail}",
                        f"{where}.x-kubernetes-validations[{index}].rule",
                    )
                )
    return causes


def _walk(s: Mapping[str, Any], path: str) -> Iterator[tuple[Mapping[str, Any], str]]:
    yield s, path
    for name, sub in (s.get("properties") or {}).items():
        if isinstance(sub, Mapping):
            yield from _walk(sub, _key(path, name))
    for key in ("items", "additionalProperties"):
        if isinstance(s.get(key), Mapping):
            yield from _walk(s[key], f"{path}.{key}")


def _unescape(name: str) -> str:
    """A property name as CEL spells it (``__dash__`` for ``-``, ``__namespace__`` for a reserved word)."""
    match = re.fullmatch(r"__(\w+?)__", name)
    if match and match.group(1) in _CEL_RESERVED:
        return match.group(1)
    for escaped, plain in (("__underscores__", "__"), ("__dot__", "."), ("__dash__", "-"), ("__slash__", "/")):
        name = name.replace(escaped, plain)
    return name


def compile_rule(text: str, schema: Mapping[str, Any]) -> str | None:
    """Compile one rule with ``self`` typed by ``schema``; None when it compiles, else cel-go's error text.

    Field selections on ``self`` are checked against the schema's declared properties (cel-go's
    ``undefined field``); maps (``additionalProperties``) and ``x-kubernetes-preserve-unknown-fields``
    nodes are dynamic and not checked further, nor are variables bound by macros.
    """
    import celpy  # noqa: PLC0415 - only CRDs with rules pay for the import
    from celpy.celparser import CELParseError  # noqa: PLC0415

    try:
        tree: Any = celpy.Environment().compile(text)
    except CELParseError as exc:
        # cel-go words it "Syntax error: mismatched input '<EOF>' expecting {...}"; lark gives the token but
        # not ANTLR's expected set, so the detail stops after the token.
        token = getattr(exc.__context__, "token", None)
        shown = "<EOF>" if token is None or getattr(token, "type", "") == "$END" else str(token)
        column = getattr(exc, "column", None)
        offset = max(0, int(column) - 1) if isinstance(column, int) else 0
        lines = text.split("\n")
        line = getattr(exc, "line", 1) if isinstance(getattr(exc, "line", None), int) else 1
        offset += sum(len(part) + 1 for part in lines[: max(0, line - 1)])
        return _cel_error(text, min(offset, len(text)), f"Syntax error: mismatched input '{shown}'")
    for subtree in tree.iter_subtrees_topdown():
        if subtree.data != "member_dot":
            continue
        chain = _self_chain(subtree)
        if chain is None:
            continue
        node: Mapping[str, Any] | None = schema
        for token in chain[:-1]:
            node = _select(node, _unescape(str(token)))
            if node is None:
                break
        if node is None:
            continue
        last = chain[-1]
        if _select(node, _unescape(str(last))) is None and _declares_fields(node):
            dot = text.rfind(".", 0, int(last.start_pos))
            return _cel_error(text, dot, f"undefined field '{_unescape(str(last))}'")
    return None


def _self_chain(tree: Any) -> list[Any] | None:
    """The field tokens of ``self.a.b`` (``[a, b]``), or None when the chain does not start at ``self``."""
    data = getattr(tree, "data", None)
    if data == "member_dot":
        base = _self_chain(tree.children[0])
        return None if base is None else [*base, tree.children[1]]
    if data in ("member", "primary") and len(tree.children) == 1:
        return _self_chain(tree.children[0])
    if data == "ident" and tree.children and str(tree.children[0]) == "self":
        return []
    return None


def _declares_fields(node: Mapping[str, Any]) -> bool:
    """Whether cel-go types this node as an object with a fixed set of fields."""
    if node.get("x-kubernetes-preserve-unknown-fields") is True or node.get("x-kubernetes-embedded-resource"):
        return False
    return bool(node.get("properties")) and not isinstance(node.get("additionalProperties"), Mapping)


def _select(node: Mapping[str, Any] | None, name: str) -> Mapping[str, Any] | None:
    """The schema of ``node.name`` when CEL can select it; None when it cannot, or when it is dynamic."""
    if node is None:
        return None
    additional = node.get("additionalProperties")
    if isinstance(additional, Mapping):
        return additional
    sub = (node.get("properties") or {}).get(name)
    return sub if isinstance(sub, Mapping) else None
