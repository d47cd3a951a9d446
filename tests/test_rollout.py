"""The rollout state machine, scenario by scenario, with a fake clock and an in-memory target."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest
import yaml

from controller.core.effects import RecordEvent, WriteRoute
from controller.core.policy import CanaryPolicy
from controller.core.rollout import decide, revision_of, route_revision_of
from controller.core.status import (
    TERMINAL_PHASES,
    Alert,
    AnalysisResult,
    CheckRecord,
    CommandKind,
    LastVerdict,
    Observations,
    PauseReason,
    Phase,
    RolloutStatus,
    Stall,
    Verdict,
    refresh_seconds,
    worth_saving,
)
from tests.rollout_sim import T0, Sim, pointer_get
from tests.support.paths import REPO, SHARED_ISTIO


def seed_policy(**schedule: Any) -> CanaryPolicy:
    """The shipped seed policy with its schedule changed; without its analysis, which ``Sim.verdict`` stands in
    for (tests of maxInconclusive or failureLimit set their own)."""
    doc = yaml.safe_load((REPO / "policies" / "tcp-echo.yaml").read_text())
    doc["spec"]["schedule"].update(schedule)
    doc["spec"].pop("analysis", None)
    return CanaryPolicy.model_validate(doc)


def seed_target() -> dict[str, Any]:
    documents = list(yaml.safe_load_all((SHARED_ISTIO / "tcp-echo-all-v1.yaml").read_text()))
    return next(d for d in documents if d and d["kind"] == "VirtualService")


def route(sim: Sim) -> list[Any]:
    assert sim.live is not None
    return list(pointer_get(sim.live, "/spec/tcp/0/route"))


def reasons(sim: Sim) -> list[str]:
    return [entry.reason for entry in sim.status.history]


def test_a_healthy_canary_walks_every_step_and_is_promoted() -> None:
    sim = Sim(seed_policy(stepDuration="2m"), seed_target())
    weights_seen = []
    for _ in range(100):
        sim.tick(30)
        weights_seen.append(sim.canary_weight())
        if sim.status.phase == Phase.PROMOTED:
            break
    assert sim.status.phase == Phase.PROMOTED
    assert [w.weight for w in sim.applied_writes] == [0, 20, 50, 100]
    distinct = [w for i, w in enumerate(weights_seen) if w is not None and (i == 0 or weights_seen[i - 1] != w)]
    assert distinct == [0, 20, 50, 100]
    assert route(sim)[1] == {
        "destination": {"host": "tcp-echo", "port": {"number": 9000}, "subset": "v2"},
        "weight": 100,
    }
    assert "Promoted" in reasons(sim)
    assert sim.status.counters.steps_advanced == 3


def test_a_step_lasts_its_duration_from_when_the_weight_took_effect() -> None:
    sim = Sim(seed_policy(stepDuration="2m"), seed_target())
    sim.tick()  # decides step 0
    sim.tick()  # confirms step 0: the clock starts now
    started = sim.status.step_started_at
    assert started == T0
    sim.tick(119)
    assert sim.status.step_index == 0
    sim.tick(1)
    assert sim.status.step_index == 1


def test_a_failing_analysis_rolls_back_to_the_exact_original_route() -> None:
    sim = Sim(seed_policy(stepDuration="1m"), seed_target())
    sim.run_until({Phase.PROGRESSING})
    while sim.status.step_index < 2:
        sim.tick(30)
    sim.verdict = Verdict.FAIL
    decision = sim.tick(5)
    assert sim.status.phase == Phase.ROLLING_BACK
    assert any(isinstance(e, WriteRoute) and e.purpose == "restore" for e in decision.effects)
    decision = sim.tick(1)
    assert sim.status.phase == Phase.ROLLED_BACK
    assert sim.live == sim.original
    alerts = [e for e in decision.effects if isinstance(e, Alert)]
    assert [(a.name, a.reason, a.severity) for a in alerts] == [("CanaryRolledBack", "RolledBack", "critical")]
    assert "AnalysisFailed" in reasons(sim)


def test_inconclusive_analysis_never_advances_a_step() -> None:
    sim = Sim(seed_policy(stepDuration="1m"), seed_target())
    sim.verdict = Verdict.INCONCLUSIVE
    for _ in range(50):
        sim.tick(60)
    assert sim.status.phase == Phase.PROGRESSING
    assert sim.status.step_index == 0
    assert sim.status.message == "step 1/4 held at weight 0: stand-in"
    assert sim.status.stall == Stall.AWAITING_ANALYSIS


def test_a_crash_between_persist_and_write_repeats_the_write_once() -> None:
    sim = Sim(seed_policy(stepDuration="1m"), seed_target())
    sim.tick(apply=False)  # step 0 decided and persisted, then the process died
    assert sim.status.write_pending
    assert route(sim) == route(Sim(seed_policy(), seed_target()))
    decision = sim.tick(5)
    writes = [e for e in decision.effects if isinstance(e, WriteRoute)]
    assert [w.weight for w in writes] == [0]
    assert sim.status.counters.writes_repeated == 1
    sim.tick(1)
    assert not sim.status.write_pending
    assert sim.status.phase == Phase.PROGRESSING


def test_someone_elses_edit_pauses_the_rollout_and_is_not_written_back() -> None:
    sim = Sim(seed_policy(stepDuration="1m"), seed_target())
    sim.run_until({Phase.PROGRESSING})
    sim.tick(1)
    assert sim.live is not None
    edited = route(sim)
    edited[0]["weight"], edited[1]["weight"] = 10, 90
    sim.live["spec"]["tcp"][0]["route"] = edited
    decision = sim.tick(5)
    assert sim.status.phase == Phase.PAUSED
    assert sim.status.paused_reason == PauseReason.DRIFT
    assert not any(isinstance(e, WriteRoute) for e in decision.effects)
    assert [a.name for a in decision.effects if isinstance(a, Alert)] == ["CanaryDriftDetected"]
    for _ in range(5):
        assert not any(isinstance(e, WriteRoute) for e in sim.tick(60).effects)
    assert route(sim) == edited
    sim.command(CommandKind.RESUME)
    sim.tick(1)
    sim.tick(1)
    assert sim.status.phase == Phase.PROGRESSING
    assert sim.canary_weight() == 0


def test_a_canary_that_never_becomes_ready_is_rolled_back_without_touching_the_route() -> None:
    sim = Sim(seed_policy(), seed_target())
    sim.ready = False
    sim.tick()
    assert sim.status.phase == Phase.PENDING
    sim.tick(599)
    assert sim.status.phase == Phase.PENDING
    decision = sim.tick(2)
    assert sim.status.phase == Phase.ROLLED_BACK
    assert sim.applied_writes == []
    assert sim.live == sim.original
    assert "CanaryNotReady" in reasons(sim)
    assert [a.name for a in decision.effects if isinstance(a, Alert)] == ["CanaryRolledBack"]


def test_a_target_deleted_mid_rollout_fails_with_a_reason() -> None:
    sim = Sim(seed_policy(), seed_target())
    sim.run_until({Phase.PROGRESSING})
    sim.live = None
    decision = sim.tick(1)
    assert sim.status.phase == Phase.FAILED
    assert sim.status.last_error is not None
    assert "not found" in sim.status.last_error
    assert [a.name for a in decision.effects if isinstance(a, Alert)] == ["CanaryFailed"]


def test_a_target_missing_before_the_start_is_waited_for() -> None:
    sim = Sim(seed_policy(), seed_target())
    sim.live = None
    sim.tick()
    sim.tick(60)
    assert sim.status.phase == Phase.PENDING
    assert "waiting for the target" in sim.status.message
    sim.live = copy.deepcopy(sim.original)
    sim.run_until({Phase.PROGRESSING})


def test_an_unresolvable_route_fails_with_the_routes_seen() -> None:
    target = seed_target()
    target["spec"]["tcp"][0]["match"][0]["port"] = 31401
    sim = Sim(seed_policy(), target)
    sim.tick()
    assert sim.status.phase == Phase.FAILED
    assert sim.status.last_error is not None
    assert "no tcp routes match (port=31400)" in sim.status.last_error


def test_pause_freezes_the_step_clock_and_resume_continues_it() -> None:
    sim = Sim(seed_policy(stepDuration="2m"), seed_target())
    sim.tick()
    sim.tick()
    sim.tick(60)
    sim.command(CommandKind.PAUSE)
    sim.tick(1)
    assert sim.status.phase == Phase.PAUSED
    sim.tick(3600)
    assert sim.status.step_index == 0
    sim.command(CommandKind.RESUME)
    sim.tick(1)
    assert sim.status.phase == Phase.PROGRESSING
    sim.tick(58)
    assert sim.status.step_index == 0
    sim.tick(2)
    assert sim.status.step_index == 1


def test_promote_jumps_to_the_last_step_and_finishes() -> None:
    sim = Sim(seed_policy(stepDuration="1h"), seed_target())
    sim.run_until({Phase.PROGRESSING})
    sim.tick(1)
    sim.command(CommandKind.PROMOTE)
    sim.tick(1)
    sim.tick(1)
    assert sim.status.phase == Phase.PROMOTED
    assert [w.weight for w in sim.applied_writes] == [0, 100]


def test_a_schedule_ending_below_100_waits_for_a_manual_promote() -> None:
    sim = Sim(seed_policy(steps=[10, 30], stepDuration="1m"), seed_target())
    sim.run_until({Phase.PAUSED})
    assert sim.status.paused_reason == PauseReason.AWAITING_PROMOTION
    assert sim.canary_weight() == 30
    for _ in range(10):
        sim.tick(600)
    assert sim.status.phase == Phase.PAUSED
    sim.command(CommandKind.PROMOTE)
    sim.tick(1)
    assert sim.status.phase == Phase.PROMOTED
    assert sim.canary_weight() == 30


def test_abort_restores_the_original_route_and_ends_aborted() -> None:
    sim = Sim(seed_policy(stepDuration="1m"), seed_target())
    sim.run_until({Phase.PROGRESSING})
    sim.tick(1)
    sim.tick(61)
    assert sim.canary_weight() == 20
    sim.command(CommandKind.ABORT)
    sim.tick(1)
    sim.tick(1)
    assert sim.status.phase == Phase.ABORTED
    assert sim.live == sim.original


def test_retry_starts_a_new_run_after_a_rollback() -> None:
    sim = Sim(seed_policy(stepDuration="1m"), seed_target())
    sim.run_until({Phase.PROGRESSING})
    sim.verdict = Verdict.FAIL
    sim.run_until({Phase.ROLLED_BACK})
    first_run = sim.status.run_id
    sim.verdict = Verdict.PASS
    sim.command(CommandKind.RETRY)
    sim.tick(1)
    assert sim.status.phase in {Phase.PENDING, Phase.PROGRESSING}
    assert sim.status.run_id != first_run
    sim.run_until({Phase.PROMOTED})


@pytest.mark.parametrize(
    ("phase_setup", "kind", "refusal"),
    [
        ("promoted", CommandKind.PAUSE, "the run is Promoted; retry or a new revision starts a new run"),
        ("progressing", CommandKind.RESUME, "only a Paused rollout can be resumed (it is Progressing)"),
        ("progressing", CommandKind.RETRY, "only a RolledBack, Failed or Aborted run can be retried"),
        ("promoted", CommandKind.RETRY, "only a RolledBack, Failed or Aborted run can be retried (it is Promoted)"),
        ("pending", CommandKind.PROMOTE, "only a rollout that has started its steps can be promoted"),
    ],
)
def test_commands_that_do_not_fit_the_phase_are_refused_with_a_reason(
    phase_setup: str, kind: CommandKind, refusal: str
) -> None:
    sim = Sim(seed_policy(stepDuration="1m"), seed_target())
    if phase_setup == "pending":
        sim.ready = False
        sim.tick()
    elif phase_setup == "progressing":
        sim.run_until({Phase.PROGRESSING})
    else:
        sim.run_until({Phase.PROMOTED})
    before = sim.status.phase
    command_id = sim.command(kind)
    decision = sim.tick(1)
    assert sim.status.phase in {before, Phase.PROGRESSING}
    refused = [h for h in sim.status.history if h.reason == "CommandRefused" and command_id in h.message]
    assert refused
    assert refusal in refused[0].message
    assert any(isinstance(e, RecordEvent) and e.reason == "CommandRefused" for e in decision.effects)


def test_terminal_phases_absorb_everything_but_retry_and_new_revisions() -> None:
    sim = Sim(seed_policy(stepDuration="1m"), seed_target())
    sim.run_until({Phase.PROMOTED})
    sim.verdict = Verdict.FAIL
    sim.live = None
    for _ in range(5):
        assert sim.tick(60).effects == []
    assert sim.status.phase == Phase.PROMOTED
    sim.live = copy.deepcopy(sim.original)
    sim.revision, sim.route_revision = "rev-2", "route-2"  # the policy now points at other destinations
    sim.tick(1)
    assert sim.status.phase != Phase.PROMOTED
    assert sim.status.run_number == 2


def test_a_new_revision_mid_rollout_restarts_from_the_first_step_keeping_the_original() -> None:
    sim = Sim(seed_policy(stepDuration="1m"), seed_target())
    sim.run_until({Phase.PROGRESSING})
    sim.tick(61)
    sim.tick(1)
    original = sim.status.original
    sim.revision = "rev-2"
    sim.tick(1)
    sim.tick(1)
    assert sim.status.original == original
    assert sim.status.step_index == 0
    assert sim.canary_weight() == 0


def test_bad_input_gives_a_failed_status_never_an_exception() -> None:
    policy = seed_policy()
    garbage = Observations(revision="r", target={"kind": "VirtualService", "spec": {"tcp": [{"route": "x"}]}})
    decision = decide(policy, RolloutStatus(), garbage, T0)
    assert decision.status.phase == Phase.FAILED
    assert decision.status.last_error
    weird_status = RolloutStatus(phase=Phase.PROGRESSING, revision="r", run_id="r-1", step_index=7, weight=3)
    decision = decide(policy, weird_status, Observations(revision="r", target=seed_target()), T0)
    assert decision.status.phase in TERMINAL_PHASES | {Phase.PAUSED}


def test_status_round_trips_through_json() -> None:
    sim = Sim(seed_policy(stepDuration="1m"), seed_target())
    sim.run_until({Phase.PROGRESSING})
    sim.tick(61)
    dumped = sim.status.model_dump(mode="json")
    assert "stepIndex" in dumped
    assert RolloutStatus.model_validate(dumped) == sim.status


def test_revision_changes_with_what_is_rolled_out_never_with_tuning() -> None:
    policy = seed_policy()
    assert revision_of(policy) == revision_of(seed_policy())
    # Tuning: schedule durations and steps, analysis, alerts, labels.
    tuned = seed_policy(stepDuration="3m", steps=[0, 10, 100]).model_dump(mode="json", by_alias=True)
    tuned["metadata"]["labels"] = {"team": "echo"}
    tuned["spec"]["alerts"] = []
    assert revision_of(CanaryPolicy.model_validate(tuned)) == revision_of(policy)
    assert route_revision_of(CanaryPolicy.model_validate(tuned)) == route_revision_of(policy)
    # What is rolled out: the canary pod template, the destinations, the canary workload.
    assert revision_of(policy, {"spec": {"containers": [{"image": "a"}]}}) != revision_of(
        policy, {"spec": {"containers": [{"image": "b"}]}}
    )
    moved = policy.model_dump(mode="json", by_alias=True)
    moved["spec"]["target"]["canary"]["subset"] = "v3"
    assert route_revision_of(CanaryPolicy.model_validate(moved)) != route_revision_of(policy)
    assert revision_of(CanaryPolicy.model_validate(moved)) != revision_of(policy)


def test_a_new_revision_mid_rollout_takes_traffic_off_the_replaced_canary_at_once() -> None:
    sim = Sim(seed_policy(stepDuration="1m"), seed_target())
    sim.run_until({Phase.PROGRESSING})
    sim.tick(1)
    sim.tick(61)
    assert sim.canary_weight() == 20
    sim.revision = "rev-2"
    sim.ready = False  # the canary Deployment is rolling out its new pod template
    sim.tick(1)
    assert sim.status.phase == Phase.PENDING
    assert sim.live == sim.original, "traffic must leave the canary while its new pods are not ready"
    sim.tick(30)
    assert sim.live == sim.original
    sim.ready = True
    sim.tick(1)
    assert sim.canary_weight() == 0


def test_a_pause_while_a_new_revision_restores_the_route_still_finishes_the_restore_and_starts_no_step() -> None:
    # Found by the state-machine test: the restore's write was lost (crash), then a pause came before the
    # next pass; the paused run tried to repeat a step write that had no weight, and failed the rollout.
    sim = Sim(seed_policy(stepDuration="1m"), seed_target())
    sim.run_until({Phase.PROGRESSING})
    sim.tick(61)
    sim.tick(61)
    assert sim.canary_weight() == 20
    sim.revision = "rev-2"
    sim.tick(1, apply=False)  # decided the restore, crashed before writing it
    assert sim.canary_weight() == 20
    sim.command(CommandKind.PAUSE)
    sim.tick(1)
    assert sim.status.phase == Phase.PAUSED, sim.status.last_error
    assert sim.live == sim.original, "the old run's weight must still leave the replaced canary"
    for _ in range(3):
        sim.tick(61)
    assert sim.status.phase == Phase.PAUSED
    assert sim.live == sim.original
    assert sim.status.step_index == -1
    sim.command(CommandKind.RESUME)
    sim.tick(1)
    sim.tick(1)
    assert sim.status.phase == Phase.PROGRESSING
    assert sim.canary_weight() == 0


def test_failure_limit_counts_consecutive_evaluations_once_each() -> None:
    doc = seed_policy(stepDuration="1m").model_dump(mode="json")
    doc["spec"]["analysis"] = {
        "failureLimit": 3,
        "selector": {"canaryWorkload": "tcp-echo-v2"},
        "metrics": [{"name": "conns", "template": "istio-tcp-connections"}],
    }
    sim = Sim(CanaryPolicy.model_validate(doc), seed_target())
    sim.run_until({Phase.PROGRESSING})
    sim.tick(1)
    assert sim.status.run_id is not None
    for evaluation in range(2):
        result = AnalysisResult(
            run_id=sim.status.run_id,
            step_index=0,
            verdict=Verdict.FAIL,
            reason="bad",
            evaluated_at=T0 + timedelta(minutes=evaluation),
        )
        for _ in range(3):  # the same evaluation seen by several passes counts once
            decision = decide(
                sim.policy, sim.status, sim.observations().model_copy(update={"analysis": result}), sim.now
            )
            sim.status = decision.status
    assert sim.status.phase == Phase.PROGRESSING
    assert sim.status.consecutive_failures == 2
    third = AnalysisResult(
        run_id=sim.status.run_id,
        step_index=0,
        verdict=Verdict.FAIL,
        reason="bad",
        evaluated_at=T0 + timedelta(minutes=5),
    )
    sim.status = decide(
        sim.policy, sim.status, sim.observations().model_copy(update={"analysis": third}), sim.now
    ).status
    assert sim.status.phase == Phase.ROLLING_BACK


@pytest.mark.parametrize(
    ("limit", "action", "phase"), [(3, "pause", Phase.PAUSED), ("2m", "rollback", Phase.ROLLED_BACK)]
)
def test_max_inconclusive_then_on_inconclusive_applies(limit: Any, action: str, phase: Phase) -> None:
    doc = seed_policy(stepDuration="10m").model_dump(mode="json")
    doc["spec"]["analysis"] = {
        "maxInconclusive": limit,
        "onInconclusive": action,
        "selector": {"canaryWorkload": "tcp-echo-v2"},
        "metrics": [{"name": "conns", "template": "istio-tcp-connections"}],
    }
    sim = Sim(CanaryPolicy.model_validate(doc), seed_target())
    sim.verdict = Verdict.INCONCLUSIVE
    sim.run_until({Phase.PROGRESSING})
    for _ in range(6):
        sim.tick(30)
    assert sim.status.phase == phase
    reasons_seen = reasons(sim)
    assert ("AnalysisInconclusive" if action == "pause" else "InconclusiveLimit") in reasons_seen


def test_a_pass_from_before_the_step_ended_does_not_advance_it() -> None:
    sim = Sim(seed_policy(stepDuration="1m"), seed_target())
    sim.verdict = None
    sim.run_until({Phase.PROGRESSING})
    sim.tick(1)
    assert sim.status.run_id is not None
    early = AnalysisResult(
        run_id=sim.status.run_id, step_index=0, verdict=Verdict.PASS, evaluated_at=sim.now + timedelta(seconds=30)
    )
    sim.now += timedelta(seconds=90)
    sim.status = decide(
        sim.policy, sim.status, sim.observations().model_copy(update={"analysis": early}), sim.now
    ).status
    assert sim.status.step_index == 0
    gate = AnalysisResult(run_id=sim.status.run_id, step_index=0, verdict=Verdict.PASS, evaluated_at=sim.now)
    sim.status = decide(
        sim.policy, sim.status, sim.observations().model_copy(update={"analysis": gate}), sim.now
    ).status
    assert sim.status.step_index == 1


def test_a_passing_check_that_changes_nothing_else_is_written_once_a_minute_not_every_time() -> None:
    saved = RolloutStatus(
        run_id="r-1",
        step_index=1,
        weight=20,
        phase=Phase.PROGRESSING,
        step_started_at=T0,
        last_verdict="pass: fine",
        last_analysis_at=T0 + timedelta(seconds=30),
        last_checks=[{"name": "e"}],
    )
    assert not worth_saving(saved, saved.model_copy(), T0 + timedelta(seconds=40))
    later = saved.model_copy(
        update={"last_analysis_at": T0 + timedelta(seconds=40), "last_checks": [CheckRecord(name="e", canary_value=0)]}
    )
    assert not worth_saving(saved, later, T0 + timedelta(seconds=40))
    assert worth_saving(saved, later, T0 + timedelta(seconds=90)), "refreshed after a minute"
    failing = later.model_copy(update={"last_verdict": LastVerdict(verdict=Verdict.FAIL, reason="errors")})
    assert worth_saving(saved, failing, T0 + timedelta(seconds=40)), "a verdict that changes is written at once"
    stepped = later.model_copy(update={"weight": 50, "step_index": 2})
    assert worth_saving(saved, stepped, T0 + timedelta(seconds=40)), "a weight change is written at once"
    # With many rollouts the refresh stretches (refresh_seconds); a change is still written at once.
    stretched = T0 + timedelta(seconds=30 + 499)
    assert not worth_saving(saved, later, stretched, refresh_after=500.0), "refreshed before its stretched time"
    assert worth_saving(saved, later, stretched + timedelta(seconds=1), refresh_after=500.0)
    assert worth_saving(saved, failing, T0 + timedelta(seconds=40), refresh_after=500.0)
    assert worth_saving(saved, stepped, T0 + timedelta(seconds=40), refresh_after=500.0)


@pytest.mark.parametrize(
    ("rollouts", "per_second", "seconds"),
    [(1, 20.0, 60.0), (1_200, 20.0, 60.0), (1_201, 20.0, 60.05), (10_000, 20.0, 500.0), (10_000, 0.0, 60.0)],
)
def test_the_status_refresh_stretches_so_refresh_writes_stay_under_their_rate(
    rollouts: int, per_second: float, seconds: float
) -> None:
    assert refresh_seconds(rollouts, per_second) == pytest.approx(seconds)
    if per_second > 0:
        assert rollouts / refresh_seconds(rollouts, per_second) <= per_second + 1e-9
