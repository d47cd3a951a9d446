"""The composed controller (settings -> adapters -> daemon) in CRD mode and with a separate mesh API server."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from canary_sandbox.kubeapi import KubeApiEmulator
from controller.runtime.composition import build_loop
from controller.runtime.loop import ReconcileLoop
from controller.settings import Settings
from tests.integration.test_reconcile import put_canary_deployment
from tests.sandbox.conftest import document
from tests.support.controller_process import StepFailingAnalysis
from tests.support.paths import REPO, SHARED_ISTIO

CRD = REPO / "helm" / "crds" / "canarypolicies.canaryctl.dev.yaml"
VS = "virtualservices.networking.istio.io"


def _policy(namespace: str, name: str = "tcp-echo", vs: str = "tcp-echo") -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((REPO / "policies" / "tcp-echo.yaml").read_text())
    doc["metadata"] = {"name": name, "namespace": namespace}
    doc["spec"]["target"]["virtualService"] = {"name": vs}
    doc["spec"]["schedule"]["stepDuration"] = "300ms"
    # The default Prometheus: a CanaryPolicy resource naming another URL is refused (docs/security.md).
    doc["spec"]["analysis"].pop("prometheus")
    return doc


def _until(check: Callable[[], bool], controller: ReconcileLoop, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        controller.tick()
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[KubeApiEmulator, Path]]:
    with KubeApiEmulator(crds=[CRD, SHARED_ISTIO / "virtualservice-crd.yaml"]) as emulator:
        emulator.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
        emulator.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "canary-system"}})
        # The shipped policy waits for its canary workload (spec.workload.canary) on the workload cluster.
        put_canary_deployment(emulator, "shop")
        kubeconfig = tmp_path / "main"
        emulator.write_kubeconfig(kubeconfig, context_name="main")
        yield emulator, kubeconfig


def test_crd_mode_drives_a_policy_resource_to_promoted_with_status_and_events(
    cluster: tuple[KubeApiEmulator, Path],
) -> None:
    emulator, kubeconfig = cluster
    emulator.put(copy.deepcopy(document("tcp-echo-all-v1.yaml", "VirtualService")), namespace="shop")
    emulator.create(_policy("shop"))
    settings = Settings(kubeconfig=str(kubeconfig), tick_seconds=0.05, watch_crds=True)
    controller = build_loop(settings, analysis=StepFailingAnalysis(-1))
    try:

        def promoted() -> bool:
            cr = emulator.get("canarypolicies.canaryctl.dev", "tcp-echo", namespace="shop")
            return bool(cr and (cr.get("status") or {}).get("phase") == "Promoted")

        _until(promoted, controller)
    finally:
        controller.shutdown(timeout=5)
    cr = emulator.get("canarypolicies.canaryctl.dev", "tcp-echo", namespace="shop")
    assert cr is not None
    status = cr["status"]
    assert status["step"] == "4/4"
    assert {c["type"]: c["status"] for c in status["conditions"]} == {"Ready": "True", "Succeeded": "True"}
    events = emulator.list("events", namespace="shop")
    assert {e["involvedObject"]["kind"] for e in events} == {"CanaryPolicy"}
    assert "Promoted" in {e["reason"] for e in events}
    vs = emulator.get(VS, "tcp-echo", namespace="shop")
    assert vs is not None
    assert [d["weight"] for d in vs["spec"]["tcp"][0]["route"]] == [0, 100]


def test_mesh_config_on_a_separate_api_server_is_written_there_and_nothing_else_is(
    cluster: tuple[KubeApiEmulator, Path], tmp_path: Path
) -> None:
    main, main_config = cluster
    with KubeApiEmulator(crds=[SHARED_ISTIO / "virtualservice-crd.yaml"]) as mesh:
        mesh.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
        mesh.put(copy.deepcopy(document("tcp-echo-all-v1.yaml", "VirtualService")), namespace="shop")
        mesh_config = tmp_path / "mesh"
        mesh.write_kubeconfig(mesh_config, context_name="asm")
        policies = tmp_path / "policies"
        policies.mkdir()
        (policies / "p.yaml").write_text(yaml.safe_dump(_policy("shop")))
        settings = Settings(
            kubeconfig=str(main_config),
            mesh_kubeconfig=str(mesh_config),
            policy_dir=policies,
            watch_crds=False,
            tick_seconds=0.05,
        )
        controller = build_loop(settings, analysis=StepFailingAnalysis(-1))
        try:

            def promoted() -> bool:
                cm = main.get("configmaps", "canary-shop-tcp-echo", namespace="canary-system")
                return bool(cm and '"phase":"Promoted"' in (cm.get("data") or {}).get("status", ""))

            _until(promoted, controller)
        finally:
            controller.shutdown(timeout=5)
        mesh_vs = mesh.get(VS, "tcp-echo", namespace="shop")
        assert mesh_vs is not None
        assert [d["weight"] for d in mesh_vs["spec"]["tcp"][0]["route"]] == [0, 100]
        assert main.get(VS, "tcp-echo", namespace="shop") is None
        assert mesh.list("configmaps", namespace="canary-system") == []
        assert mesh.list("events", namespace="shop") == []
        assert {e["involvedObject"]["kind"] for e in main.list("events", namespace="shop")} == {"VirtualService"}


def test_one_broken_target_does_not_hold_up_the_other_rollouts(cluster: tuple[KubeApiEmulator, Path]) -> None:
    emulator, kubeconfig = cluster
    healthy = copy.deepcopy(document("tcp-echo-all-v1.yaml", "VirtualService"))
    emulator.put(healthy, namespace="shop")
    broken = copy.deepcopy(healthy)
    broken["metadata"]["name"] = "broken"
    emulator.put(broken, namespace="shop")
    emulator.create(_policy("shop"))
    emulator.create(_policy("shop", name="broken", vs="broken"))
    emulator.faults.add(verb="GET", resource="virtualservices", name="broken", status=500)
    # Reading each target at every pass (no watch cache), so that every pass of "broken" fails its read.
    settings = Settings(
        kubeconfig=str(kubeconfig), tick_seconds=0.05, watch_crds=True, api_timeout_seconds=2, watch_cache=False
    )
    controller = build_loop(settings, analysis=StepFailingAnalysis(-1))
    try:

        def promoted() -> bool:
            cr = emulator.get("canarypolicies.canaryctl.dev", "tcp-echo", namespace="shop")
            return bool(cr and (cr.get("status") or {}).get("phase") == "Promoted")

        _until(promoted, controller)
    finally:
        controller.shutdown(timeout=5)
        emulator.faults.clear()
    broken_cr = emulator.get("canarypolicies.canaryctl.dev", "broken", namespace="shop")
    assert broken_cr is not None
    assert not (broken_cr.get("status") or {}).get("phase"), "no decision may be taken without reading the target"


def test_a_name_clash_between_a_file_and_a_resource_runs_neither(
    cluster: tuple[KubeApiEmulator, Path], tmp_path: Path
) -> None:
    emulator, kubeconfig = cluster
    emulator.put(copy.deepcopy(document("tcp-echo-all-v1.yaml", "VirtualService")), namespace="shop")
    emulator.create(_policy("shop"))
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "p.yaml").write_text(yaml.safe_dump(_policy("shop")))
    settings = Settings(kubeconfig=str(kubeconfig), policy_dir=policies, watch_crds=True, tick_seconds=0.05)
    controller = build_loop(settings, analysis=StepFailingAnalysis(-1))
    try:
        _until(
            lambda: any(e["reason"] == "InvalidPolicy" for e in emulator.list("events", namespace="shop")),
            controller,
            seconds=10,
        )
        for _ in range(5):
            controller.tick()
            time.sleep(0.05)
    finally:
        controller.shutdown(timeout=5)
    message = next(e["message"] for e in emulator.list("events", namespace="shop") if e["reason"] == "InvalidPolicy")
    assert "defined both as a resource and in" in message
    vs = emulator.get(VS, "tcp-echo", namespace="shop")
    assert vs is not None
    assert vs["spec"] == document("tcp-echo-all-v1.yaml", "VirtualService")["spec"]
