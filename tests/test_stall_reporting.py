"""A stalled rollout is reported where people look: one Warning Event and one log line per cause, and a metric."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from prometheus_client import generate_latest

from controller.core.policy import CanaryPolicy
from controller.core.status import AnalysisResult, Command, CommandKind, RolloutStatus, Stall, Verdict
from controller.ports import InvolvedObject, PolicyRef, PolicySnapshot, SourcedPolicy
from controller.runtime.loop import ReconcileLoop
from controller.runtime.metrics import ControllerMetrics
from controller.service.reconcile import Dependencies, PassResult, reconcile_once
from tests.fakes import MemoryRouter, MemoryStore, ReadyWorkloads, StaticSource
from tests.rollout_sim import T0
from tests.test_rollout import seed_policy, seed_target

REF = PolicyRef("istio-io-tcp-traffic-shifting", "tcp-echo", "crd")
NO_URL = "no Prometheus URL (set CANARY_PROMETHEUS_URL or spec.analysis.prometheus.url)"


@dataclass
class Event:
    reason: str
    message: str
    event_type: str


@dataclass
class Events:
    recorded: list[Event] = field(default_factory=list)

    def record(self, *, involved: InvolvedObject, reason: str, message: str, event_type: str) -> None:
        self.recorded.append(Event(reason, message, event_type))

    def stalled(self) -> list[Event]:
        return [event for event in self.recorded if event.reason == "Stalled"]


@dataclass
class ScriptedAnalysis:
    """Every step's analysis gives the verdict ``gives`` with ``reason``."""

    gives: Verdict = Verdict.INCONCLUSIVE
    reason: str = NO_URL

    def verdict(self, *, policy: CanaryPolicy, status: RolloutStatus, now: datetime) -> AnalysisResult | None:
        if status.run_id is None:
            return None
        return AnalysisResult(
            run_id=status.run_id, step_index=status.step_index, verdict=self.gives, reason=self.reason, evaluated_at=now
        )


class World:
    """One policy, its route and status in memory, passes run by the service at a simulated time."""

    def __init__(self) -> None:
        self.policy = seed_policy(stepDuration="1m")
        target: dict[str, Any] = copy.deepcopy(seed_target())
        self.store = MemoryStore()
        self.router = MemoryRouter({("VirtualService", self.policy.target_namespace, "tcp-echo"): target})
        self.events = Events()
        self.analysis = ScriptedAnalysis()
        self.now = T0
        self.results: list[PassResult] = []

    @property
    def deps(self) -> Dependencies:
        return Dependencies(
            router=self.router,
            store=self.store,
            workloads=ReadyWorkloads(),
            events=self.events,
            analysis=self.analysis,
        )

    def status(self) -> RolloutStatus:
        return self.store.load(policy=REF).status

    def passes(self, count: int, *, seconds: float = 15) -> None:
        for _ in range(count):
            self.now += timedelta(seconds=seconds)
            self.results.append(reconcile_once(policy=self.policy, ref=REF, deps=self.deps, now=self.now))

    def command(self, kind: CommandKind) -> None:
        self.store.commands.setdefault((REF.namespace, REF.name), []).append(Command(id=f"c-{kind}", kind=kind))


