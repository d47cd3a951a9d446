"""GitOps health (issue 19 §4): Argo CD's Lua health check and kstatus's rules on the statuses the controller writes.

Each status is produced by the real reconcile pass (state machine, CRD status store, traffic router) against
the API emulator, for a CanaryPolicy resource, and read back as Argo CD and Flux read it: the whole object.
helm/argocd/health.lua runs in Lua 5.1 (lupa), the Lua of gopher-lua that Argo CD embeds, with ``obj`` set as
Argo CD sets it. kstatus's rules are those of sigs.k8s.io/cli-utils ``pkg/kstatus/status`` (generic
properties): a deletion timestamp is Terminating; ``status.observedGeneration`` different from
``metadata.generation`` is InProgress; a ``Reconciling`` condition True is InProgress; a ``Stalled``
condition True is Failed; otherwise a resource with these conditions is Current. Flux's convention adds a
``Ready`` condition True when the resource is Current.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import yaml
from kubernetes import client
from lupa import lua51

from canary_sandbox.kubeapi import KubeApiEmulator
from controller.adapters.kubernetes.api import KubeApi
from controller.adapters.kubernetes.events import KubernetesEventRecorder
from controller.adapters.kubernetes.status import CrdStatusStore, new_command
from controller.adapters.kubernetes.traffic import KubernetesTrafficRouter
from controller.adapters.kubernetes.workloads import KubernetesWorkloadReader
from controller.core.status import CommandKind, Phase, Verdict
from controller.ports import PolicyRef
from controller.service.reconcile import Dependencies, reconcile_once
from tests.integration.test_reconcile import StandInAnalysis, put_canary_deployment
from tests.rollout_sim import T0
from tests.sandbox.conftest import CRD_FILES, ISTIO_DATA, close_api_client, document
from tests.support.paths import REPO

HEALTH_LUA = REPO / "helm" / "argocd" / "health.lua"
GITOPS_DOC = REPO / "docs" / "gitops.md"
CANARYPOLICY_CRD = REPO / "helm" / "crds" / "canarypolicies.canaryctl.dev.yaml"
POLICY = REPO / "policies" / "tcp-echo.yaml"
VIRTUAL_SERVICES = "virtualservices.networking.istio.io"


@pytest.fixture(scope="module")
def emulator() -> Iterator[KubeApiEmulator]:
    with KubeApiEmulator(crds=[CANARYPOLICY_CRD, *(ISTIO_DATA / name for name in CRD_FILES)]) as api:
        yield api


@pytest.fixture(scope="module")
def kube(emulator: KubeApiEmulator) -> Iterator[KubeApi]:
    api_client = client.ApiClient(emulator.client_configuration())
    yield KubeApi(api_client, timeout_seconds=5.0)
    close_api_client(api_client)


class Rollout:
    """One CanaryPolicy resource in its own namespace, driven by reconcile_once as the daemon drives it."""

    def __init__(self, emulator: KubeApiEmulator, kube: KubeApi, name: str, *, deployment: bool = True) -> None:
        self.emulator = emulator
        self.namespace = f"gitops-{name}"
        emulator.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}})
        emulator.put(copy.deepcopy(document("tcp-echo-all-v1.yaml", "VirtualService")), namespace=self.namespace)
        if deployment:
            put_canary_deployment(emulator, self.namespace)
        policy: dict[str, Any] = yaml.safe_load(POLICY.read_text(encoding="utf-8"))
        policy["metadata"] = {"name": "tcp-echo", "namespace": self.namespace}
        policy["spec"]["schedule"]["stepDuration"] = "1m"
        policy["spec"].pop("analysis")
        emulator.put(policy)
        self.store = CrdStatusStore(kube)
        self.analysis = StandInAnalysis()
        self.deps = Dependencies(
            router=KubernetesTrafficRouter(kube),
            store=self.store,
            workloads=KubernetesWorkloadReader(kube),
            events=KubernetesEventRecorder(kube),
            analysis=self.analysis,
        )
        self.now = T0

    def object(self) -> dict[str, Any]:
        """The CanaryPolicy as Argo CD and Flux read it from the API server."""
        found = self.emulator.get("canarypolicies", "tcp-echo", namespace=self.namespace)
        assert found is not None
        return found

    def ref(self) -> PolicyRef:
        return PolicyRef(self.namespace, "tcp-echo", source="crd", generation=self.object()["metadata"]["generation"])

    def tick(self, seconds: float = 0) -> str:
        """One pass ``seconds`` later; the phase it wrote."""
        from controller.core.policy import CanaryPolicy  # noqa: PLC0415

        self.now += timedelta(seconds=seconds)
        obj = self.object()
        meta = {"name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"]}
        policy = CanaryPolicy.model_validate({**{k: obj[k] for k in ("apiVersion", "kind", "spec")}, "metadata": meta})
        reconcile_once(policy=policy, ref=self.ref(), deps=self.deps, now=self.now)
        return str(self.object()["status"]["phase"])

    def until(self, phase: Phase, *, seconds: float = 20, passes: int = 40) -> dict[str, Any]:
        """Pass until the stored phase is ``phase``; the object then."""
        for _ in range(passes):
            if self.tick(seconds) == phase:
                return self.object()
        raise AssertionError(f"{self.namespace}: never reached {phase}; last {self.object()['status']['phase']}")

    def command(self, kind: CommandKind) -> None:
        self.store.add_command(policy=self.ref(), command=new_command(kind, by="alice"))


def _pending(r: Rollout) -> dict[str, Any]:
    return r.until(Phase.PENDING, seconds=0)


def _progressing(r: Rollout) -> dict[str, Any]:
    return r.until(Phase.PROGRESSING, seconds=0)


def _paused(r: Rollout) -> dict[str, Any]:
    r.until(Phase.PROGRESSING, seconds=0)
    r.command(CommandKind.PAUSE)
    return r.until(Phase.PAUSED, seconds=1)


def _promoted(r: Rollout) -> dict[str, Any]:
    return r.until(Phase.PROMOTED)


def _rolling_back(r: Rollout) -> dict[str, Any]:
    # The decision to roll back is persisted before the route is written back: a route write refused by the
    # API server leaves the resource RollingBack, as a controller stopped between the two would.
    r.until(Phase.PROGRESSING, seconds=0)
    r.tick(20)
    r.analysis.answer = Verdict.FAIL
    r.emulator.faults.add(verb="PATCH", resource=VIRTUAL_SERVICES, namespace=r.namespace, status=500)
    try:
        return r.until(Phase.ROLLING_BACK, seconds=5, passes=5)
    finally:
        r.emulator.faults.clear()


def _rolled_back(r: Rollout) -> dict[str, Any]:
    r.until(Phase.PROGRESSING, seconds=0)
    r.tick(20)
    r.analysis.answer = Verdict.FAIL
    return r.until(Phase.ROLLED_BACK, seconds=5)


def _aborted(r: Rollout) -> dict[str, Any]:
    r.until(Phase.PROGRESSING, seconds=0)
    r.command(CommandKind.ABORT)
    return r.until(Phase.ABORTED, seconds=1)


def _failed(r: Rollout) -> dict[str, Any]:
    r.until(Phase.PROGRESSING, seconds=0)
    r.emulator.delete(VIRTUAL_SERVICES, "tcp-echo", namespace=r.namespace)
    return r.until(Phase.FAILED, seconds=5)


def _spec_changed_after_promotion(r: Rollout) -> dict[str, Any]:
    r.until(Phase.PROMOTED)
    obj = r.object()
    obj["spec"]["schedule"]["stepDuration"] = "2m"  # tuning: a new generation the controller has not seen yet
    r.emulator.put(obj)
    changed = r.object()
    assert changed["metadata"]["generation"] == changed["status"]["observedGeneration"] + 1
    return changed


# name -> (how to get there, whether a Deployment tcp-echo-v2 exists, Argo CD health, kstatus status)
SCENARIOS: dict[str, tuple[Callable[[Rollout], dict[str, Any]], bool, str, str]] = {
    "pending": (_pending, False, "Progressing", "InProgress"),
    "progressing": (_progressing, True, "Progressing", "InProgress"),
    "paused": (_paused, True, "Suspended", "Current"),
    "promoted": (_promoted, True, "Healthy", "Current"),
    "rolling-back": (_rolling_back, True, "Progressing", "InProgress"),
    "rolled-back": (_rolled_back, True, "Degraded", "Failed"),
    "aborted": (_aborted, True, "Degraded", "Failed"),
    "failed": (_failed, True, "Degraded", "Failed"),
    "generation-ahead": (_spec_changed_after_promotion, True, "Progressing", "InProgress"),
}


@pytest.fixture(scope="module")
def statuses(emulator: KubeApiEmulator, kube: KubeApi) -> dict[str, dict[str, Any]]:
    """Every scenario's CanaryPolicy object, as the controller left it."""
    return {
        name: how(Rollout(emulator, kube, name, deployment=deployment))
        for name, (how, deployment, _, _) in SCENARIOS.items()
    }


