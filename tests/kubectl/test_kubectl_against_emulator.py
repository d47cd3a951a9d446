"""Debian's kubectl 1.20 drives the emulator the way it drives a cluster (issue 14, item 3).

What kubectl prints is quoted from the real server's behaviour named beside each test; where kubectl 1.20
cannot do something against the emulator, the test is skipped with the reason instead of faked.
"""

from __future__ import annotations

import copy
import json
import subprocess
import threading
import time
import uuid
from typing import Any

import pytest
import yaml

from canary_sandbox.kubeapi import KubeApiEmulator
from tests.kubectl.conftest import POLICY, POLICY_NAMESPACE, Kubectl


def _policy(namespace: str, name: str = "tcp-echo", **labels: str) -> dict[str, Any]:
    policy: dict[str, Any] = yaml.safe_load(POLICY.read_text(encoding="utf-8"))
    policy["metadata"] = {"name": name, "namespace": namespace, **({"labels": labels} if labels else {})}
    return policy


def _status(phase: str, *, weight: int | None = None, step: str = "", ready: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "weight": weight, "step": step, "message": f"{phase.lower()} now"}
    if ready is not None:
        status["conditions"] = [
            {"type": "Ready", "status": ready, "reason": "Test", "lastTransitionTime": "2026-12-03T18:59:26Z"}
        ]
    return status


@pytest.fixture
def namespace(kube_emulator: KubeApiEmulator) -> str:
    name = f"kc-{uuid.uuid4().hex[:8]}"
    kube_emulator.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"rc {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result.stdout


def test_api_resources_lists_canary_policies_with_their_short_name_and_verbs(kubectl: Kubectl) -> None:
    out = _ok(kubectl("api-resources", "--api-group=canaryctl.dev", "-o", "wide"))

    line = next(row for row in out.splitlines() if row.startswith("canarypolicies"))
    assert line.split()[:5] == ["canarypolicies", "cpol", "canaryctl.dev/v1alpha1", "true", "CanaryPolicy"]
    # kubectl 1.20 prints no categories column; `get canary` (the category) is covered below. A real server
    # also lists deletecollection, which the emulator does not serve.
    assert line.split()[5:] == ["[create", "delete", "get", "list", "patch", "update", "watch]"]


