"""The daemon loop: dispatch, isolation of slow rollouts, problems reported once, clean shutdown."""

from __future__ import annotations

import copy
import gc
import logging
import time
from types import SimpleNamespace
from typing import Any

import pytest

from controller.core.policy import CanaryPolicy
from controller.ports import PolicyRef, PolicySnapshot, SourcedPolicy, SourceProblem
from controller.runtime import loop as loop_module
from controller.runtime.daemon import tune_gc
from controller.runtime.leadership import ElectionThread
from controller.runtime.loop import ReconcileLoop
from controller.runtime.metrics import ControllerMetrics
from controller.service.reconcile import Dependencies, reconcile_once
from controller.settings import Settings
from tests.fakes import ListEvents, MemoryRouter, MemoryStore, PassingAnalysis, ReadyWorkloads, StaticSource
from tests.test_rollout import seed_policy, seed_target


def _merge(*snapshots: PolicySnapshot) -> PolicySnapshot:
    return PolicySnapshot(
        policies=tuple(p for s in snapshots for p in s.policies),
        problems=tuple(p for s in snapshots for p in s.problems),
    )


def _policy(name: str) -> CanaryPolicy:
    doc = seed_policy().model_dump(mode="json")
    doc["metadata"] = {"name": name, "namespace": "shop"}
    doc["spec"]["target"]["virtualService"] = {"name": name}
    return CanaryPolicy.model_validate(doc)


def _world(names: list[str], slow: set[str]) -> tuple[ReconcileLoop, dict[str, MemoryRouter], MemoryStore, ListEvents]:
    routers = {}
    store = MemoryStore()
    events = ListEvents()
    for name in names:
        obj: dict[str, Any] = copy.deepcopy(seed_target())
        obj["metadata"]["name"] = name
        routers[name] = MemoryRouter({("VirtualService", "shop", name): obj}, delay=1.0 if name in slow else 0.0)
    policies = tuple(SourcedPolicy(_policy(n), PolicyRef("shop", n, "file")) for n in names)
    problem = SourceProblem(source="file", location="bad.yaml:3", message="spec.schedule.steps[1]: must be ...")
    source = StaticSource(PolicySnapshot(policies=policies, problems=(problem,)))

    def deps(ref: PolicyRef) -> Dependencies:
        return Dependencies(
            router=routers[ref.name], store=store, workloads=ReadyWorkloads(), events=events, analysis=PassingAnalysis()
        )

    reported: list[SourceProblem] = []
    controller = ReconcileLoop(
        sources=[source], merge=_merge, dependencies_for=deps, workers=4, tick_seconds=0.05, on_problem=reported.append
    )
    controller.reported = reported  # type: ignore[attr-defined]
    return controller, routers, store, events


def test_a_slow_rollout_never_delays_the_others() -> None:
    controller, routers, _, _ = _world(["fast", "slow"], slow={"slow"})
    for _ in range(10):
        controller.tick()
        time.sleep(0.05)
    assert routers["slow"].gets == 1, "a busy policy must never get a second pass at the same time"
    controller.shutdown(timeout=3)
    assert routers["fast"].gets >= 8
    # client-go's work queue: the nine resyncs while the slow pass ran collapse into one more pass after it.
    assert routers["slow"].gets == 2


def test_each_policy_problem_is_reported_once() -> None:
    controller, _, _, _ = _world(["a"], slow=set())
    for _ in range(3):
        controller.tick()
    controller.shutdown(timeout=2)
    assert len(controller.reported) == 1  # type: ignore[attr-defined]


def test_passes_persist_status_and_shutdown_closes_sources() -> None:
    controller, _, store, events = _world(["a"], slow=set())
    controller.tick()
    controller.shutdown(timeout=2)
    assert ("shop", "a") in store.saved
    assert ("a", "StepStarted") in events.events
    assert all(isinstance(s, StaticSource) and s.closed for s in controller.sources)
    controller.tick()  # after shutdown: no new work, no error


def test_no_pass_runs_before_every_source_has_synced() -> None:
    controller, routers, store, _ = _world(["a"], slow=set())
    source = controller.sources[0]
    assert isinstance(source, StaticSource)
    source.synced = lambda: False  # type: ignore[method-assign]
    controller.tick()
    time.sleep(0.1)
    assert routers["a"].gets == 0
    assert store.saved == {}
    source.synced = lambda: True  # type: ignore[method-assign]
    controller.tick()
    controller.shutdown(timeout=2)
    assert routers["a"].gets == 1


def test_a_standby_runs_no_pass_until_it_leads() -> None:
    controller, routers, store, _ = _world(["a"], slow=set())
    leading = {"now": False}
    controller.is_leader = lambda: leading["now"]
    metrics = ControllerMetrics()
    controller.metrics = metrics
    controller.tick()
    time.sleep(0.2)
    assert not store.saved, "a standby wrote status"
    assert routers["a"].gets == 0, "a standby ran a pass"
    assert controller.heartbeat is not None, "a standby's scheduler is alive all the same"
    assert metrics.leader._value.get() == 0
    leading["now"] = True
    controller.tick()
    deadline = time.monotonic() + 5
    while not store.saved and time.monotonic() < deadline:
        time.sleep(0.02)
    assert store.saved
    assert metrics.leader._value.get() == 1
    controller.shutdown(timeout=2)