def argo_health(obj: dict[str, Any]) -> dict[str, str]:
    """Run helm/argocd/health.lua as Argo CD does: ``obj`` a global, the returned table the health."""
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)

    def to_lua(value: Any) -> Any:
        if isinstance(value, dict):
            return lua.table_from({k: to_lua(v) for k, v in value.items()})
        if isinstance(value, list):
            return lua.table_from([to_lua(v) for v in value])
        return value

    lua.globals().obj = to_lua(obj)
    result = lua.execute(HEALTH_LUA.read_text(encoding="utf-8"))
    return {str(k): str(v) for k, v in result.items()}


def kstatus(obj: dict[str, Any]) -> str:
    """kstatus's status of a custom resource, by its generic rules (cli-utils pkg/kstatus/status)."""
    if obj["metadata"].get("deletionTimestamp"):
        return "Terminating"
    status = obj.get("status") or {}
    generation = obj["metadata"].get("generation")
    observed = status.get("observedGeneration", generation)
    if observed != generation:
        return "InProgress"
    for condition in status.get("conditions") or []:
        if condition["type"] == "Reconciling" and condition["status"] == "True":
            return "InProgress"
        if condition["type"] == "Stalled" and condition["status"] == "True":
            return "Failed"
    return "Current"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_argo_cd_health_of_each_phase_the_controller_writes(scenario: str, statuses: dict[str, dict[str, Any]]) -> None:
    obj = statuses[scenario]

    health = argo_health(obj)

    assert health["status"] == SCENARIOS[scenario][2], health
    if scenario == "generation-ahead":
        generation = obj["metadata"]["generation"]
        assert health["message"] == (
            f"Waiting for canary-controller to act on generation {generation} (it last acted on {generation - 1})"
        )
    else:
        status = obj["status"]
        assert health["message"].startswith(f"{status['phase']} (step {status['step']}")
        assert status["message"] in health["message"]


