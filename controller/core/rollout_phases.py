"""The rollout state machine's phase handlers: what one pass does in Pending, Progressing, Paused, RollingBack.

:func:`controller.core.rollout.decide` applies commands and checks the status first, then calls one of
:func:`wait_for_target`, :func:`pending`, :func:`paused_before_the_steps`, :func:`progressing` (Progressing
and Paused after step 1: confirming writes, drift, counting evaluations, advancing, promoting) or
:func:`rolling_back`. Each mutates the pass's working state (:class:`~controller.core.rollout_pass.RolloutPass`)
and never raises on purpose; ``decide`` turns any exception into a Failed status.
"""

from __future__ import annotations

from datetime import timedelta

from controller.core.dataplane import DataPlane, data_plane_report
from controller.core.durations import parse_go_duration
from controller.core.rollout_pass import RolloutPass, next_index
from controller.core.status import AnalysisResult, LastVerdict, PauseReason, Phase, Stall, Verdict


def _waited(work: RolloutPass) -> float:
    if work.status.pending_since is None:
        work.status.pending_since = work.now
    return (work.now - work.status.pending_since).total_seconds()


def wait_for_target(work: RolloutPass) -> None:
    """Before anything is written, a missing target may still appear (GitOps ordering): wait for it."""
    waited = _waited(work)
    deadline = work.policy.spec.workload.progress_deadline_seconds
    missing = work.obs.target_missing or "the target object does not exist"
    if waited > deadline:
        work.fail("TargetNotFound", f"{missing} (waited {int(waited)}s)")
    else:
        work.status.message = f"waiting for the target: {missing}"
        work.status.stall = Stall.WAITING_FOR_TARGET


def _restoring_before_the_run(work: RolloutPass) -> bool:
    """A new revision arrived mid-run: the route still sends the old run's weight to a canary that is being
    replaced. Put the original route back first (again, until it is live); the new run starts from it."""
    status = work.status
    if status.original is None or work.live_destinations() == status.original.destinations:
        return False
    work.write_restore()
    status.message = "new revision: restoring the original route before the new run starts"
    return True


def paused_before_the_steps(work: RolloutPass) -> None:
    """Paused before step 1: start nothing, but finish putting the original route back if a new revision
    interrupted a run, since the old run's weight still points at a canary being replaced."""
    if _restoring_before_the_run(work):
        work.status.message += " (paused: no step starts until resumed)"
        return
    work.status.write_pending = False


def pending(work: RolloutPass) -> None:
    """Pending: wait for the canary to be ready (rolling back after the progress deadline), then write step 1."""
    status = work.status
    policy = work.policy
    if _restoring_before_the_run(work):
        return
    if not work.obs.canary_ready:
        deadline = policy.spec.workload.progress_deadline_seconds
        waited = _waited(work)
        if waited > deadline:
            work.start_rollback(
                "CanaryNotReady",
                f"canary not ready after {int(waited)}s (progressDeadline {policy.spec.workload.progress_deadline})"
                + (f": {work.obs.canary_message}" if work.obs.canary_message else ""),
            )
        else:
            status.message = f"waiting for the canary to become ready ({work.obs.canary_message or 'not Available'})"
            status.stall = Stall.CANARY_NOT_READY
        return
    status.step_index = 0
    status.step_started_at = None
    if work.write_weight(work.steps[0]):
        work.transition(Phase.PROGRESSING, "StepStarted", f"step 1/{len(work.steps)}: canary weight {work.steps[0]}")


def _write_settled(work: RolloutPass) -> bool:
    """Confirm, repeat or flag the last write. True when the route is where the controller put it."""
    status = work.status
    live = work.live_weights
    if status.write_pending:
        if live == status.expected_weights:
            if not _reached_the_data_plane(work):
                return False
            status.write_pending = False
            if status.step_started_at is None:
                status.step_started_at = work.now
            work.event("WeightSet", f"canary weight {status.weight} is live")
            return True
        if live == status.previous_weights:
            status.counters.writes_repeated += 1
            assert status.weight is not None
            work.write_weight(status.weight)
            return False
    elif status.expected_weights is None or live == status.expected_weights:
        if status.expected_weights is None and status.weight is not None and status.phase == Phase.PROGRESSING:
            # After a resume from drift: write the step's weight again.
            work.write_weight(status.weight)
            return False
        return True
    status.counters.drifts += 1
    status.write_pending = False
    status.paused_reason = PauseReason.DRIFT
    if status.step_started_at is not None:
        status.paused_elapsed_seconds = (work.now - status.step_started_at).total_seconds()
    work.transition(
        Phase.PAUSED,
        "DriftDetected",
        f"the route's weights were changed by someone else (expected {status.expected_weights}, found {live}); "
        "paused, nothing written back. Resume to write the step's weight again, or abort to restore.",
        warning=True,
    )
    return False