def test_a_leader_that_lost_the_lease_between_two_ticks_looks_at_every_policy_when_it_has_it_again() -> None:
    controller, routers, store, _ = _world(["a", "b"], slow=set())
    controller.tick()  # leading: both get their first pass
    deadline = time.monotonic() + 5
    while {"a", "b"} - {name for _, name in store.saved} and time.monotonic() < deadline:
        time.sleep(0.02)
    gets = {name: router.gets for name, router in routers.items()}
    leading = {"now": False}
    controller.is_leader = lambda: leading["now"]
    controller.touch(("shop", "a"))  # a watch event while the Lease is lost: the pass is dropped
    time.sleep(0.3)
    assert routers["a"].gets == gets["a"], "a pass ran without the Lease"
    leading["now"] = True
    # No tick comes between (the loop still believes it leads): the election thread's takeover alone.
    controller.took_leadership()
    deadline = time.monotonic() + 5
    while any(routers[n].gets == gets[n] for n in gets) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert all(routers[n].gets > gets[n] for n in gets), "every policy is looked at again, the dropped one too"
    controller.shutdown(timeout=2)


def test_every_edit_of_a_policy_is_seen_though_its_old_snapshot_is_freed() -> None:
    """A source replaces its snapshot on every change and drops the old one; CPython gives the next object the
    freed one's address, so a merge remembered by id() looked unchanged and an edit (a pause command in the
    annotations, in a CanaryPolicy) went unseen until the next change."""
    controller, _, _, _ = _world(["a"], slow=set())
    (source,) = controller.sources
    assert isinstance(source, StaticSource)
    key = ("shop", "a")
    seen = []
    for edit in range(200):
        doc = _policy("a").model_dump(mode="json")
        doc["metadata"]["annotations"] = {"edit": str(edit)}
        policy = SourcedPolicy(CanaryPolicy.model_validate(doc), PolicyRef("shop", "a", "file"))
        del source.current  # dropped on the change, made again when read (as the CanaryPolicy source does)
        source.current = PolicySnapshot(policies=(policy,))
        controller.sync()
        annotations = controller._policies[key].policy.metadata.annotations or {}
        seen.append(annotations.get("edit"))
    controller.shutdown(timeout=2)
    assert seen == [str(edit) for edit in range(200)]


def test_election_timing_settings_must_be_ordered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CANARY_LEASE_DURATION_SECONDS", "5")
    monkeypatch.setenv("CANARY_RENEW_DEADLINE_SECONDS", "6")
    with pytest.raises(ValueError, match="CANARY_RENEW_DEADLINE_SECONDS < CANARY_LEASE_DURATION_SECONDS"):
        Settings()


def test_passes_in_the_middle_of_a_step_write_nothing() -> None:
    controller, _, store, _ = _world(["a"], slow=set())
    for _ in range(3):  # start the run, write the first weight, see it live
        controller.tick()
        time.sleep(0.15)
    _, version = store.saved[("shop", "a")]
    for _ in range(5):  # over two seconds: anything counting down in whole seconds would change
        controller.tick()
        time.sleep(0.5)
    controller.shutdown(timeout=2)
    status, later = store.saved[("shop", "a")]
    assert status.phase == "Progressing"
    assert later == version, f"{later - version} status writes while nothing changed ({status.message!r})"


def test_a_skipped_timers_run_is_not_logged_but_a_skipped_tick_is() -> None:
    # At 10,000 rollouts the 0.1 s timers job overlaps its last run every few seconds: harmless, not a warning.
    scheduler_log = loop_module._quiet_timers_logger()
    message = 'Execution of job "%s" skipped: maximum number of running instances reached (%d)'

    def record(job_id: str) -> logging.LogRecord:
        job = SimpleNamespace(id=job_id)
        return scheduler_log.makeRecord(scheduler_log.name, logging.WARNING, __file__, 1, message, (job, 1), None)

    assert not scheduler_log.filter(record("timers"))
    assert scheduler_log.filter(record("tick"))
    assert loop_module._quiet_timers_logger().filters == scheduler_log.filters, "installed once"


def test_passes_stretch_the_status_refresh_with_the_number_of_policies(monkeypatch: pytest.MonkeyPatch) -> None:
    controller, _, _, _ = _world(["a", "b", "c", "d"], slow=set())
    controller.status_refresh_writes_per_second = 0.02  # 4 rollouts: one refresh each every 200 s
    seen: list[float] = []
    real = reconcile_once

    def spy(**arguments: Any) -> Any:
        seen.append(arguments["refresh_after"])
        return real(**arguments)

    monkeypatch.setattr(loop_module, "reconcile_once", spy)
    controller.tick()
    deadline = time.monotonic() + 5
    while len(seen) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    controller.shutdown(timeout=2)
    assert seen[:4] == [pytest.approx(200.0)] * 4


def test_the_daemon_collects_its_young_generation_at_the_threshold_it_is_given() -> None:
    before = gc.get_threshold()
    try:
        assert tune_gc(50_000) == before
        assert gc.get_threshold() == (50_000, *before[1:]), "only the young generation changes"
        tune_gc(0)
        assert gc.get_threshold() == (50_000, *before[1:]), "0 leaves the threshold alone"
        assert Settings().gc_threshold == 50_000
    finally:
        gc.set_threshold(*before)


def test_the_election_thread_hands_over_at_once_each_time_this_replica_becomes_the_leader() -> None:
    rounds = iter([False, True, True, False, True] + [True] * 1000)
    leading = {"now": False}
    takeovers: list[float] = []

    def step() -> None:
        leading["now"] = next(rounds)

    def take_over() -> None:
        takeovers.append(time.monotonic())
        raise RuntimeError("a failing takeover must not stop the election")

    election = ElectionThread(
        step=step,
        release=lambda: True,
        next_delay=lambda: 0.01,
        is_leader=lambda: leading["now"],
        on_leading=take_over,
    )
    election.start()
    deadline = time.monotonic() + 5
    while len(takeovers) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # later rounds, still leading, hand over nothing more
    election.stop(release=False)
    # Not leading -> leading twice (rounds 2 and 5): two takeovers, the second after the failed first.
    assert len(takeovers) == 2
