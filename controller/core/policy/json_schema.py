"""The published JSON Schema of a CanaryPolicy, and the editor rules: the cross-field rules JSON Schema can express."""

from __future__ import annotations

from typing import Any

from controller.core.policy.fields import ALERT_NAMES, CREDENTIAL_HEADERS, ERROR_RATIO_TEMPLATES
from controller.core.policy.models import ALERT_SINKS, CanaryPolicy
from controller.core.policy.rules import TEMPLATE_VARIABLES
from controller.core.promql import NUMERIC_VARIABLES


def policy_json_schema(*, editor_rules: bool = True) -> dict[str, Any]:
    """The JSON Schema of a CanaryPolicy document (published as policies/canarypolicy.schema.json).

    Rules that relate fields are enforced by ``canaryctl lint`` and the controller; with ``editor_rules``
    the schema also carries the ones JSON Schema can express (see :func:`_add_editor_rules`), so that
    editors catch them. The CRD is built without them: a Kubernetes structural schema cannot hold them.
    """
    schema = CanaryPolicy.model_json_schema(by_alias=True, mode="validation")
    if editor_rules:
        _add_editor_rules(schema)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://canaryctl.dev/schemas/v1alpha1/canarypolicy.schema.json",
        **schema,
    }


def _set(name: str) -> dict[str, Any]:
    """The field is present and not null (an optional field written ``null`` is unset)."""
    return {"required": [name], "properties": {name: {"not": {"type": "null"}}}}


def _exactly_one(*names: str) -> dict[str, Any]:
    return {"oneOf": [_set(name) for name in names]}


def _uses_template(*templates: str, also: dict[str, Any] | None = None) -> dict[str, Any]:
    """``analysis.metrics`` holds a check with one of ``templates`` (and matching ``also``)."""
    check: dict[str, Any] = {"required": ["template"], "properties": {"template": {"enum": list(templates)}}}
    return {"properties": {"metrics": {"contains": {**check, **({"allOf": [also]} if also else {})}}}}


def _selector_needs(field: str) -> dict[str, Any]:
    return {"required": ["selector"], "properties": {"selector": _set(field)}}


_ISTIO_TEMPLATES = ("istio-tcp-connect-error-ratio", "istio-tcp-connections")
_JUDGED_AGAINST_STABLE = {"anyOf": [_set("countTest"), _set("compareToStable")]}
_VARIABLES = "|".join(sorted(TEMPLATE_VARIABLES))
_STRING_VARIABLES = "|".join(sorted(TEMPLATE_VARIABLES - NUMERIC_VARIABLES))
# Every "{{" opens a known placeholder: ``{{ name }}`` or ``{{ name | regex }}``.
_KNOWN_PLACEHOLDERS = rf"^(?:[^{{}}]|\{{(?!\{{)|\}}(?!\}})|\{{\{{\s*(?:{_VARIABLES})\s*(?:\|\s*regex\s*)?\}}\}})*$"
# A string variable right after a quote is inside the query's own quotes (lint checks the general case).
_QUOTED_PLACEHOLDER = "[\"'`]" + rf"\{{\{{\s*(?:{_STRING_VARIABLES})\s*(?:\|\s*regex\s*)?\}}\}}"
_CREDENTIAL_HEADER = (
    "^\\s*(?:"
    + "|".join("".join(f"[{c.upper()}{c}]" if c.isalpha() else c for c in name) for name in sorted(CREDENTIAL_HEADERS))
    + ")\\s*$"
)


def _editor_rules() -> dict[str, list[dict[str, Any]]]:
    """Per model ($defs name), the rules of ``target_rules``, ``analysis_rules`` and the validators that
    JSON Schema can express. Not expressible, so left to lint: increasing order of steps (only repeats are
    caught), canary different from stable, min not above max, unique names, durations' upper bound."""
    return {
        "Target": [
            _exactly_one("virtualService", "tcpRoute"),
            {
                "if": _set("tcpRoute"),
                "then": {
                    "properties": {
                        "route": {"properties": {"protocol": {"const": "tcp"}, "port": {"type": "null"}}},
                        "stable": {"properties": {"subset": {"type": "null"}}},
                        "canary": {"properties": {"subset": {"type": "null"}}},
                    }
                },
            },
        ],
        "RouteSelector": [
            {"if": _set("name"), "then": {"required": ["protocol"], "properties": {"protocol": {"const": "http"}}}}
        ],
        "Schedule": [{"properties": {"steps": {"uniqueItems": True, "maxItems": 101}}}],
        "MetricCheck": [
            _exactly_one("template", "query"),
            *(
                {
                    "if": _set(field),
                    "then": {
                        "required": ["template"],
                        "properties": {"template": {"enum": list(ERROR_RATIO_TEMPLATES)}},
                    },
                }
                for field in ("countTest", "minConnections")
            ),
            {
                "if": {"allOf": [_set("query"), _set("compareToStable")]},
                "then": {"properties": {"query": {"pattern": r"\{\{\s*workload\s*\}\}"}}},
            },
            {"properties": {"query": {"pattern": _KNOWN_PLACEHOLDERS, "not": {"pattern": _QUOTED_PLACEHOLDER}}}},
        ],
        "Analysis": [
            {"properties": {"metrics": {"uniqueItems": True}}},
            {"if": _uses_template("envoy-tcp-connect-error-ratio"), "then": _selector_needs("canaryCluster")},
            {
                "if": _uses_template("envoy-tcp-connect-error-ratio", also=_JUDGED_AGAINST_STABLE),
                "then": _selector_needs("stableCluster"),
            },
            {
                "if": _uses_template(*_ISTIO_TEMPLATES, also=_JUDGED_AGAINST_STABLE),
                "then": _selector_needs("stableWorkload"),
            },
        ],
        "Spec": [
            {"properties": {"alerts": {"uniqueItems": True}}},
            {
                "if": {"required": ["analysis"], "properties": {"analysis": _uses_template(*_ISTIO_TEMPLATES)}},
                "then": {
                    "anyOf": [
                        {"properties": {"analysis": _selector_needs("canaryWorkload")}},
                        {"required": ["workload"], "properties": {"workload": _set("canary")}},
                    ]
                },
            },
        ],
        "AlertRoute": [
            _exactly_one(*ALERT_SINKS),
            {
                "if": _set("pagerduty"),
                "then": {"properties": {"on": {"items": {"not": {"const": "CanaryPromoted"}}}}},
            },
            {"properties": {"severity": {"propertyNames": {"enum": list(ALERT_NAMES)}}}},
        ],
        "SecretRef": [_exactly_one("secretKeyRef", "env")],
        "PrometheusSpec": [
            {"not": {"allOf": [_set("bearerToken"), _set("basicAuth")]}},
            {"properties": {"headers": {"propertyNames": {"not": {"pattern": _CREDENTIAL_HEADER}}}}},
        ],
    }


def _whole_match_patterns(node: Any) -> None:
    """``$`` also matches before a final newline in Python's ``re`` (which Python validators use); ECMA-262
    and RE2 anchor at the very end. ``$(?!\\n)`` means the very end in all of them."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str) and value.endswith("$") and not value.endswith("\\$"):
                node[key] = value + "(?!\\n)"
            else:
                _whole_match_patterns(value)
    elif isinstance(node, list):
        for item in node:
            _whole_match_patterns(item)


def _add_editor_rules(schema: dict[str, Any]) -> None:
    for name, rules in _editor_rules().items():
        schema["$defs"][name]["allOf"] = rules
    _whole_match_patterns(schema)
