"""Structural-schema handling of custom resources: pruning, defaulting and validation.

Emulates what kube-apiserver's ``apiextensions-apiserver`` does with a CRD version's
``openAPIV3Schema`` on every write, in the same order:

1. pruning: fields the schema does not declare are dropped (unless
   ``x-kubernetes-preserve-unknown-fields: true`` covers them) and reported as ``unknown field "spec.foo"``;
2. ``null`` in a non-nullable property is dropped, or replaced by the property's ``default``;
3. defaulting: ``default`` values are filled in for missing properties, at every depth;
4. validation with JSON Schema (draft 4, which is what the Kubernetes dialect is built on), after
   translating the dialect: ``nullable`` admits ``null``, ``x-kubernetes-int-or-string`` admits an integer or
   a string, ``date-time``, ``date`` and ``byte`` are checked on strings only (kube-openapi
   ``validate/formats.go``, ``formatValidator.Applies``: a format applies only when the value is a string,
   so ``format: int32`` never bounds an integer; ``int32`` is not a registered string format either), and
   ``x-kubernetes-list-type: set`` / ``map`` reject duplicates. Violations come back as ``Status`` causes
   naming the field path the way the server does (``spec.tcp[0].route[0].weight``).

Deliberately not emulated:

* CEL rules (``x-kubernetes-validations``) are evaluated with ``cel-python`` (a maintained CEL library),
  with ``self`` bound to the node and the Kubernetes list function ``isSorted()`` added; a failed rule is a
  ``FieldValueInvalid`` cause ``Invalid value: "<type>": <message>`` on the node's path, as
  apiextensions' ``cel.Validator`` words it. Transition rules (those using ``oldSelf``) are not evaluated,
  nor ``messageExpression``, CEL cost limits, or the other Kubernetes CEL libraries (``url``, ``regex``
  extensions, ``quantity``).
* ``x-kubernetes-embedded-resource`` gets no ObjectMeta checks of its own; ``metadata`` at the root is
  checked by the emulator's own ObjectMeta rules, not by the schema.
* Validation ratcheting (1.30+: unchanged invalid fields pass on update) is not done: every write is
  validated in full.
* String formats other than ``date-time``, ``date`` and ``byte`` are not checked (apiextensions also knows
  ``uuid``, ``hostname``, ``ipv4``, ``cidr``, ``duration`` and more).
"""

from __future__ import annotations

import base64
import binascii
import copy
import itertools
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from jsonschema import Draft4Validator, FormatChecker
from jsonschema.exceptions import SchemaError, ValidationError

from canary_sandbox.kubeapi.status import Cause, describe_value

INT32_RANGE = (-(2**31), 2**31 - 1)
INT64_RANGE = (-(2**63), 2**63 - 1)
_DATE_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?$",
)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ROOT_FIELDS = ("apiVersion", "kind", "metadata")
_DOCUMENTATION_KEYS = frozenset({"description", "example", "externalDocs", "title", "default", "nullable"})

FORMAT_CHECKER = FormatChecker(formats=())


def _is_date_time(value: object) -> bool:
    return not isinstance(value, str) or bool(_DATE_TIME.match(value))


def _is_date(value: object) -> bool:
    return not isinstance(value, str) or bool(_DATE.match(value))