def _reached_the_data_plane(work: RolloutPass) -> bool:
    """The written weight is in the API; True once the platform says it reached the data plane too (or cannot
    say). Until then the step's clock does not start, so no analysis counts traffic of the old route."""
    status = work.status
    assert work.obs.target is not None
    report = data_plane_report(work.obs.target, kind=work.policy.spec.target.kind)
    if report.state == DataPlane.PENDING:
        if status.data_plane_since is None:
            status.data_plane_since = work.now
        waited = (work.now - status.data_plane_since).total_seconds()
        deadline = work.policy.spec.workload.progress_deadline_seconds
        if waited > deadline:
            status.write_pending = False
            work.start_rollback(
                "DataPlaneNotConfirmed",
                f"canary weight {status.weight} not confirmed in the data plane after {int(waited)}s "
                f"(progressDeadline {work.policy.spec.workload.progress_deadline}): {report.detail}",
            )
            return False
        status.data_plane = f"pending: {report.detail}"
        status.message = f"canary weight {status.weight} written; waiting for the data plane: {report.detail}"
        return False
    status.data_plane_since = None
    if report.state == DataPlane.UNAVAILABLE:
        said = f"data-plane confirmation unavailable: {report.detail}"
        if status.data_plane != said:
            # Once per run (and again only if the reason changes): the rollout goes on without it.
            work.note("DataPlaneUnconfirmed", said)
            work.event("DataPlaneUnconfirmed", said)
        status.data_plane = said
        return True
    status.data_plane = report.detail
    return True


def progressing(work: RolloutPass) -> None:
    """Progressing (and Paused after step 1): confirm the write, count the analysis, hold, advance or promote."""
    status = work.status
    if status.phase == Phase.PAUSED and status.paused_reason == PauseReason.DRIFT:
        return
    if not _write_settled(work):
        return
    analysis = work.obs.analysis
    current = (
        analysis
        if analysis is not None and analysis.run_id == status.run_id and analysis.step_index == status.step_index
        else None
    )
    if current is not None and _count_analysis(work, current):
        return
    if status.paused_reason == PauseReason.PROMOTE_REQUESTED:
        _promote(work)
        return
    if status.phase == Phase.PAUSED:
        return
    assert status.step_started_at is not None
    elapsed = (work.now - status.step_started_at).total_seconds()
    duration = work.policy.spec.schedule.step_duration_seconds
    if elapsed < duration:
        # Constant for the whole step, so a pass that changes nothing writes nothing (no countdown here).
        ends = (status.step_started_at + timedelta(seconds=duration)).isoformat(timespec="seconds")
        status.message = f"step {status.step_index + 1}/{len(work.steps)} at weight {status.weight}: ends {ends}"
        if current is not None and current.verdict == Verdict.NOT_YET and current.reason:
            status.message += f"; {current.reason}"  # constant for the step too
        return
    gate = status.step_started_at + timedelta(seconds=duration)
    if current is None or (current.evaluated_at is not None and current.evaluated_at < gate):
        status.message = (
            f"step {status.step_index + 1}/{len(work.steps)} at weight {status.weight}: "
            "step time is up; waiting for the analysis of the whole step"
        )
        return
    if current.verdict != Verdict.PASS:
        # Held: the step cannot advance until an analysis of the whole step passes. Say why, in full.
        status.stall = Stall.AWAITING_ANALYSIS
        status.message = f"step {status.step_index + 1}/{len(work.steps)} held at weight {status.weight}: " + (
            current.reason or f"analysis {current.verdict}"
        )
        return
    following = next_index(work)
    if following is None:
        if status.weight == 100:
            work.transition(Phase.PROMOTED, "Promoted", "canary at 100 and healthy")
        else:
            status.paused_reason = PauseReason.AWAITING_PROMOTION
            status.paused_elapsed_seconds = elapsed
            work.transition(
                Phase.PAUSED,
                "AwaitingPromotion",
                f"schedule ends at canary weight {status.weight}; waiting for canaryctl promote",
            )
        return
    _advance(work, following, "StepAdvanced")


