"""The alert outbox: recorded with the decision, delivered by its own workers, logged once."""

from __future__ import annotations

import threading
import time

from controller.core.alerts import AlertMessage
from controller.core.policy import AlertRoute, CanaryPolicy
from controller.core.status import Phase, Verdict
from controller.ports import DeliveryResult, PolicyRef
from controller.runtime.loop import SystemClock
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


class StepClock:
    def __init__(self) -> None:
        from datetime import UTC, datetime  # noqa: PLC0415

        self.at = datetime(2026, 1, 1, tzinfo=UTC)

    def now(self):  # type: ignore[no-untyped-def]
        return self.at


def test_a_lasting_alert_is_reposted_and_resolved_when_a_later_run_is_promoted() -> None:
    from datetime import timedelta  # noqa: PLC0415

    policy = _policy_with_routes()
    sim = _rolled_back(policy)
    store = MemoryStore()
    ref = PolicyRef("default", "tcp-echo", "file")
    store.save(policy=ref, status=sim.status, version=None)
    clock = StepClock()
    delivery = RecordingDelivery()
    dispatcher = AlertDispatcher(delivery=delivery, store_for=lambda _: store, clock=clock)
    dispatcher.maintain(policy=policy, ref=ref, status=store.load(policy=ref).status)
    assert dispatcher.wait_idle(5)
    assert [f.route for f in store.load(policy=ref).status.firing_alerts] == ["oncall"]
    clock.at += timedelta(seconds=100)
    dispatcher.maintain(policy=policy, ref=ref, status=store.load(policy=ref).status)
    assert dispatcher.wait_idle(5)
    assert len([m for name, m in delivery.sent if name == "oncall"]) == 1, "not due yet"
    clock.at += timedelta(seconds=200)
    dispatcher.maintain(policy=policy, ref=ref, status=store.load(policy=ref).status)
    assert dispatcher.wait_idle(5)
    reposts = [m for name, m in delivery.sent if name == "oncall"]
    assert len(reposts) == 2
    assert reposts[1].state == "firing"
    assert reposts[1].key == reposts[0].key
    # A later run is promoted: the alert is resolved once, with endsAt, and forgotten.
    promoted = store.load(policy=ref).status.model_copy(update={"phase": Phase.PROMOTED, "run_id": "later-2"})
    dispatcher.maintain(policy=policy, ref=ref, status=promoted)
    assert dispatcher.wait_idle(5)
    resolved = [m for name, m in delivery.sent if name == "oncall"][-1]
    assert (resolved.state, resolved.ended_at) == ("resolved", clock.at)
    assert store.load(policy=ref).status.firing_alerts == []
    dispatcher.shutdown()


def test_every_rollback_path_puts_an_alert_in_the_outbox() -> None:
    from controller.core.status import CommandKind  # noqa: PLC0415

    paths = {}
    sim = _rolled_back(_policy_with_routes())
    paths["analysis"] = sim.status.pending_alerts
    never_ready = Sim(_policy_with_routes(), seed_target())
    never_ready.ready = False
    never_ready.tick()
    never_ready.tick(700)
    paths["not ready"] = never_ready.status.pending_alerts
    aborted = Sim(_policy_with_routes(), seed_target())
    aborted.run_until({Phase.PROGRESSING})
    aborted.command(CommandKind.ABORT)
    aborted.tick(1)
    aborted.tick(1)
    paths["abort"] = aborted.status.pending_alerts
    gone = Sim(_policy_with_routes(), seed_target())
    gone.run_until({Phase.PROGRESSING})
    gone.live = None
    gone.tick(1)
    paths["target gone"] = gone.status.pending_alerts
    names = {path: [a.name for a in alerts] for path, alerts in paths.items()}
    assert names == {
        "analysis": ["CanaryRolledBack"],
        "not ready": ["CanaryRolledBack"],
        "abort": ["CanaryRolledBack"],
        "target gone": ["CanaryFailed"],
    }


def test_default_routes_from_settings_take_every_policys_alerts_unless_the_policy_overrides_them() -> None:
    from controller.service.alerting import routes_for  # noqa: PLC0415

    policy = _policy_with_routes()
    alert = _rolled_back(policy).status.pending_alerts[0]
    defaults = [
        AlertRoute.model_validate({"name": "platform", "webhook": {"url": {"env": "HOOK"}}}),
        AlertRoute.model_validate({"name": "oncall", "discord": {"webhookUrl": {"env": "D"}}}),
    ]
    chosen = [(r.name, r.sink) for r in routes_for(policy, alert, defaults)]
    assert chosen == [("oncall", "alertmanager"), ("chat", "slack"), ("platform", "webhook")]