def _is_base64(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


for _format, _check in (
    ("date-time", _is_date_time),
    ("date", _is_date),
    ("byte", _is_base64),
):
    FORMAT_CHECKER.checks(_format)(_check)


class SchemaCompileError(ValueError):
    """The CRD's schema is not one this emulator (or JSON Schema draft 4) can use."""


def field_path(parts: Iterable[str | int]) -> str:
    """Join path parts the way apimachinery prints field paths: ``spec.tcp[0].route``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def to_json_schema(node: Any, *, root: bool = False) -> Any:
    """Translate a Kubernetes ``openAPIV3Schema`` node into plain JSON Schema draft 4.

    Args:
        node: a schema node (or list of nodes, for ``allOf``/``anyOf``/``oneOf``).
        root: true for the top-level node, whose ``metadata`` is left to ObjectMeta validation.

    Returns:
        A new schema; the input is not changed.
    """
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, Mapping):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in _DOCUMENTATION_KEYS:
            continue
        if key in ("properties", "patternProperties", "definitions") and isinstance(value, Mapping):
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not", "allOf", "anyOf", "oneOf"):
            out[key] = to_json_schema(value) if isinstance(value, (Mapping, list)) else value
        else:
            out[key] = value
    if root and isinstance(out.get("properties"), dict) and "metadata" in out["properties"]:
        out["properties"]["metadata"] = {"type": "object"}
    if node.get("x-kubernetes-int-or-string") is True:
        out.pop("type", None)
        if out.get("anyOf") == [{"type": "integer"}, {"type": "string"}]:
            del out["anyOf"]
        out["type"] = ["integer", "string"]
    if node.get("nullable") is True:
        out = _admit_null(out)
    return out


def _admit_null(schema: dict[str, Any]) -> dict[str, Any]:
    if any(k in schema for k in ("allOf", "anyOf", "oneOf", "not")):
        return {"anyOf": [{"type": "null"}, schema]}
    kind = schema.get("type")
    if isinstance(kind, str):
        schema["type"] = [kind, "null"]
    elif isinstance(kind, list) and "null" not in kind:
        schema["type"] = [*kind, "null"]
    if isinstance(schema.get("enum"), list) and None not in schema["enum"]:
        schema["enum"] = [*schema["enum"], None]
    return schema


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _cause(error: ValidationError) -> list[Cause]:
    """Word one jsonschema error the way kube-openapi's validator words it."""
    path = field_path(error.absolute_path)
    where = path or "<root>"
    check, limit, value = error.validator, error.validator_value, error.instance
    if check == "required":
        present = value if isinstance(value, Mapping) else {}
        return [
            Cause("FieldValueRequired", "Required value", field_path([*error.absolute_path, name]))
            for name in limit
            if name not in present
        ]
    if check == "type":
        expected = limit if isinstance(limit, str) else ",".join(limit)
        got = _type_name(value)
        message = f'Invalid value: "{got}": {where} in body must be of type {expected}: "{got}"'
        return [Cause("FieldValueTypeInvalid", message, path)]
    if check == "enum":
        allowed = ", ".join(describe_value(v) for v in limit)
        return [
            Cause(
                "FieldValueNotSupported",
                f"Unsupported value: {describe_value(value)}: supported values: {allowed}",
                path,
            )
        ]
    if check == "maxItems":
        return [Cause("FieldValueTooMany", f"Too many: {len(value)}: must have at most {limit} items", path)]
    if check == "maxLength":
        return [Cause("FieldValueTooLong", f"Too long: may not be more than {limit} bytes", path)]
    if check == "maxProperties":
        return [Cause("FieldValueTooMany", f"Too many: {len(value)}: must have at most {limit} items", path)]
    wording = {
        "maximum": f"should be less than or equal to {limit}",
        "minimum": f"should be greater than or equal to {limit}",
        "exclusiveMaximum": f"should be less than {error.schema.get('maximum')}",
        "exclusiveMinimum": f"should be greater than {error.schema.get('minimum')}",
        "minItems": f"should have at least {limit} items",
        "minLength": f"should be at least {limit} chars long",
        "minProperties": f"should have at least {limit} properties",
        "pattern": f"should match '{limit}'",
        "format": f"must be of type {limit}: {describe_value(value)}",
        "oneOf": "must validate one and only one schema (oneOf)",
        "anyOf": "must validate at least one schema (anyOf)",
        "allOf": "must validate all the schemas (allOf)",
        "not": "must not validate the schema (not)",
        "multipleOf": f"should be a multiple of {limit}",
        "uniqueItems": "shouldn't contain duplicates",
    }.get(check)
    if check in ("maximum", "minimum") and error.schema.get(f"exclusive{check.capitalize()}") is True:
        wording = wording.replace(" or equal to", "") if wording else wording
    message = f"{where} in body {wording}" if wording else error.message
    shown = f"{len(value)}" if check in ("minItems", "minProperties") else describe_value(value)
    return [Cause("FieldValueInvalid", f"Invalid value: {shown}: {message}", path)]


class StructuralSchema:
    """One CRD version's schema, ready to prune, default and validate objects.

    Args:
        openapi_v3_schema: the version's ``schema.openAPIV3Schema``.

    Raises:
        SchemaCompileError: the schema is not valid JSON Schema once translated.
    """

    def __init__(self, openapi_v3_schema: Mapping[str, Any]) -> None:
        self.raw: Mapping[str, Any] = copy.deepcopy(dict(openapi_v3_schema))
        translated = to_json_schema(self.raw, root=True)
        try:
            Draft4Validator.check_schema(translated)
        except SchemaError as exc:
            raise SchemaCompileError(f"{field_path(exc.absolute_path) or '<root>'}: {exc.message}") from exc
        self._validator = Draft4Validator(translated, format_checker=FORMAT_CHECKER)

    def prune(self, obj: dict[str, Any]) -> list[str]:
        """Drop undeclared fields in place.

        Returns:
            The dropped fields' paths (``spec.foo``), sorted.
        """
        unknown: list[str] = []
        _prune(obj, self.raw, [], unknown, root=True)
        return sorted(unknown)

    def apply_defaults(self, obj: dict[str, Any]) -> None:
        """Drop ``null`` from non-nullable properties and fill in ``default`` values, in place."""
        _default(obj, self.raw)

    def validate(self, obj: Mapping[str, Any]) -> list[Cause]:
        """Every violation of the schema, as ``Status`` causes (empty when the object is valid)."""
        causes: list[Cause] = []
        seen: set[tuple[str | None, str]] = set()
        errors = sorted(self._validator.iter_errors(obj), key=lambda e: field_path(e.absolute_path))
        for error in errors:
            for cause in _cause(error):
                if (cause.field, cause.message) not in seen:
                    seen.add((cause.field, cause.message))
                    causes.append(cause)
        for cause in [*_list_type_causes(obj, self.raw, []), *_cel_causes(obj, self.raw, [])]:
            if (cause.field, cause.message) not in seen:
                seen.add((cause.field, cause.message))
                causes.append(cause)
        return causes


def _prune(value: Any, schema: Any, path: list[str | int], unknown: list[str], *, root: bool = False) -> None:
    if not isinstance(schema, Mapping):
        return
    if isinstance(value, dict):
        additional = schema.get("additionalProperties")
        if isinstance(additional, Mapping):
            for key, item in value.items():
                _prune(item, additional, [*path, key], unknown)
            return
        properties = schema.get("properties") or {}
        keep_unknown = schema.get("x-kubernetes-preserve-unknown-fields") is True or additional is True
        for key in list(value):
            if root and key in _ROOT_FIELDS:
                continue
            if key in properties:
                _prune(value[key], properties[key], [*path, key], unknown)
            elif not keep_unknown:
                del value[key]
                unknown.append(field_path([*path, key]))
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, Mapping):
            for index, item in enumerate(value):
                _prune(item, items, [*path, index], unknown)


