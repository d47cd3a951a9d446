"""The alert outbox: recorded with the decision, delivered by its own workers, logged once."""

from __future__ import annotations

import threading
import time

from controller.core.alerts import AlertMessage
from controller.core.policy import AlertRoute, CanaryPolicy
from controller.core.rollout import Phase, Verdict
from controller.ports import DeliveryResult, PolicyRef
from controller.runtime.daemon import SystemClock
from controller.service.alerting import AlertDispatcher
from tests.fakes import MemoryStore
from tests.rollout_sim import Sim
from tests.test_rollout import seed_policy, seed_target


class RecordingDelivery:
    def __init__(self, *, fail: set[str] | None = None, delay: float = 0.0) -> None:
        self.fail = fail or set()
        self.delay = delay
        self.sent: list[tuple[str, AlertMessage]] = []
        self.lock = threading.Lock()

    def deliver(self, *, policy: CanaryPolicy, route: AlertRoute, message: AlertMessage) -> DeliveryResult:
        time.sleep(self.delay)
        with self.lock:
            self.sent.append((route.name, message))
        if route.name in self.fail:
            return DeliveryResult(result="failed", attempts=5, error="HTTP 500 from hooks.slack.com")
        return DeliveryResult(result="sent", attempts=1)


def _policy_with_routes() -> CanaryPolicy:
    doc = seed_policy(stepDuration="1m").model_dump(mode="json")
    doc["spec"]["alerts"] = [
        {"name": "oncall", "alertmanager": {"url": "http://alertmanager:9093"}},
        {"name": "chat", "slack": {"webhookUrl": {"env": "SLACK_URL"}}, "on": ["CanaryRolledBack", "CanaryPromoted"]},
    ]
    return CanaryPolicy.model_validate(doc)


def _rolled_back(policy: CanaryPolicy) -> Sim:
    sim = Sim(policy, seed_target())
    sim.run_until({Phase.PROGRESSING})
    sim.tick(1)
    sim.verdict = Verdict.FAIL
    sim.run_until({Phase.ROLLED_BACK})
    return sim


def test_a_rollback_is_in_the_outbox_in_the_same_write_as_the_decision() -> None:
    sim = _rolled_back(_policy_with_routes())
    pending = sim.status.pending_alerts
    assert [(a.name, a.to_phase, a.reason) for a in pending] == [("CanaryRolledBack", Phase.ROLLED_BACK, "RolledBack")]
    assert pending[0].weight == 0
    assert pending[0].step_index == 0


def test_each_route_gets_the_alert_once_and_the_outcomes_are_logged() -> None:
    policy = _policy_with_routes()
    sim = _rolled_back(policy)
    store = MemoryStore()
    ref = PolicyRef("default", "tcp-echo", "file")
    store.save(policy=ref, status=sim.status, version=None)
    delivery = RecordingDelivery(fail={"chat"})
    dispatcher = AlertDispatcher(delivery=delivery, store_for=lambda _: store, clock=SystemClock())
    assert dispatcher.dispatch(policy=policy, ref=ref, status=sim.status) == 1
    assert dispatcher.dispatch(policy=policy, ref=ref, status=sim.status) in {0, 1}
    assert dispatcher.wait_idle(5)
    dispatcher.shutdown()
    saved = store.load(policy=ref).status
    assert saved.pending_alerts == []
    assert sorted((r.sink, r.result) for r in saved.alert_log) == [
        ("chat/slack", "failed"),
        ("oncall/alertmanager", "sent"),
    ]
    assert sorted(name for name, _ in delivery.sent) == ["chat", "oncall"]
    message = delivery.sent[0][1]
    assert message.name == "CanaryRolledBack"
    assert "rolled back (RolledBack) at step 1/4 at canary weight 0" in message.description


def test_a_slow_sink_never_delays_the_pass_that_dispatches_it() -> None:
    policy = _policy_with_routes()
    sim = _rolled_back(policy)
    store = MemoryStore()
    ref = PolicyRef("default", "tcp-echo", "file")
    store.save(policy=ref, status=sim.status, version=None)
    dispatcher = AlertDispatcher(delivery=RecordingDelivery(delay=1.0), store_for=lambda _: store, clock=SystemClock())
    started = time.monotonic()
    dispatcher.dispatch(policy=policy, ref=ref, status=sim.status)
    assert time.monotonic() - started < 0.2
    assert dispatcher.wait_idle(5)
    dispatcher.shutdown()


def test_pending_alerts_survive_a_restart_and_are_delivered_once() -> None:
    policy = _policy_with_routes()
    sim = _rolled_back(policy)
    store = MemoryStore()
    ref = PolicyRef("default", "tcp-echo", "file")
    store.save(policy=ref, status=sim.status, version=None)  # persisted, then the process died
    delivery = RecordingDelivery()
    restarted = AlertDispatcher(delivery=delivery, store_for=lambda _: store, clock=SystemClock())
    for _ in range(3):  # several passes after the restart see the same outbox
        restarted.dispatch(policy=policy, ref=ref, status=store.load(policy=ref).status)
        restarted.wait_idle(5)
    restarted.shutdown()
    assert len([name for name, _ in delivery.sent if name == "oncall"]) == 1
