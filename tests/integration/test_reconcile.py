"""reconcile_once through the real Kubernetes adapters, against the emulator."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any

import pytest

from canary_sandbox.kubeapi import FaultInjector, KubeApiEmulator
from controller.adapters.kubernetes.api import KubeApi
from controller.adapters.kubernetes.events import KubernetesEventRecorder
from controller.adapters.kubernetes.status import ConfigMapStatusStore, new_command
from controller.adapters.kubernetes.traffic import KubernetesTrafficRouter
from controller.adapters.kubernetes.workloads import KubernetesWorkloadReader
from controller.core.policy import CanaryPolicy
from controller.core.status import AnalysisResult, CommandKind, Phase, RolloutStatus, Verdict
from controller.ports import PolicyRef
from controller.service.reconcile import Dependencies, reconcile_once
from tests.integration.conftest import stored
from tests.rollout_sim import T0
from tests.sandbox.conftest import document, documents
from tests.test_rollout import seed_policy


class StandInAnalysis:
    """Test-only analysis: returns whatever verdict the test sets, for the current step."""

    def __init__(self) -> None:
        self.answer = Verdict.PASS

    def verdict_for(self, status: RolloutStatus) -> AnalysisResult | None:
        if status.run_id is None:
            return None
        return AnalysisResult(run_id=status.run_id, step_index=status.step_index, verdict=self.answer, reason="test")

    def verdict(self, *, policy: CanaryPolicy, status: RolloutStatus, now: datetime) -> AnalysisResult | None:
        del policy, now
        return self.verdict_for(status)


def put_canary_deployment(emulator: KubeApiEmulator, namespace: str, *, image: str | None = None) -> None:
    """Deployment tcp-echo-v2 from Istio's sample, Available with its generation observed (as the Deployment
    controller reports it once a rollout of the pod template is complete)."""
    deployment = next(
        copy.deepcopy(d)
        for d in documents("tcp-echo-services.yaml", "Deployment")
        if d["metadata"]["name"] == "tcp-echo-v2"
    )
    if image is not None:
        deployment["spec"]["template"]["spec"]["containers"][0]["image"] = image
    stored = emulator.put(deployment, namespace=namespace)
    generation = stored["metadata"]["generation"]
    replicas = deployment["spec"].get("replicas", 1)
    stored["status"] = {
        "observedGeneration": generation,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "availableReplicas": replicas,
        "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}],
    }
    emulator.put(stored, namespace=namespace)


class World:
    def __init__(self, emulator: KubeApiEmulator, kube: KubeApi, namespace: str, policy: CanaryPolicy) -> None:
        self.emulator = emulator
        self.namespace = namespace
        self.policy = CanaryPolicy.model_validate(
            {**policy.model_dump(mode="json"), "metadata": {"name": policy.metadata.name, "namespace": namespace}}
        )
        self.ref = PolicyRef(namespace=namespace, name=self.policy.metadata.name, source="file")
        self.analysis = StandInAnalysis()
        self.store = ConfigMapStatusStore(kube, namespace=namespace)
        self.deps = Dependencies(
            router=KubernetesTrafficRouter(kube),
            store=self.store,
            workloads=KubernetesWorkloadReader(kube),
            events=KubernetesEventRecorder(kube),
            analysis=self.analysis,
        )
        self.now = T0
        self.original = copy.deepcopy(document("tcp-echo-all-v1.yaml", "VirtualService"))
        emulator.put(copy.deepcopy(self.original), namespace=namespace)

    def tick(self, seconds: float = 0) -> Any:
        self.now += timedelta(seconds=seconds)
        return reconcile_once(policy=self.policy, ref=self.ref, deps=self.deps, now=self.now)

    def live(self) -> dict[str, Any]:
        return stored(self.emulator, "virtualservices.networking.istio.io", "tcp-echo", self.namespace)

    def status(self) -> RolloutStatus:
        return self.store.load(policy=self.ref).status

    def canary_weights_written(self) -> list[int]:
        weights = []
        for record in self.emulator.history(resource="virtualservices", namespace=self.namespace, verb="PATCH"):
            route = record.object["spec"]["tcp"][0]["route"]
            weights.append(next((d.get("weight", 0) for d in route if d["destination"].get("subset") == "v2"), 0))
        return weights


@pytest.fixture
def world(emulator: KubeApiEmulator, kube: KubeApi, namespace: str) -> World:
    put_canary_deployment(emulator, namespace)
    return World(emulator, kube, namespace, seed_policy(stepDuration="1m"))


def test_a_rollout_walks_every_step_on_the_api_and_is_promoted(world: World) -> None:
    for _ in range(40):
        world.tick(20)
        if world.status().phase == Phase.PROMOTED:
            break
    status = world.status()
    assert status.phase == Phase.PROMOTED
    assert world.canary_weights_written() == [0, 20, 50, 100]
    assert [c.status for c in status.conditions] == ["True", "True"]
    reasons = [e["reason"] for e in world.emulator.list("events", namespace=world.namespace)]
    assert reasons.count("StepAdvanced") == 3
    assert "Promoted" in reasons


def test_a_failed_analysis_restores_the_exact_original_object(world: World) -> None:
    world.tick()
    world.tick(1)
    world.tick(61)
    assert world.canary_weights_written() == [0, 20]
    world.analysis.answer = Verdict.FAIL
    world.tick(1)
    world.tick(1)
    assert world.status().phase == Phase.ROLLED_BACK
    live = world.live()
    assert live["spec"] == world.original["spec"]
    reasons = [e["reason"] for e in world.emulator.list("events", namespace=world.namespace)]
    assert "AnalysisFailed" in reasons
    assert "RolledBack" in reasons


def test_a_conflicting_write_is_decided_again_not_forced(world: World, faults: FaultInjector) -> None:
    world.tick()
    world.tick(1)
    faults.add(verb="PATCH", resource="virtualservices", status=409, times=1)
    result = world.tick(61)
    assert result.errors
    assert "conflict" in result.errors[0]
    assert world.status().write_pending
    world.tick(1)
    world.tick(1)
    assert world.canary_weights_written() == [0, 20]
    assert world.status().counters.writes_repeated == 1
    assert world.status().phase == Phase.PROGRESSING


def test_a_manual_edit_pauses_the_rollout_and_is_left_alone(world: World) -> None:
    world.tick()
    world.tick(1)
    live = world.live()
    live["spec"]["tcp"][0]["route"][0]["weight"] = 60
    live["spec"]["tcp"][0]["route"][1]["weight"] = 40
    world.emulator.put(live, namespace=world.namespace)
    world.tick(1)
    status = world.status()
    assert status.phase == Phase.PAUSED
    assert status.paused_reason == "drift"
    for _ in range(3):
        world.tick(120)
    assert world.live()["spec"]["tcp"][0]["route"][1]["weight"] == 40
    assert "DriftDetected" in [e["reason"] for e in world.emulator.list("events", namespace=world.namespace)]


def test_commands_survive_in_the_configmap_until_consumed(world: World) -> None:
    world.tick()
    world.tick(1)
    world.store.add_command(policy=world.ref, command=new_command(CommandKind.PAUSE, by="alice"))
    world.tick(1)
    assert world.status().phase == Phase.PAUSED
    world.store.add_command(policy=world.ref, command=new_command(CommandKind.ABORT, by="alice"))
    world.tick(1)
    world.tick(1)
    assert world.status().phase == Phase.ABORTED
    assert world.live()["spec"] == world.original["spec"]


def test_the_target_deleted_mid_rollout_fails_the_rollout_with_a_reason(world: World) -> None:
    world.tick()
    world.tick(1)
    world.emulator.delete("virtualservices.networking.istio.io", "tcp-echo", namespace=world.namespace)
    world.tick(1)
    status = world.status()
    assert status.phase == Phase.FAILED
    assert status.last_error is not None
    assert "not found" in status.last_error
    assert [c.status for c in status.conditions if c.type == "Ready"] == ["False"]


def test_a_status_write_conflict_applies_nothing(world: World, faults: FaultInjector) -> None:
    faults.add(verb="POST", resource="configmaps", status=409, times=1)
    result = world.tick()
    assert not result.persisted
    assert world.canary_weights_written() == []
    world.tick(1)
    assert world.canary_weights_written() == [0]