def _default(value: Any, schema: Any) -> None:
    if not isinstance(schema, Mapping):
        return
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        for key, sub in properties.items():
            if not isinstance(sub, Mapping):
                continue
            if key in value and value[key] is None and sub.get("nullable") is not True:
                del value[key]
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
        additional = schema.get("additionalProperties")
        for key, item in value.items():
            if key in properties:
                _default(item, properties[key])
            elif isinstance(additional, Mapping):
                _default(item, additional)
    elif isinstance(value, list):
        items = schema.get("items")
        for item in value:
            _default(item, items)


def _list_type_causes(value: Any, schema: Any, path: list[str | int]) -> list[Cause]:
    if not isinstance(schema, Mapping):
        return []
    causes: list[Cause] = []
    if isinstance(value, list):
        list_type = schema.get("x-kubernetes-list-type")
        keys = schema.get("x-kubernetes-list-map-keys") or []
        seen: set[str] = set()
        for index, item in enumerate(value):
            if list_type == "set":
                identity: Any = item
            elif list_type == "map" and isinstance(item, Mapping):
                identity = {k: item.get(k) for k in keys}
            else:
                continue
            token = json.dumps(identity, sort_keys=True)
            if token in seen:
                causes.append(
                    Cause(
                        "FieldValueDuplicate",
                        f"Duplicate value: {describe_value(identity)}",
                        field_path([*path, index]),
                    )
                )
            seen.add(token)
        for index, item in enumerate(value):
            causes.extend(_list_type_causes(item, schema.get("items"), [*path, index]))
    elif isinstance(value, dict):
        properties = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        for key, item in value.items():
            sub = properties.get(key, additional if isinstance(additional, Mapping) else None)
            causes.extend(_list_type_causes(item, sub, [*path, key]))
    return causes


_CEL_ENV: Any = None
_CEL_PROGRAMS: dict[str, Any] = {}


def _cel_program(rule: str) -> Any:
    global _CEL_ENV  # noqa: PLW0603 - one compiled environment, shared by every schema
    import celpy  # noqa: PLC0415 - only CRDs with rules pay for the import

    if _CEL_ENV is None:
        _CEL_ENV = celpy.Environment()
    program = _CEL_PROGRAMS.get(rule)
    if program is None:

        def is_sorted(items: Any) -> Any:
            return celpy.celtypes.BoolType(all(a <= b for a, b in itertools.pairwise(items)))

        program = _CEL_ENV.program(_CEL_ENV.compile(rule), functions={"isSorted": is_sorted})
        _CEL_PROGRAMS[rule] = program
    return program


def _cel_causes(value: Any, schema: Any, path: list[str | int]) -> list[Cause]:
    """Failed ``x-kubernetes-validations`` rules below this node (children first, then the node)."""
    if not isinstance(schema, Mapping) or value is None:
        return []
    causes: list[Cause] = []
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        for key, item in value.items():
            sub = properties.get(key, additional if isinstance(additional, Mapping) else None)
            if not path and key in _ROOT_FIELDS:
                continue
            causes.extend(_cel_causes(item, sub, [*path, key]))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            causes.extend(_cel_causes(item, schema.get("items"), [*path, index]))
    for rule in schema.get("x-kubernetes-validations") or []:
        if not isinstance(rule, Mapping) or "oldSelf" in str(rule.get("rule") or ""):
            continue
        text = str(rule.get("rule") or "")
        from celpy.adapter import json_to_cel  # noqa: PLC0415
        from celpy.celparser import CELParseError  # noqa: PLC0415
        from celpy.evaluation import CELEvalError  # noqa: PLC0415

        try:
            passed = bool(_cel_program(text).evaluate({"self": json_to_cel(value)}))
        except (CELEvalError, CELParseError, TypeError) as exc:
            passed = False
            text = f"{text}: {exc}"
        if not passed:
            message = str(rule.get("message") or f"failed rule: {text}")
            causes.append(
                Cause("FieldValueInvalid", f'Invalid value: "{_type_name(value)}": {message}', field_path(path))
            )
    return causes
