"""Issue 18: passes read from watch caches, and watch events (not ticks) bring a rollout's next pass.

The daemon's loop runs as in production (``run_forever``: APScheduler, workers), with a tick of a minute and
no periodic resync, so anything that happens within seconds was brought by a watch event or a timer.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from canary_sandbox.kubeapi import KubeApiEmulator
from controller.adapters.kubernetes.api import KubeApi, load_api_client
from controller.adapters.kubernetes.informer import newer, strip
from controller.adapters.kubernetes.status import CrdStatusStore, new_command
from controller.core.status import CommandKind
from controller.ports import PolicyRef
from controller.runtime.composition import build_loop
from controller.runtime.loop import ReconcileLoop
from controller.settings import Settings
from tests.integration import test_controller_modes as modes
from tests.integration.test_controller_modes import VS
from tests.sandbox.conftest import close_api_client, document
from tests.support.controller_process import StepFailingAnalysis

POLICIES = "canarypolicies.canaryctl.dev"


# The emulator with the CRDs, the namespaces and an Available canary Deployment.
cluster = modes.cluster


@pytest.fixture
def rollout(cluster: tuple[KubeApiEmulator, Path]) -> tuple[KubeApiEmulator, Path]:
    """Plus Istio's tcp-echo VirtualService and a CanaryPolicy whose steps last an hour."""
    emulator, _ = cluster
    emulator.put(copy.deepcopy(document("tcp-echo-all-v1.yaml", "VirtualService")), namespace="shop")
    policy = modes._policy("shop")
    policy["spec"]["schedule"]["stepDuration"] = "1h"  # stays at its first step
    # No alert routes: a drift alerts, and a delivery retrying towards nothing would outlive the test.
    policy["spec"].pop("alerts", None)
    emulator.create(policy)
    return cluster


def _status(emulator: KubeApiEmulator) -> dict[str, Any]:
    return dict((emulator.get(POLICIES, "tcp-echo", namespace="shop") or {}).get("status") or {})


def _wait(check: Callable[[], bool], seconds: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if check():
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"{what}: not within {seconds} s")


def _passes(loop: ReconcileLoop) -> float:
    assert loop.metrics is not None
    return float(loop.metrics.registry.get_sample_value("canary_tick_duration_seconds_count") or 0.0)


@pytest.fixture
def running(rollout: tuple[KubeApiEmulator, Path]) -> Iterator[tuple[KubeApiEmulator, ReconcileLoop, Path]]:
    emulator, kubeconfig = rollout
    settings = Settings(
        kubeconfig=str(kubeconfig), tick_seconds=60, resync_seconds=0, watch_crds=True, api_timeout_seconds=2
    )
    loop = build_loop(settings, analysis=StepFailingAnalysis(-1))
    thread = threading.Thread(target=loop.run_forever, name="loop-under-test")
    thread.start()
    try:
        _wait(lambda: _status(emulator).get("phase") == "Progressing", 15, "the first step")
        yield emulator, loop, kubeconfig
    finally:
        loop.stop()
        thread.join(15)


def test_passes_in_steady_state_read_nothing_from_the_api(running: tuple[KubeApiEmulator, ReconcileLoop, Path]) -> None:
    emulator, loop, _ = running
    reads = [
        emulator.faults.add(verb=verb, resource=resource, delay_seconds=0.001)
        for verb in ("GET", "LIST")
        for resource in ("virtualservices", "canarypolicies", "deployments", "configmaps")
    ]
    before = _passes(loop)
    for _ in range(5):
        loop.resync()
        time.sleep(0.2)
    _wait(lambda: _passes(loop) >= before + 5, 10, "five resync passes")
    assert sum(rule.hits for rule in reads) == 0, [(rule.verb, rule.resource, rule.hits) for rule in reads]


def test_a_human_edit_of_the_route_is_acted_on_by_its_watch_event_not_a_tick(
    running: tuple[KubeApiEmulator, ReconcileLoop, Path],
) -> None:
    emulator, _, _ = running
    edited = copy.deepcopy(emulator.get(VS, "tcp-echo", namespace="shop"))
    assert edited is not None
    route = edited["spec"]["tcp"][0]["route"]
    assert route[0]["destination"]["subset"] == "v1"
    edited["spec"]["tcp"][0]["route"] = [
        {**route[0], "weight": 50},
        {"destination": {"host": "tcp-echo", "subset": "v2", "port": {"number": 9000}}, "weight": 50},
    ]
    emulator.put(edited, namespace="shop")
    _wait(lambda: _status(emulator).get("pausedReason") == "drift", 10, "the drift pause (the tick is 60 s)")
    assert _status(emulator).get("phase") == "Paused"


def test_a_pause_command_is_acted_on_by_its_watch_event_and_a_paused_rollout_costs_nothing(
    running: tuple[KubeApiEmulator, ReconcileLoop, Path],
) -> None:
    emulator, loop, kubeconfig = running
    api = KubeApi(load_api_client(kubeconfig=str(kubeconfig)), timeout_seconds=2)
    try:
        CrdStatusStore(api).add_command(
            policy=PolicyRef("shop", "tcp-echo", "crd"), command=new_command(CommandKind.PAUSE, by="test")
        )
    finally:
        close_api_client(api.api_client)
    _wait(lambda: _status(emulator).get("phase") == "Paused", 10, "the pause (the tick is 60 s)")
    time.sleep(0.5)  # the pass that paused has written its status, and its own watch event has come back
    settled = _passes(loop)
    time.sleep(2.0)
    # Its own status write woke nothing, and a paused rollout has no timer: no pass at all.
    assert _passes(loop) == settled


def test_an_event_older_than_a_written_through_object_never_replaces_it() -> None:
    written = {"metadata": {"name": "a", "resourceVersion": "12"}}
    assert not newer(written, {"metadata": {"name": "a", "resourceVersion": "11"}})
    assert not newer(written, {"metadata": {"name": "a", "resourceVersion": "12"}})
    assert newer(written, {"metadata": {"name": "a", "resourceVersion": "13"}})
    assert newer(None, written)
    # Versions that are not integers carry no order: any other one is a change.
    assert newer({"metadata": {"resourceVersion": "b"}}, {"metadata": {"resourceVersion": "a"}})


def test_cached_objects_drop_managed_fields_and_the_last_applied_annotation_only() -> None:
    obj: dict[str, Any] = {
        "metadata": {
            "name": "a",
            "managedFields": [{"manager": "kubectl"}],
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}", "team": "shop"},
        },
        "spec": {"x": 1},
    }
    kept = strip(obj)
    assert kept == {"metadata": {"name": "a", "annotations": {"team": "shop"}}, "spec": {"x": 1}}
    assert "managedFields" in obj["metadata"], "the original is left alone"
    plain = {"metadata": {"name": "b"}}
    assert strip(plain) is plain
