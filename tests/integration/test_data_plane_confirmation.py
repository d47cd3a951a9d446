"""Data-plane confirmation end to end: the sandbox's istiod status writer, the emulator, the real adapters.

Both paths of issue 14, item 4: a VirtualService's Reconciled condition, and a TCPRoute's parent status.
The step's clock starts only once the status reports the written generation.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

from canary_sandbox.istiod_status import IstiodStatusWriter
from canary_sandbox.kubeapi import KubeApiEmulator
from controller.adapters.kubernetes.api import KubeApi
from controller.core.policy import CanaryPolicy
from controller.core.status import Phase
from tests.integration.conftest import stored
from tests.integration.test_reconcile import World, put_canary_deployment
from tests.sandbox.conftest import document
from tests.test_rollout import seed_policy


class Gate:
    """The test decides when the data plane 'has' a generation."""

    def __init__(self) -> None:
        self.open = threading.Event()

    def __call__(self, obj: dict[str, Any]) -> bool:
        del obj
        return self.open.is_set()


def test_a_step_starts_only_when_istiod_reports_the_virtualservice_reconciled(
    emulator: KubeApiEmulator, kube: KubeApi, namespace: str
) -> None:
    put_canary_deployment(emulator, namespace)
    world = World(emulator, kube, namespace, seed_policy(stepDuration="1m"))
    gate = Gate()
    istiod = IstiodStatusWriter(emulator, confirm=gate, interval=3600)  # driven by sync() below, no thread
    try:
        world.tick(1)  # writes weight 0
        istiod.sync()
        live = world.live()
        assert live["status"]["conditions"][0]["type"] == "Reconciled"
        assert live["status"]["conditions"][0]["status"] == "False"
        assert live["status"]["observedGeneration"] == live["metadata"]["generation"]
        for _ in range(3):
            world.tick(20)
            status = world.status()
            assert status.step_started_at is None
            assert "waiting for the data plane: istiod is distributing generation" in status.message
            assert "0/1 complete" in status.message
        gate.open.set()
        istiod.sync()
        world.tick(1)
        status = world.status()
        assert status.step_started_at == world.now
        assert status.data_plane == f"istiod reports generation {world.live()['metadata']['generation']} reconciled"
    finally:
        istiod.stop()


def test_a_tcproute_step_starts_when_its_gateway_accepts_the_generation(
    emulator: KubeApiEmulator, kube: KubeApi, namespace: str
) -> None:
    put_canary_deployment(emulator, namespace)
    route = copy.deepcopy(document("gateway-api-tcp-echo-all-v1.yaml", "TCPRoute"))
    emulator.put(route, namespace=namespace)
    doc = seed_policy(stepDuration="1m").model_dump(mode="json", by_alias=True, exclude_none=True)
    doc["spec"]["target"] = {
        "tcpRoute": {"name": "tcp-echo"},
        "stable": {"host": "tcp-echo-v1", "port": 9000},
        "canary": {"host": "tcp-echo-v2", "port": 9000},
    }
    world = World(emulator, kube, namespace, CanaryPolicy.model_validate(doc))
    gate = Gate()
    gate.open.set()
    istiod = IstiodStatusWriter(emulator, confirm=gate, interval=3600)
    try:
        istiod.sync()  # the Gateway accepted the route as created (generation 1)
        gate.open.clear()
        world.tick(1)  # writes weight 0: generation 2, parents still report 1
        world.tick(20)
        assert world.status().step_started_at is None
        assert "has not reported Accepted for generation 2" in world.status().message
        gate.open.set()
        istiod.sync()
        world.tick(1)
        status = world.status()
        assert status.phase == Phase.PROGRESSING
        assert status.step_started_at == world.now
        live = stored(emulator, "tcproutes.gateway.networking.k8s.io", "tcp-echo", namespace)
        assert status.data_plane == f"generation {live['metadata']['generation']} accepted by tcp-echo-gateway"
    finally:
        istiod.stop()
