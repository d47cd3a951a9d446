"""The CanaryPolicy CRD's own CEL rules (x-kubernetes-validations) are enforced as a cluster applies them.

apiextensions-apiserver ``pkg/apiserver/schema/cel/validation.go``: a failed rule is
``field.Invalid(fldPath, <schema type>, message)``, so the cause reads ``Invalid value: "object": <message>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from canary_sandbox.kubeapi import ApiError, KubeApiEmulator

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "helm" / "crds" / "canarypolicies.canaryctl.dev.yaml"


@pytest.fixture(scope="module")
def api() -> KubeApiEmulator:
    """An emulator (not serving: the direct Python API takes the same write path) with the CRD."""
    return KubeApiEmulator(crds=[CRD])


def _policy(**spec_changes: Any) -> dict[str, Any]:
    policy: dict[str, Any] = yaml.safe_load((ROOT / "policies" / "tcp-echo.yaml").read_text(encoding="utf-8"))
    policy["metadata"] = {"name": "tcp-echo", "namespace": "cel"}
    for dotted, value in spec_changes.items():
        node = policy["spec"]
        *parents, last = dotted.split("__")
        for key in parents:
            node = node[key]
        node[last] = value
    return policy


def test_the_seed_policy_passes_every_rule(api: KubeApiEmulator) -> None:
    assert api.create(_policy())["metadata"]["name"] == "tcp-echo"
    assert api.delete("canarypolicies", "tcp-echo", namespace="cel")


def test_steps_that_go_down_are_refused_with_the_rules_message(api: KubeApiEmulator) -> None:
    with pytest.raises(ApiError) as caught:
        api.create(_policy(schedule__steps=[0, 50, 20, 100]))

    assert caught.value.code == 422
    assert [(c.field, c.message) for c in caught.value.causes] == [
        ("spec.schedule.steps", 'Invalid value: "array": steps must be strictly increasing')
    ]


def test_a_target_naming_both_a_virtual_service_and_a_tcp_route_is_refused(api: KubeApiEmulator) -> None:
    policy = _policy()
    policy["spec"]["target"]["tcpRoute"] = {"name": "tcp-echo"}

    with pytest.raises(ApiError) as caught:
        api.create(policy)

    assert ("spec.target", 'Invalid value: "object": exactly one of virtualService or tcpRoute must be set') in [
        (c.field, c.message) for c in caught.value.causes
    ]
