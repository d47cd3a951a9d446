"""Data-plane confirmation (issue 14, item 4): a step's clock starts once the platform says the weight is live.

Status bodies follow what istiod and Gateway API implementations write: Istio's "Configuration Status Field"
page shows ``Reconciled`` False with reason ``stillPropagating`` and message ``61/122 complete`` while proxies
receive a change; IstioStatus.observedGeneration is an int64 (int-or-string in the CRD,
``virtualservice-crd.yaml`` in the shared data); Gateway API's RouteParentStatus carries ``Accepted`` and
``ResolvedRefs`` conditions, each with its own ``observedGeneration``.
"""

from __future__ import annotations

import copy
from typing import Any

from controller.core.dataplane import DataPlane, data_plane_report
from controller.core.effects import RecordEvent
from controller.core.status import Phase
from tests.rollout_sim import Sim
from tests.test_rollout import seed_policy, seed_target


def vs(generation: int, status: dict[str, Any] | None = None) -> dict[str, Any]:
    obj = copy.deepcopy(seed_target())
    obj["metadata"]["generation"] = generation
    if status is not None:
        obj["status"] = status
    return obj


def reconciled(status: str, observed: int | str, message: str = "122/122 complete") -> dict[str, Any]:
    return {
        "conditions": [
            {
                "type": "Reconciled",
                "status": status,
                "reason": "stillPropagating" if status != "True" else "",
                "message": message,
                "lastTransitionTime": "2019-12-26T22:06:34Z",
            }
        ],
        "observedGeneration": observed,
    }


def tcproute(generation: int, parents: list[dict[str, Any]] | None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "gateway.networking.k8s.io/v1alpha2",
        "kind": "TCPRoute",
        "metadata": {"name": "tcp-echo", "generation": generation},
        "spec": {},
    }
    if parents is not None:
        obj["status"] = {"parents": parents}
    return obj


def parent(accepted: str, resolved: str, observed: int, reason: str = "Accepted") -> dict[str, Any]:
    return {
        "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "tcp-echo-gateway"},
        "controllerName": "istio.io/gateway-controller",
        "conditions": [
            {"type": "Accepted", "status": accepted, "reason": reason, "message": "", "observedGeneration": observed},
            {"type": "ResolvedRefs", "status": resolved, "reason": "ResolvedRefs", "observedGeneration": observed},
        ],
    }


def test_a_virtualservice_without_istio_status_cannot_be_confirmed_and_says_how_to_turn_it_on() -> None:
    report = data_plane_report(vs(3), kind="VirtualService")
    assert report.state == DataPlane.UNAVAILABLE
    assert "PILOT_ENABLE_STATUS=true" in report.detail
    assert "PILOT_ENABLE_CONFIG_DISTRIBUTION_TRACKING=true" in report.detail


def test_istio_status_for_an_older_generation_or_still_propagating_is_pending() -> None:
    older = data_plane_report(vs(4, reconciled("True", 3)), kind="VirtualService")
    assert older.state == DataPlane.PENDING
    assert "generation 4" in older.detail
    propagating = data_plane_report(vs(4, reconciled("False", "4", "61/122 complete")), kind="VirtualService")
    assert propagating.state == DataPlane.PENDING
    assert "61/122 complete" in propagating.detail


def test_istio_reconciled_at_the_current_generation_confirms_whether_stored_as_number_or_string() -> None:
    assert data_plane_report(vs(4, reconciled("True", 4)), kind="VirtualService").state == DataPlane.CONFIRMED
    assert data_plane_report(vs(4, reconciled("True", "4")), kind="VirtualService").state == DataPlane.CONFIRMED


def test_a_tcproute_is_confirmed_when_every_parent_accepts_the_current_generation() -> None:
    assert data_plane_report(tcproute(2, None), kind="TCPRoute").state == DataPlane.UNAVAILABLE
    assert data_plane_report(tcproute(2, [parent("True", "True", 1)]), kind="TCPRoute").state == DataPlane.PENDING
    refused = data_plane_report(
        tcproute(2, [parent("False", "True", 2, reason="NotAllowedByListeners")]), kind="TCPRoute"
    )
    assert refused.state == DataPlane.PENDING
    assert "NotAllowedByListeners" in refused.detail
    assert data_plane_report(tcproute(2, [parent("True", "True", 2)]), kind="TCPRoute").state == DataPlane.CONFIRMED


class IstiodStandIn:
    """Reports each generation of the simulated VirtualService after ``lag`` passes, as istiod would."""

    def __init__(self, sim: Sim, lag: int) -> None:
        self.sim = sim
        self.lag = lag
        self.generation = 1
        self.seen: dict[int, int] = {}
        self.last_route: Any = None

    def before_pass(self) -> None:
        assert self.sim.live is not None
        route = self.sim.live["spec"]["tcp"][0]["route"]
        if route != self.last_route:
            self.generation += 1
            self.last_route = copy.deepcopy(route)
        self.sim.live["metadata"]["generation"] = self.generation
        waited = self.seen.setdefault(self.generation, 0)
        self.seen[self.generation] = waited + 1
        reported = self.generation if waited >= self.lag else self.generation - 1
        self.sim.live["status"] = reconciled("True", reported)


def test_the_step_clock_starts_only_when_istiod_reports_the_weight_reconciled() -> None:
    sim = Sim(seed_policy(stepDuration="1m"), seed_target())
    istiod = IstiodStandIn(sim, lag=3)
    istiod.before_pass()
    sim.tick(1)  # decides weight 0
    for _ in range(3):
        istiod.before_pass()
        sim.tick(30)
        assert sim.status.step_started_at is None, sim.status.message
        assert sim.status.message.startswith("canary weight 0 written; waiting for the data plane: istiod has not")
    istiod.before_pass()
    sim.tick(1)
    assert sim.status.step_started_at == sim.now
    assert sim.status.data_plane == f"istiod reports generation {istiod.generation} reconciled"


def test_a_weight_never_confirmed_within_the_progress_deadline_is_rolled_back() -> None:
    sim = Sim(
        seed_policy(
            stepDuration="1m",
        ),
        seed_target(),
    )
    istiod = IstiodStandIn(sim, lag=10_000)
    istiod.before_pass()
    sim.tick(1)
    for _ in range(25):  # progressDeadline is 10m in the seed policy
        istiod.before_pass()
        sim.tick(30)
        if sim.status.phase != Phase.PROGRESSING:
            break
    assert sim.status.phase in {Phase.ROLLING_BACK, Phase.ROLLED_BACK}
    assert sim.status.rollback_reason == "DataPlaneNotConfirmed"


def test_without_status_reporting_the_rollout_says_so_once_and_goes_on() -> None:
    sim = Sim(seed_policy(stepDuration="1m"), seed_target())
    events: list[RecordEvent] = []
    for _ in range(40):
        decision = sim.tick(30)
        events += [e for e in decision.effects if isinstance(e, RecordEvent) and e.reason == "DataPlaneUnconfirmed"]
        if sim.status.phase == Phase.PROMOTED:
            break
    assert sim.status.phase == Phase.PROMOTED
    assert len(events) == 1, "said once per run, not at every step"
    assert events[0].message.startswith("data-plane confirmation unavailable: ")