def _count_analysis(work: RolloutPass, current: AnalysisResult) -> bool:
    """Record a new evaluation; True when it ended the step (rollback or pause)."""
    status = work.status
    if current.verdict == Verdict.NOT_YET:
        return False  # not an evaluation: counts nothing, resets nothing; a step end still waits for one
    if current.evaluated_at is not None and current.evaluated_at == status.last_analysis_at:
        return False
    status.last_analysis_at = current.evaluated_at
    status.last_checks = current.checks
    status.last_traffic_share = current.traffic_share
    status.last_verdict = LastVerdict(verdict=current.verdict, reason=current.reason)
    analysis = work.policy.spec.analysis
    if current.verdict == Verdict.FAIL:
        status.consecutive_failures += 1
        status.consecutive_inconclusive = 0
        status.inconclusive_since = None
        status.counters.analysis_failures += 1
        limit = analysis.failure_limit if analysis is not None else 1
        if status.consecutive_failures >= limit:
            work.start_rollback(
                "AnalysisFailed",
                f"analysis failed at weight {status.weight} ({status.consecutive_failures} in a row): {current.reason}",
            )
            return True
        work.note("AnalysisFailed", f"{status.consecutive_failures}/{limit} failures in a row: {current.reason}")
        return False
    status.consecutive_failures = 0
    if current.verdict == Verdict.PASS:
        status.consecutive_inconclusive = 0
        status.inconclusive_since = None
        return False
    status.consecutive_inconclusive += 1
    if status.inconclusive_since is None:
        status.inconclusive_since = work.now
    limit_value = analysis.max_inconclusive if analysis is not None else None
    if limit_value is None or status.phase == Phase.PAUSED:
        return False
    if isinstance(limit_value, int):
        reached = status.consecutive_inconclusive >= limit_value
        described = f"{status.consecutive_inconclusive} inconclusive analyses in a row"
    else:
        seconds = (work.now - status.inconclusive_since).total_seconds()
        reached = seconds >= parse_go_duration(limit_value)
        described = f"inconclusive for {int(seconds)}s"
    if not reached:
        return False
    assert analysis is not None
    if analysis.on_inconclusive == "rollback":
        work.start_rollback("InconclusiveLimit", f"{described} (maxInconclusive {limit_value}): {current.reason}")
    else:
        status.paused_reason = PauseReason.INCONCLUSIVE
        if status.step_started_at is not None:
            status.paused_elapsed_seconds = (work.now - status.step_started_at).total_seconds()
        work.transition(
            Phase.PAUSED,
            "AnalysisInconclusive",
            f"{described} (maxInconclusive {limit_value}); paused: {current.reason}",
            warning=True,
        )
    return True


def _advance(work: RolloutPass, index: int, reason: str) -> None:
    status = work.status
    status.step_index = index
    status.step_started_at = None
    status.paused_elapsed_seconds = None
    status.counters.steps_advanced += 1
    weight = work.steps[index]
    if work.write_weight(weight):
        work.transition(Phase.PROGRESSING, reason, f"step {index + 1}/{len(work.steps)}: canary weight {weight}")


def _promote(work: RolloutPass) -> None:
    status = work.status
    last = len(work.steps) - 1
    status.paused_reason = None
    if next_index(work) is not None:
        _advance(work, last, "Promoting")
        status.paused_reason = PauseReason.PROMOTE_REQUESTED
        return
    if status.write_pending:
        return
    work.transition(Phase.PROMOTED, "Promoted", f"promoted at canary weight {status.weight}")


def rolling_back(work: RolloutPass) -> None:
    """RollingBack: write the original route again until it is live, then finish the rollback."""
    status = work.status
    if status.original is None:
        work.finish_rollback()
        return
    if work.live_destinations() == status.original.destinations:
        work.finish_rollback()
        return
    if status.write_pending and work.live_weights not in (status.previous_weights, status.expected_weights):
        work.note("RestoreRetried", "the route changed during rollback; restoring the original anyway")
    if status.write_pending:
        status.counters.writes_repeated += 1
    work.write_restore()
