"""The published JSON Schema carries the policy rules JSON Schema can express, so editors catch them.

Judged with jsonschema (Draft 2020-12), as Python-based checkers and editors' language servers run it.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import pytest

from benchmarks.schema_coverage import EVERY_SECTION, measure
from controller.core.crd import canarypolicy_crd
from controller.core.policy import policy_json_schema
from controller.core.problems import validate_policy
from tests.support.paths import REPO
from tests.support.policies import policy_doc

VALIDATOR = jsonschema.Draft202012Validator(policy_json_schema())


def _refused_by_both(doc: dict[str, Any]) -> bool:
    return bool(validate_policy(doc)[1]) and not VALIDATOR.is_valid(doc)


def _every_section() -> dict[str, Any]:
    return copy.deepcopy(EVERY_SECTION)


def test_the_policy_using_every_section_is_valid_for_lint_and_the_schema() -> None:
    assert validate_policy(_every_section())[1] == []
    VALIDATOR.validate(_every_section())


def _target_both() -> dict[str, Any]:
    doc = policy_doc()
    doc["spec"]["target"]["tcpRoute"] = {"name": "tcp-echo"}
    return doc


def _target_neither() -> dict[str, Any]:
    doc = policy_doc()
    doc["spec"]["target"]["virtualService"] = None
    return doc


def _tcproute_with_subset() -> dict[str, Any]:
    doc = policy_doc()
    doc["spec"]["target"] = {
        "tcpRoute": {"name": "tcp-echo"},
        "stable": {"host": "tcp-echo-v1", "subset": "v1"},
        "canary": {"host": "tcp-echo-v2"},
    }
    return doc


def _name_selector_on_tcp() -> dict[str, Any]:
    doc = policy_doc()
    doc["spec"]["target"]["route"]["name"] = "primary"
    return doc


def _repeated_step() -> dict[str, Any]:
    return policy_doc(steps=[0, 20, 20, 100])


def _check(**fields: Any) -> dict[str, Any]:
    doc = _every_section()
    doc["spec"]["analysis"]["metrics"][1] = {"name": "latency", **fields}
    return doc


def _two_sinks() -> dict[str, Any]:
    doc = _every_section()
    doc["spec"]["alerts"][0]["slack"] = {"webhookUrl": {"env": "SLACK"}}
    return doc


def _unknown_severity() -> dict[str, Any]:
    doc = _every_section()
    doc["spec"]["alerts"][0]["severity"] = {"CanaryExploded": "info"}
    return doc


def _secret_both() -> dict[str, Any]:
    doc = _every_section()
    doc["spec"]["alerts"][2]["teams"]["webhookUrl"]["secretKeyRef"] = {"name": "s", "key": "k"}
    return doc


def _token_and_basic_auth() -> dict[str, Any]:
    doc = _every_section()
    doc["spec"]["analysis"]["prometheus"]["bearerToken"] = {"env": "TOKEN"}
    return doc


def _authorization_header() -> dict[str, Any]:
    doc = _every_section()
    doc["spec"]["analysis"]["prometheus"]["headers"] = {"authorization": "Bearer x"}
    return doc


def _envoy_without_clusters() -> dict[str, Any]:
    doc = _every_section()
    del doc["spec"]["analysis"]["selector"]["canaryCluster"]
    return doc


def _istio_without_stable_workload() -> dict[str, Any]:
    doc = _every_section()
    doc["spec"]["analysis"]["metrics"][0]["template"] = "istio-tcp-connect-error-ratio"
    del doc["spec"]["analysis"]["selector"]["stableWorkload"]
    return doc


def _istio_without_canary_workload() -> dict[str, Any]:
    doc = _every_section()
    doc["spec"]["analysis"]["metrics"][0] = {"name": "n", "template": "istio-tcp-connections", "max": 5}
    del doc["spec"]["analysis"]["selector"]["canaryWorkload"]
    del doc["spec"]["workload"]["canary"]
    return doc


def _zero_duration() -> dict[str, Any]:
    return policy_doc(step_duration="0s")


def _name_with_trailing_newline() -> dict[str, Any]:
    return policy_doc(name="tcp-echo\n")


@pytest.mark.parametrize(
    "make",
    [
        _target_both,
        _target_neither,
        _tcproute_with_subset,
        _name_selector_on_tcp,
        _repeated_step,
        lambda: _check(template="istio-tcp-connections", query="up"),
        lambda: _check(max=1),
        lambda: _check(query="up", countTest={}),
        lambda: _check(query="up", minConnections=5),
        lambda: _check(query="up{a={{ nothing }}}"),
        lambda: _check(query='up{a="{{ workload }}"}'),
        lambda: _check(query="up", compareToStable={"factor": 1}),
        _two_sinks,
        _unknown_severity,
        _secret_both,
        _token_and_basic_auth,
        _authorization_header,
        _envoy_without_clusters,
        _istio_without_stable_workload,
        _istio_without_canary_workload,
        _zero_duration,
        _name_with_trailing_newline,
    ],
    ids=lambda make: getattr(make, "__name__", "check"),
)
def test_the_schema_refuses_a_policy_lint_refuses(make: Any) -> None:
    assert _refused_by_both(make())


def test_over_generated_mutants_the_schema_refuses_nothing_lint_accepts_and_misses_only_what_it_cannot_express() -> (
    None
):
    result = measure(policy_json_schema())
    assert result["schema_refuses_what_lint_accepts"] == 0
    inexpressible = (
        "overflowing duration",  # the bound is on the sum of the parts
        "spec.schedule.steps: reversed",  # order; repeats are caught
        "steps: decreasing",
        "spec.schedule.steps.1: zero",
        "spec.schedule.steps.2: zero",
        "spec.schedule.steps.3: zero",
        "canary equals stable",  # compares two fields
        "min above max",
        "spec.analysis.metrics.1.max: negative",
        "spec.analysis.metrics.1.min: huge",
    )
    assert [m for m in result["missed"] if not m.endswith(inexpressible)] == []
    assert result["schema_refuses_of_those"] >= 0.98 * result["lint_refuses"]


def test_the_published_file_carries_the_rules_and_the_crd_none_of_them() -> None:
    published = json.loads((REPO / "policies" / "canarypolicy.schema.json").read_text())
    assert "oneOf" in json.dumps(published["$defs"]["Target"])
    crd = json.dumps(canarypolicy_crd())
    for keyword in ('"oneOf"', '"uniqueItems"', '"propertyNames"', '"if"', "(?!"):
        assert keyword not in crd
