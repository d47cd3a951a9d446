"""Operator journeys against the API emulator: the sequences people perform, the route asserted after every pass.

Each journey drives ``reconcile_once`` through the real Kubernetes adapters, with the canary Deployment
(Istio's tcp-echo sample, ``tcp-echo-services.yaml``) in the emulator, commands recorded the way
``canaryctl`` records them, and the policy edited as a person edits the file. Issue 12, item 1.
"""

from __future__ import annotations

from typing import Any

import pytest

from canary_sandbox.kubeapi import KubeApiEmulator
from controller.adapters.kubernetes.api import KubeApi
from controller.adapters.kubernetes.status import new_command
from controller.core.policy import CanaryPolicy
from controller.core.status import CommandKind, Phase, Verdict
from tests.integration.test_reconcile import World, put_canary_deployment
from tests.test_rollout import seed_policy


class Journey(World):
    """A World whose canary is a real Deployment and whose policy a person edits."""

    def canary_weight(self) -> int:
        route = self.live()["spec"]["tcp"][0]["route"]
        return next((int(d.get("weight", 0)) for d in route if d["destination"].get("subset") == "v2"), 0)

    def weights(self) -> dict[str, int]:
        route = self.live()["spec"]["tcp"][0]["route"]
        return {d["destination"]["subset"]: int(d.get("weight", 0)) for d in route}

    def edit_policy(self, change: Any) -> None:
        doc = self.policy.model_dump(mode="json", by_alias=True, exclude_none=True)
        change(doc)
        self.policy = CanaryPolicy.model_validate(doc)

    def command(self, kind: CommandKind) -> None:
        self.store.add_command(policy=self.ref, command=new_command(kind, by="alice"))

    def passes(self, count: int, seconds: float, *, canary: int | None = None) -> None:
        """``count`` passes; with ``canary``, the route must show that weight after every one of them."""
        for _ in range(count):
            self.tick(seconds)
            if canary is not None:
                assert self.canary_weight() == canary, (self.status().phase, self.status().message)

    def promote_through_the_schedule(self) -> None:
        for _ in range(40):
            self.tick(20)
            if self.status().phase == Phase.PROMOTED:
                return
        raise AssertionError(f"not promoted: {self.status().phase} {self.status().message}")

    def events(self, reason: str) -> list[dict[str, Any]]:
        return [e for e in self.emulator.list("events", namespace=self.namespace) if e["reason"] == reason]


@pytest.fixture
def journey(emulator: KubeApiEmulator, kube: KubeApi, namespace: str) -> Journey:
    put_canary_deployment(emulator, namespace)
    return Journey(emulator, kube, namespace, seed_policy(stepDuration="1m"))


def test_promote_then_edit_the_step_duration_keeps_all_traffic_on_the_canary(
    journey: Journey, emulator: KubeApiEmulator
) -> None:
    journey.analysis.answer = Verdict.INCONCLUSIVE  # held at step 1: only a person's promote moves it
    journey.passes(3, 5)
    assert journey.canary_weight() == 0
    journey.command(CommandKind.PROMOTE)
    for _ in range(5):
        journey.tick(5)
        if journey.status().phase == Phase.PROMOTED:
            break
    assert journey.status().phase == Phase.PROMOTED
    assert journey.weights() == {"v1": 0, "v2": 100}

    def slower(doc: dict[str, Any]) -> None:
        doc["spec"]["schedule"]["stepDuration"] = "5m"

    journey.edit_policy(slower)
    writes = len(emulator.history(resource="virtualservices", namespace=journey.namespace, verb="PATCH"))
    journey.passes(6, 5, canary=100)
    assert journey.status().phase == Phase.PROMOTED
    assert journey.status().run_number == 1
    assert len(emulator.history(resource="virtualservices", namespace=journey.namespace, verb="PATCH")) == writes


def test_promote_then_a_new_canary_template_warns_and_moves_nothing(
    journey: Journey, emulator: KubeApiEmulator
) -> None:
    journey.promote_through_the_schedule()
    assert journey.weights() == {"v1": 0, "v2": 100}
    put_canary_deployment(emulator, journey.namespace, image="registry.istio.io/release/tcp-echo-server:1.4")
    journey.passes(5, 10, canary=100)
    status = journey.status()
    assert status.phase == Phase.PROMOTED
    expected = (
        "tcp-echo-v2 changed after promotion and carries 100 % of traffic; "
        "to canary a change, point a policy at a new canary"
    )
    assert status.message == expected
    assert {c.type: c.message for c in status.conditions}["Ready"] == expected
    warnings = journey.events("ChangedAfterPromotion")
    assert [(e["type"], e["message"]) for e in warnings] == [("Warning", expected)]
    assert warnings[0].get("count", 1) == 1, "reported once, not at every pass"


def test_a_rollback_then_a_new_canary_template_starts_a_new_run_from_the_restored_route(
    journey: Journey, emulator: KubeApiEmulator
) -> None:
    journey.passes(2, 1)
    journey.passes(1, 61)
    journey.passes(1, 1, canary=20)
    journey.analysis.answer = Verdict.FAIL
    journey.passes(2, 1)
    assert journey.status().phase == Phase.ROLLED_BACK
    assert journey.live()["spec"] == journey.original["spec"]
    journey.passes(3, 10, canary=0)
    journey.analysis.answer = Verdict.PASS
    put_canary_deployment(emulator, journey.namespace, image="registry.istio.io/release/tcp-echo-server:1.4")
    journey.tick(1)
    status = journey.status()
    assert status.run_number == 2
    assert status.phase == Phase.PROGRESSING
    assert status.original is not None
    assert status.original.destinations == journey.original["spec"]["tcp"][0]["route"]
    journey.passes(1, 1, canary=0)  # the weight is confirmed live: step 1's clock starts
    journey.passes(1, 30, canary=0)
    journey.passes(1, 31, canary=20)


def test_a_tuning_edit_mid_run_applies_from_the_next_check_without_moving_traffic(journey: Journey) -> None:
    journey.passes(2, 1)
    journey.passes(1, 61)
    journey.passes(1, 1, canary=20)
    run_id = journey.status().run_id

    def retuned(doc: dict[str, Any]) -> None:
        doc["spec"]["schedule"]["stepDuration"] = "10m"
        doc["metadata"]["labels"] = {"team": "echo"}

    journey.edit_policy(retuned)
    journey.passes(5, 61, canary=20)  # 5 minutes into a step that now lasts 10
    assert journey.status().run_id == run_id
    assert journey.status().phase == Phase.PROGRESSING
    journey.passes(6, 61)
    assert journey.canary_weight() == 50
    assert journey.status().run_id == run_id
    assert not journey.events("NewRevision")
