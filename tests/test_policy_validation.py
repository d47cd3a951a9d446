"""Every rule of the CanaryPolicy schema, one table row each, through validate_policy."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from controller.core.problems import validate_policy
from tests.support.policies import policy_doc


def _problems(doc: dict[str, Any]) -> list[tuple[str, str]]:
    policy, problems = validate_policy(doc)
    assert (policy is None) == bool(problems)
    return [(p.dotted, p.message) for p in problems]


def _with(path: str, value: Any, doc: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of the seed policy with ``path`` (dotted) set to ``value``; value ... deletes it."""
    result = copy.deepcopy(doc or policy_doc())
    *parents, last = path.split(".")
    node = result
    for part in parents:
        node = node[part]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return result


def test_seed_policy_is_valid_and_defaults_apply() -> None:
    policy, problems = validate_policy(policy_doc())
    assert problems == []
    assert policy is not None
    assert policy.metadata.namespace == "default"
    assert policy.spec.target.kind == "VirtualService"
    assert policy.target_namespace == "default"
    assert policy.spec.schedule.step_duration_seconds == 120


def test_target_namespace_overrides_policy_namespace() -> None:
    doc = policy_doc(namespace="team-a")
    doc["spec"]["target"]["virtualService"]["namespace"] = "mesh-config"
    policy, _ = validate_policy(doc)
    assert policy is not None
    assert policy.target_namespace == "mesh-config"


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (
            "apiVersion",
            "canaryctl.dev/v1",
            ("apiVersion", "must be 'canaryctl.dev/v1alpha1' (got 'canaryctl.dev/v1')"),
        ),
        ("kind", "Canary", ("kind", "must be 'CanaryPolicy' (got 'Canary')")),
        ("metadata.name", "Tcp_Echo", ("metadata.name", "must be a DNS-1123 label")),
        ("metadata.name", "a" * 64, ("metadata.name", "must be a DNS-1123 label")),
        ("metadata.name", "-echo", ("metadata.name", "must be a DNS-1123 label")),
        ("metadata.name", ..., ("metadata.name", "required field is missing")),
        ("metadata.namespace", "Prod", ("metadata.namespace", "must be a DNS-1123 label")),
        ("spec.schedule", ..., ("spec.schedule", "required field is missing")),
        ("spec.schedule.steps", [], ("spec.schedule.steps", "must not be empty")),
        ("spec.schedule.steps", [0, 120], ("spec.schedule.steps[1]", "must be at most 100 (got 120)")),
        ("spec.schedule.steps", [-5, 10], ("spec.schedule.steps[0]", "must be at least 0 (got -5)")),
        ("spec.schedule.steps", [0, 20.5], ("spec.schedule.steps[1]", "must be an integer (got 20.5)")),
        ("spec.schedule.steps", [0, "20"], ("spec.schedule.steps[1]", "must be an integer (got '20')")),
        ("spec.schedule.steps", [0, True], ("spec.schedule.steps[1]", "must be an integer (got true)")),
        ("spec.schedule.steps", "0,20", ("spec.schedule.steps", "must be a list")),
        (
            "spec.schedule.steps",
            [0, 50, 10, 100],
            ("spec.schedule.steps[2]", "must be greater than the previous step (got 10 after 50)"),
        ),
        (
            "spec.schedule.steps",
            [0, 20, 20],
            ("spec.schedule.steps[2]", "must be greater than the previous step (got 20 after 20)"),
        ),
        (
            "spec.schedule.stepDuration",
            "2 minutes",
            ("spec.schedule.stepDuration", "must be a Go-style duration"),
        ),
        ("spec.schedule.stepDuration", "120", ("spec.schedule.stepDuration", "must be a Go-style duration")),
        ("spec.schedule.stepDuration", "0s", ("spec.schedule.stepDuration", "must be positive (got '0s')")),
        ("spec.schedule.stepDuration", "-1m", ("spec.schedule.stepDuration", "must be positive (got '-1m')")),
        (
            "spec.schedule.stepDuration",
            120,
            ("spec.schedule.stepDuration", "must be a duration with a unit, such as 120s (got the number 120)"),
        ),
        (
            "spec.target.route.protocol",
            "udp",
            ("spec.target.route.protocol", "must be 'tcp', 'tls' or 'http'"),
        ),
        ("spec.target.route.port", 0, ("spec.target.route.port", "must be at least 1 (got 0)")),
        ("spec.target.route.port", 70000, ("spec.target.route.port", "must be at most 65535")),
        ("spec.target.route.index", -1, ("spec.target.route.index", "must be at least 0")),
        (
            "spec.target.route.name",
            "primary",
            ("spec.target.route.name", "the name selector applies to http routes only (protocol is tcp)"),
        ),
        ("spec.target.stable", ..., ("spec.target.stable", "required field is missing")),
        ("spec.target.stable.host", "tcp echo", ("spec.target.stable.host", "must be a host name")),
        ("spec.target.canary.port", "9000", ("spec.target.canary.port", "must be an integer")),
        (
            "spec.target.canary",
            {"host": "tcp-echo", "subset": "v1"},
            ("spec.target.canary", "must differ from stable"),
        ),
        (
            "spec.target.virtualService",
            ...,
            ("spec.target", "exactly one of virtualService or tcpRoute must be set (got neither)"),
        ),
        (
            "spec.target.tcpRoute",
            {"name": "tcp-echo"},
            ("spec.target", "exactly one of virtualService or tcpRoute must be set (got both)"),
        ),
        (
            "spec.target.virtualService",
            {"name": "Bad_Name"},
            ("spec.target.virtualService.name", "must be a DNS-1123 subdomain"),
        ),
        (
            "spec.target.virtualService",
            "tcp-echo",
            ("spec.target.virtualService", "must be a mapping (got 'tcp-echo')"),
        ),
    ],
)
def test_each_rule_reports_the_field_at_fault(path: str, value: Any, expected: tuple[str, str]) -> None:
    problems = _problems(_with(path, value))
    assert any(where == expected[0] and expected[1] in message for where, message in problems), problems


