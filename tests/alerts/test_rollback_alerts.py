"""A rollback through the composed controller reaches a real Alertmanager, once, without slowing the rollback."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from canary_sandbox.kubeapi import KubeApiEmulator
from controller.core.status import RolloutStatus
from controller.runtime.composition import build_loop
from controller.runtime.loop import ReconcileLoop
from controller.settings import Settings
from tests.alerts.conftest import AlertmanagerServer
from tests.integration.test_reconcile import put_canary_deployment
from tests.sandbox.conftest import document
from tests.support.controller_process import StepFailingAnalysis
from tests.support.paths import REPO, SHARED_ISTIO

POLICY = "rollback-e2e"  # a name no other test's alerts carry in the session's Alertmanager
CHECK = {
    "name": "connect-errors",
    "verdict": "fail",
    "reason": "canary 9 errors in 30 connections (30.0000%) is worse than stable 0/120",
    "canaryValue": 0.3,
    "stableValue": 0.0,
    "canaryConnections": 30,
    "threshold": "binomial test at 99%",
    "queries": ['sum(istio_tcp_connections_opened_total{destination_workload="tcp-echo-v2"})'],
}


def _run(controller: ReconcileLoop, done: Callable[[], bool], seconds: float = 20) -> float:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        controller.tick()
        if done():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError("not reached in time")


def _world(tmp_path: Path, alertmanager_url: str) -> tuple[KubeApiEmulator, Settings]:
    emulator = KubeApiEmulator(crds=[SHARED_ISTIO / "virtualservice-crd.yaml"])
    emulator.start()
    for namespace in ("shop", "canary-system"):
        emulator.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    emulator.put(copy.deepcopy(document("tcp-echo-all-v1.yaml", "VirtualService")), namespace="shop")
    put_canary_deployment(emulator, "shop")  # the shipped policy waits for its canary Deployment
    doc: dict[str, Any] = yaml.safe_load((REPO / "policies" / "tcp-echo.yaml").read_text())
    doc["metadata"] = {"name": POLICY, "namespace": "shop"}
    doc["spec"]["schedule"]["stepDuration"] = "200ms"
    doc["spec"]["alerts"] = [{"name": "oncall", "alertmanager": {"url": alertmanager_url}}]
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "p.yaml").write_text(yaml.safe_dump(doc))
    kubeconfig = tmp_path / "kubeconfig"
    emulator.write_kubeconfig(kubeconfig, context_name="e")
    settings = Settings(kubeconfig=str(kubeconfig), policy_dir=policies, watch_crds=False, tick_seconds=0.05)
    return emulator, settings


def _status(emulator: KubeApiEmulator) -> RolloutStatus | None:
    cm = emulator.get("configmaps", f"canary-shop-{POLICY}", namespace="canary-system")
    if cm is None or not (cm.get("data") or {}).get("status"):
        return None
    return RolloutStatus.model_validate_json(cm["data"]["status"])


def test_a_rollback_alert_reaches_alertmanager_once_with_the_failing_measurement(
    tmp_path: Path, alertmanager: AlertmanagerServer
) -> None:
    emulator, settings = _world(tmp_path, alertmanager.url)
    controller = build_loop(settings, analysis=StepFailingAnalysis(1, [CHECK]))
    try:
        _run(controller, lambda: (s := _status(emulator)) is not None and s.phase == "RolledBack")

        def logged() -> bool:
            status = _status(emulator)
            return status is not None and not status.pending_alerts and bool(status.alert_log)

        _run(controller, logged)
        for _ in range(5):  # later passes must not send it again
            controller.tick()
            time.sleep(0.05)
    finally:
        controller.shutdown(timeout=5)
        emulator.stop()
    alerts = alertmanager.alerts('alertname="CanaryRolledBack"', f'policy="{POLICY}"')
    assert len(alerts) == 1
    labels, annotations = alerts[0]["labels"], alerts[0]["annotations"]
    assert (labels["policy"], labels["namespace"], labels["severity"]) == (POLICY, "shop", "critical")
    assert "worse than stable 0/120" in annotations["description"]
    assert annotations["check_1_value"] == "0.3"
    status = _status(emulator)
    assert status is not None
    assert [(r.sink, r.result, r.attempts) for r in status.alert_log] == [("oncall/alertmanager", "sent", 1)]


def test_a_dead_sink_neither_delays_the_rollback_nor_loses_the_outcome(tmp_path: Path, refused_url: str) -> None:
    emulator, settings = _world(tmp_path, refused_url)
    controller = build_loop(settings, analysis=StepFailingAnalysis(1, [CHECK]))
    try:
        _run(controller, lambda: (s := _status(emulator)) is not None and s.phase == "RolledBack")
        restored = emulator.get("virtualservices.networking.istio.io", "tcp-echo", namespace="shop")
        assert restored is not None
        assert restored["spec"] == document("tcp-echo-all-v1.yaml", "VirtualService")["spec"]

        def given_up() -> bool:
            status = _status(emulator)
            return status is not None and any(r.result == "failed" for r in status.alert_log)

        _run(controller, given_up, seconds=60)
    finally:
        controller.shutdown(timeout=5)
        emulator.stop()
    status = _status(emulator)
    assert status is not None
    record = status.alert_log[0]
    assert record.attempts >= 2
    assert record.error is not None