def test_apply_twice_creates_then_stores_nothing_new(kubectl: Kubectl, kube_emulator: KubeApiEmulator) -> None:
    kube_emulator.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": POLICY_NAMESPACE}})

    first = _ok(kubectl("apply", "-f", str(POLICY)))
    stored = kube_emulator.get("canarypolicies", "tcp-echo", namespace=POLICY_NAMESPACE)
    second = _ok(kubectl("apply", "-f", str(POLICY)))

    assert first.strip() == "canarypolicy.canaryctl.dev/tcp-echo created"
    # The schema defaults fields inside spec.analysis.metrics items; a JSON merge patch replaces lists whole,
    # so kubectl's three-way patch re-sends that list and prints "configured", as against a real server,
    # though nothing changes and no new resourceVersion is stored.
    assert second.strip() == "canarypolicy.canaryctl.dev/tcp-echo configured"
    again = kube_emulator.get("canarypolicies", "tcp-echo", namespace=POLICY_NAMESPACE)
    assert stored is not None
    assert again is not None
    assert again["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]
    assert "kubectl.kubernetes.io/last-applied-configuration" in again["metadata"]["annotations"]


def test_apply_validates_against_the_served_openapi_and_refuses_an_unknown_field(
    kubectl: Kubectl, kube_emulator: KubeApiEmulator, namespace: str
) -> None:
    # kubectl 1.20 reads /openapi/v2 as gnostic protobuf and validates client-side (the default --validate);
    # its message names the definition as kube-apiserver publishes it (builder.go, ToRESTFriendlyName).
    policy = _policy(namespace, name="bogus")
    policy["spec"]["bogus"] = 1

    result = kubectl("apply", "-f", "-", stdin=yaml.safe_dump(policy))

    assert result.returncode == 1
    assert result.stderr.strip() == (
        'error: error validating "STDIN": error validating data: ValidationError(CanaryPolicy.spec): unknown field '
        '"bogus" in dev.canaryctl.v1alpha1.CanaryPolicy.spec; if you choose to ignore these errors, turn '
        "validation off with --validate=false"
    )
    assert kube_emulator.get("canarypolicies", "bogus", namespace=namespace) is None


def test_apply_with_server_dry_run_stores_nothing(
    kubectl: Kubectl, kube_emulator: KubeApiEmulator, namespace: str
) -> None:
    # kubectl 1.20 checks the OpenAPI paths for a PATCH with a dryRun parameter before it sends dryRun=All.
    out = _ok(kubectl("apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(_policy(namespace))))

    assert out.strip() == "canarypolicy.canaryctl.dev/tcp-echo created (server dry run)"
    assert kube_emulator.get("canarypolicies", "tcp-echo", namespace=namespace) is None


def test_explain_canary_policy_spec_prints_the_crd_descriptions(kubectl: Kubectl) -> None:
    out = _ok(kubectl("explain", "canarypolicy.spec"))

    lines = [line.strip() for line in out.splitlines()]
    assert lines[:2] == ["KIND:     CanaryPolicy", "VERSION:  canaryctl.dev/v1alpha1"]
    assert "RESOURCE: spec <Object>" in lines
    fields = {line.split()[0]: line.split()[1:] for line in lines[lines.index("FIELDS:") + 1 :: 3] if line}
    assert fields["target"] == ["<Object>", "-required-"]
    assert fields["schedule"] == ["<Object>", "-required-"]
    # analysis is nullable: ToStructuralOpenAPIV2 drops the type of a nullable node, so v2 shows "<>".
    assert fields["analysis"] == ["<>"]


def test_explain_a_virtual_service_field_from_the_istio_crd(kubectl: Kubectl) -> None:
    out = _ok(kubectl("explain", "virtualservice.spec.tcp.route.weight"))

    assert "FIELD:    weight <integer>" in out
    assert "Weight specifies the relative proportion of traffic to be forwarded to the" in out


def test_get_canary_policies_prints_the_crd_printer_columns(
    kubectl: Kubectl, kube_emulator: KubeApiEmulator, namespace: str
) -> None:
    kube_emulator.put({**_policy(namespace), "status": _status("Progressing", weight=20, step="2/4")})

    out = _ok(kubectl("get", "canarypolicies", "-n", namespace))
    wide = _ok(kubectl("get", "cpol", "-n", namespace, "-o", "wide"))

    header, row = out.splitlines()
    assert header.split() == ["NAME", "PHASE", "STEP", "WEIGHT", "AGE"]
    assert row.split()[:4] == ["tcp-echo", "Progressing", "2/4", "20"]
    assert wide.splitlines()[0].split() == ["NAME", "PHASE", "STEP", "WEIGHT", "AGE", "MESSAGE"]
    assert wide.splitlines()[1].split()[-2:] == ["progressing", "now"]


def test_get_all_namespaces_shows_the_namespace_column(
    kubectl: Kubectl, kube_emulator: KubeApiEmulator, namespace: str
) -> None:
    kube_emulator.put(_policy(namespace))

    out = _ok(kubectl("get", "canary", "-A"))

    assert out.splitlines()[0].split()[:2] == ["NAMESPACE", "NAME"]
    # No status yet: PHASE, STEP and WEIGHT are empty, as the real table convertor leaves a missing value.
    assert any(row.split()[:2] == [namespace, "tcp-echo"] and len(row.split()) == 3 for row in out.splitlines()[1:])


def test_get_watch_prints_each_change_as_a_row(
    kubectl: Kubectl, kube_emulator: KubeApiEmulator, namespace: str
) -> None:
    policy = _policy(namespace)
    kube_emulator.put(policy)
    with subprocess.Popen(
        kubectl.args("get", "cpol", "-n", namespace, "-w"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"HOME": str(kubectl.cache_dir)},
    ) as process:
        try:
            assert process.stdout is not None
            lines = [process.stdout.readline(), process.stdout.readline()]
            kube_emulator.put({**policy, "status": _status("Progressing", weight=50, step="3/4")})
            lines.append(process.stdout.readline())
        finally:
            process.kill()

    assert lines[0].split() == ["NAME", "PHASE", "STEP", "WEIGHT", "AGE"]
    assert lines[1].split()[0] == "tcp-echo"
    assert len(lines[1].split()) == 2
    assert lines[2].split()[:4] == ["tcp-echo", "Progressing", "3/4", "50"]


def test_wait_for_condition_ready_returns_once_the_status_says_so(
    kubectl: Kubectl, kube_emulator: KubeApiEmulator, namespace: str
) -> None:
    policy = _policy(namespace)
    kube_emulator.put({**policy, "status": _status("Pending", ready="False")})

    def become_ready() -> None:
        time.sleep(1.0)
        kube_emulator.put({**policy, "status": _status("Progressing", weight=0, step="1/4", ready="True")})

    writer = threading.Thread(target=become_ready)
    writer.start()
    try:
        result = kubectl("wait", "--for=condition=Ready", "cpol/tcp-echo", "-n", namespace, "--timeout=15s")
    finally:
        writer.join()

    assert _ok(result).strip() == "canarypolicy.canaryctl.dev/tcp-echo condition met"


def test_patch_json_with_a_failing_test_is_the_generic_422(
    kubectl: Kubectl, kube_emulator: KubeApiEmulator, namespace: str
) -> None:
    # handlers/patch.go applyJSPatch -> NewGenericServerResponse(422): kubectl prints the generic message
    # (field report: kubernetes-client/javascript#2095).
    kube_emulator.put(_policy(namespace))
    patch = json.dumps([{"op": "test", "path": "/spec/schedule/steps/1", "value": 30}])

    result = kubectl("patch", "cpol", "tcp-echo", "-n", namespace, "--type=json", "-p", patch)

    assert result.returncode == 1
    # kubectl 1.20 (cmd/util/helpers.go checkErr) prints only "The request is invalid" when details carry
    # no kind, name or causes; newer kubectl appends the server's message.
    assert result.stderr.strip() == "The request is invalid"


def test_replace_with_a_stale_resource_version_is_a_conflict(
    kubectl: Kubectl, kube_emulator: KubeApiEmulator, namespace: str, tmp_path: Any
) -> None:
    # registry/generic/registry/store.go Store.Update: NewConflict(..., OptimisticLockErrorMsg).
    stored = kube_emulator.put(_policy(namespace))
    stale = copy.deepcopy(stored)
    kube_emulator.put(
        {
            **_policy(namespace),
            "spec": {**stored["spec"], "schedule": {**stored["spec"]["schedule"], "steps": [0, 30, 100]}},
        }
    )
    path = tmp_path / "stale.yaml"
    path.write_text(yaml.safe_dump(stale), encoding="utf-8")

    result = kubectl("replace", "-f", str(path))

    assert result.returncode == 1
    assert result.stderr.strip() == (
        'Error from server (Conflict): error when replacing "' + str(path) + '": Operation cannot be fulfilled on '
        'canarypolicies.canaryctl.dev "tcp-echo": the object has been modified; please apply your changes to the '
        "latest version and try again"
    )


def test_label_selectors_filter_the_list(kubectl: Kubectl, kube_emulator: KubeApiEmulator, namespace: str) -> None:
    kube_emulator.put(_policy(namespace, "a", team="edge", tier="1"))
    kube_emulator.put(_policy(namespace, "b", team="core"))
    kube_emulator.put(_policy(namespace, "c"))

    def names(*selector: str) -> list[str]:
        return _ok(kubectl("get", "cpol", "-n", namespace, "-o", "name", *selector)).split()

    assert names("-l", "team=edge") == ["canarypolicy.canaryctl.dev/a"]
    assert names("-l", "team in (edge,core)") == ["canarypolicy.canaryctl.dev/a", "canarypolicy.canaryctl.dev/b"]
    assert names("-l", "!team") == ["canarypolicy.canaryctl.dev/c"]
    assert names("-l", "team,tier") == ["canarypolicy.canaryctl.dev/a"]


def test_chunk_size_pages_through_every_item(kubectl: Kubectl, kube_emulator: KubeApiEmulator, namespace: str) -> None:
    for index in range(5):
        kube_emulator.put(_policy(namespace, f"p{index}"))

    result = kubectl("get", "cpol", "-n", namespace, "-o", "name", "--chunk-size=2", "-v=6")

    assert _ok(result).split() == [f"canarypolicy.canaryctl.dev/p{i}" for i in range(5)]
    pages = [line for line in result.stderr.splitlines() if "limit=2" in line and "GET" in line]
    assert len(pages) == 3


def test_create_then_delete_a_policy(kubectl: Kubectl, kube_emulator: KubeApiEmulator, namespace: str) -> None:
    manifest = yaml.safe_dump(_policy(namespace, "made"))

    created = _ok(kubectl("create", "-f", "-", stdin=manifest))
    again = kubectl("create", "-f", "-", stdin=manifest)
    deleted = _ok(kubectl("delete", "cpol", "made", "-n", namespace))
    missing = kubectl("delete", "cpol", "made", "-n", namespace)

    assert created.strip() == "canarypolicy.canaryctl.dev/made created"
    assert again.returncode == 1
    assert 'canarypolicies.canaryctl.dev "made" already exists' in again.stderr
    assert deleted.strip() == 'canarypolicy.canaryctl.dev "made" deleted'
    assert kube_emulator.get("canarypolicies", "made", namespace=namespace) is None
    assert missing.stderr.strip() == 'Error from server (NotFound): canarypolicies.canaryctl.dev "made" not found'