def test_argo_cd_health_of_a_resource_without_status_yet_is_progressing() -> None:
    obj: dict[str, Any] = yaml.safe_load(POLICY.read_text(encoding="utf-8"))
    obj["metadata"]["generation"] = 1

    assert argo_health(obj) == {
        "status": "Progressing",
        "message": "Waiting for canary-controller to report the rollout",
    }


def test_argo_cd_health_of_a_policy_the_controller_refused_is_degraded(statuses: dict[str, dict[str, Any]]) -> None:
    obj = copy.deepcopy(statuses["progressing"])
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    ready.update(status="False", reason="PolicyRefused", message="spec.target: namespace shop is not allowed")

    assert argo_health(obj) == {
        "status": "Degraded",
        "message": "Not in control (PolicyRefused): spec.target: namespace shop is not allowed",
    }


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_kstatus_reads_each_phase_as_flux_should_wait_on_it(scenario: str, statuses: dict[str, dict[str, Any]]) -> None:
    obj = statuses[scenario]

    assert kstatus(obj) == SCENARIOS[scenario][3]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_statuses_keep_the_kstatus_and_flux_conventions(scenario: str, statuses: dict[str, dict[str, Any]]) -> None:
    obj = statuses[scenario]
    status = obj["status"]
    conditions = {c["type"]: c for c in status["conditions"]}

    assert isinstance(status["observedGeneration"], int)
    if scenario != "generation-ahead":
        assert status["observedGeneration"] == obj["metadata"]["generation"]
    # Ready is True when kstatus finds the resource Current; Reconciling and Stalled are abnormal-true
    # conditions, present only when True, never both.
    if kstatus(obj) == "Current":
        assert conditions["Ready"]["status"] == "True"
    for kind in ("Reconciling", "Stalled"):
        if kind in conditions:
            assert conditions[kind]["status"] == "True"
            assert conditions[kind]["reason"] == status["phase"]
    assert not {"Reconciling", "Stalled"} <= set(conditions)
    for condition in conditions.values():
        assert set(condition) >= {"type", "status", "reason", "lastTransitionTime"}


def test_the_docs_ship_the_health_check_exactly_as_tested() -> None:
    text = GITOPS_DOC.read_text(encoding="utf-8")
    lua = HEALTH_LUA.read_text(encoding="utf-8")

    values = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    customizations = yaml.safe_load(values)["configs"]["cm"]
    assert customizations["resource.customizations.health.canaryctl.dev_CanaryPolicy"] == lua