class TestWarningEvents:
    def test_a_held_step_records_one_warning_event_with_the_reason_however_many_passes_hold_it(self) -> None:
        world = World()
        world.passes(20)
        assert world.status().stall == Stall.AWAITING_ANALYSIS
        (event,) = world.events.stalled()
        assert event.event_type == "Warning"
        assert event.message == f"step 1/4 held at weight 0: {NO_URL}"

    def test_a_new_stall_after_the_rollout_moved_again_is_recorded_again(self) -> None:
        world = World()
        world.passes(10)
        world.analysis.gives = Verdict.PASS
        world.passes(2)
        assert world.status().stall is None
        assert world.status().step_index == 1
        world.analysis.gives = Verdict.INCONCLUSIVE
        world.analysis.reason = "errors: only 3 connections, 100 needed"
        world.passes(10)
        messages = [event.message for event in world.events.stalled()]
        assert messages == [
            f"step 1/4 held at weight 0: {NO_URL}",
            "step 2/4 held at weight 20: errors: only 3 connections, 100 needed",
        ]

    def test_a_pause_someone_asked_for_is_not_a_warning(self) -> None:
        world = World()
        world.analysis.gives = Verdict.PASS
        world.passes(3)
        world.command(CommandKind.PAUSE)
        world.passes(5)
        assert world.status().stall == Stall.PAUSED
        assert world.events.stalled() == []

    def test_the_pass_says_when_the_cause_changed_and_only_then(self) -> None:
        world = World()
        world.passes(12)
        changes = [result.stall_changed for result in world.results if result.stall_changed is not None]
        assert changes == [(None, Stall.AWAITING_ANALYSIS)]


def stalled_series(metrics: ControllerMetrics) -> list[str]:
    text = generate_latest(metrics.registry).decode()
    return [line for line in text.splitlines() if line.startswith("canary_stalled{")]


class TestStalledMetric:
    def test_a_series_names_the_current_reason_and_goes_when_the_rollout_moves(self) -> None:
        world = World()
        metrics = ControllerMetrics()
        for _ in range(10):
            world.passes(1)
            decision = world.results[-1].decision
            assert decision is not None
            metrics.observe_pass(REF, decision, 0.01)
        assert stalled_series(metrics) == [
            'canary_stalled{namespace="istio-io-tcp-traffic-shifting",policy="tcp-echo",reason="AwaitingAnalysis"} 1.0'
        ]
        world.command(CommandKind.PAUSE)
        world.passes(1)
        decision = world.results[-1].decision
        assert decision is not None
        metrics.observe_pass(REF, decision, 0.01)
        assert stalled_series(metrics) == [
            'canary_stalled{namespace="istio-io-tcp-traffic-shifting",policy="tcp-echo",reason="Paused"} 1.0'
        ]
        world.command(CommandKind.RESUME)
        world.analysis.gives = Verdict.PASS
        for _ in range(3):
            world.passes(1)
            decision = world.results[-1].decision
            assert decision is not None
            metrics.observe_pass(REF, decision, 0.01)
        assert world.status().stall is None
        assert stalled_series(metrics) == []


class TestDaemonLog:
    def test_the_log_says_once_why_a_rollout_stalled_and_once_that_it_moves_again(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        world = World()
        sourced = SourcedPolicy(world.policy, REF)
        clock = _Clock(world)
        controller = ReconcileLoop(
            sources=[StaticSource(PolicySnapshot(policies=(sourced,), problems=()))],
            merge=lambda *snapshots: snapshots[0],
            dependencies_for=lambda ref: world.deps,
            clock=clock,
            workers=1,
        )
        caplog.set_level(logging.INFO, logger="controller")
        try:
            for _ in range(15):
                clock.advance(15)
                controller._reconcile(sourced)
            world.analysis.gives = Verdict.PASS
            for _ in range(3):
                clock.advance(15)
                controller._reconcile(sourced)
        finally:
            controller.shutdown(timeout=2)
        stalled = [r for r in caplog.records if r.getMessage().startswith("rollout stalled")]
        moving = [r for r in caplog.records if r.getMessage().startswith("rollout moves again")]
        assert [r.getMessage() for r in stalled] == [
            f"rollout stalled (AwaitingAnalysis): step 1/4 held at weight 0: {NO_URL}"
        ]
        assert stalled[0].levelno == logging.WARNING
        assert getattr(stalled[0], "stall", None) == "AwaitingAnalysis"
        assert len(moving) == 1


class _Clock:
    def __init__(self, world: World) -> None:
        self.world = world

    def advance(self, seconds: float) -> None:
        self.world.now += timedelta(seconds=seconds)

    def now(self) -> datetime:
        return self.world.now