@pytest.mark.parametrize(
    ("path", "value", "suggestion"),
    [
        ("spec.schedule.stepDuraton", "2m", "unknown field 'stepDuraton' (did you mean 'stepDuration'?)"),
        (
            "spec.target.virtualServce",
            {"name": "x"},
            "unknown field 'virtualServce' (did you mean 'virtualService'?)",
        ),
        ("spec.target.route.prot", 1, "unknown field 'prot' (did you mean 'port'?)"),
        ("metadata.namepsace", "x", "unknown field 'namepsace' (did you mean 'namespace'?)"),
        ("spec.analysiz", {}, "unknown field 'analysiz' (did you mean 'analysis'?)"),
    ],
)
def test_unknown_fields_are_rejected_with_a_suggestion(path: str, value: Any, suggestion: str) -> None:
    problems = _problems(_with(path, value))
    assert (path, suggestion) in problems


def test_tcproute_targets_reject_virtualservice_only_selectors() -> None:
    target = {
        "tcpRoute": {"name": "tcp-echo"},
        "route": {"protocol": "tls", "port": 31400},
        "stable": {"host": "tcp-echo-v1", "subset": "v1"},
        "canary": {"host": "tcp-echo-v2"},
    }
    problems = dict(_problems(policy_doc(target=target)))
    assert problems["spec.target.route.protocol"] == "a TCPRoute has tcp rules only (got tls)"
    assert "select the rule with index" in problems["spec.target.route.port"]
    assert "subsets belong to VirtualServices" in problems["spec.target.stable.subset"]


def test_name_selector_is_accepted_on_http_routes() -> None:
    target = {
        "virtualService": {"name": "rollouts-demo-vsvc1"},
        "route": {"protocol": "http", "name": "http-primary"},
        "stable": {"host": "rollouts-demo-stable"},
        "canary": {"host": "rollouts-demo-canary"},
    }
    assert _problems(policy_doc(target=target)) == []


def test_every_rule_violation_is_reported_not_just_the_first() -> None:
    doc = policy_doc(steps=[0, 50, 10, 5])
    doc["spec"]["target"]["route"]["name"] = "primary"
    problems = [where for where, _ in _problems(doc)]
    assert problems == ["spec.target.route.name", "spec.schedule.steps[2]", "spec.schedule.steps[3]"]


def test_a_last_step_below_100_is_accepted() -> None:
    assert _problems(policy_doc(steps=[10, 25])) == []


@pytest.mark.parametrize("doc", [None, [], "text", 42])
def test_a_document_that_is_not_a_mapping_is_a_problem(doc: Any) -> None:
    assert _problems(doc)
