"""The rollout state machine: ``decide(policy, status, observations, now) -> Decision``.

A total function: whatever it is given, it returns a new status and a list of effects (plain data); an
unexpected input yields a ``Failed`` status with the reason, never an exception.

Crash safety rests on two rules the service layer follows: the returned status is persisted *before* any
effect is applied, and every effect is idempotent. Writes to the route go through a small protocol
recorded in the status:

* deciding a write sets ``writePending`` with ``expectedWeights`` (what the route will show) and
  ``previousWeights`` (what it showed when the write was decided);
* on the next pass, live weights equal to ``expectedWeights`` confirm the write (the step's clock starts
  then); equal to ``previousWeights`` mean it never happened (a crash or a lost race), so it is issued
  again; anything else is someone else's edit: **drift**, the rollout pauses and nothing is written back.

Phases::

    Pending --ready--> Progressing --last step, pass--> Promoted
       |                 |   ^  \\--fail / abort--> RollingBack --restored--> RolledBack | Aborted
       |                 v   |
       |               Paused (person, drift, awaiting promote)
       \\--deadline--> RollingBack
    any --target gone / route unresolvable--> Failed

Terminal phases (Promoted, RolledBack, Failed, Aborted) absorb everything but ``retry`` and a new revision.

The machine is three modules: this one (``decide``: revisions, commands, the status's consistency, then one
phase handler), :mod:`controller.core.rollout_phases` (the phase handlers) and
:mod:`controller.core.rollout_pass` (the working state they share). What it reads and writes is the status
model, :mod:`controller.core.status`; what it asks the world to do, :mod:`controller.core.effects`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from controller.core.effects import Decision, RecordEvent
from controller.core.policy import CanaryPolicy
from controller.core.rollout_pass import RolloutPass, index_for, next_index
from controller.core.rollout_phases import (
    paused_before_the_steps,
    pending,
    progressing,
    rolling_back,
    wait_for_target,
)
from controller.core.status import (
    HISTORY_LIMIT,
    PROCESSED_COMMANDS_LIMIT,
    TERMINAL_PHASES,
    Command,
    CommandKind,
    HistoryEntry,
    Observations,
    PauseReason,
    Phase,
    RolloutStatus,
    Stall,
)

__all__ = ["decide", "revision_of", "route_revision_of"]


def route_revision_of(policy: CanaryPolicy) -> str:
    """A short stable hash of *between what* traffic moves: the route, both destinations, the canary workload.

    Tuning fields (schedule, analysis, alerts, labels) are not part of it: they apply to the run in flight.
    """
    payload = {
        "target": policy.spec.target.model_dump(mode="json"),
        "canary": policy.spec.workload.canary.model_dump(mode="json") if policy.spec.workload.canary else None,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def revision_of(
    policy: CanaryPolicy, canary_template: Mapping[str, Any] | None = None, *, route_revision: str | None = None
) -> str:
    """A short stable hash of *what is rolled out*: the route revision and the canary pod template.

    A new value starts a new run (after Promoted, only a new route revision does: see ``_new_revision``).
    ``route_revision``: ``route_revision_of(policy)`` when the caller has it already.
    """
    route = route_revision if route_revision is not None else route_revision_of(policy)
    payload = {"route": route, "template": canary_template}
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
    return digest[:16]


def decide(policy: CanaryPolicy, status: RolloutStatus, obs: Observations, now: datetime) -> Decision:
    """Advance one rollout by one pass. Never raises."""
    try:
        work = RolloutPass(policy, status, obs, now)
        _decide(work)
        return Decision(status=work.status, effects=work.effects)
    except Exception as exc:  # the contract: a Failed status, never an exception
        failed = status.model_copy(deep=True)
        failed.phase = Phase.FAILED
        failed.write_pending = False
        failed.last_error = f"internal error: {type(exc).__name__}: {exc}"
        failed.history.append(
            HistoryEntry(
                time=now,
                from_phase=status.phase,
                to_phase=Phase.FAILED,
                reason="InternalError",
                message=failed.last_error,
            )
        )
        del failed.history[:-HISTORY_LIMIT]
        return Decision(
            status=failed,
            effects=[RecordEvent(reason="InternalError", message=failed.last_error, event_type="Warning")],
        )


def _decide(work: RolloutPass) -> None:
    work.status.stall = None
    if work.status.revision != work.obs.revision:
        _new_revision(work)
    for command in work.obs.commands:
        # work.status may be replaced (retry starts a new run): always go through work.status.
        processed = work.status.processed_commands
        if command.id in processed:
            continue
        processed.append(command.id)
        del processed[:-PROCESSED_COMMANDS_LIMIT]
        _apply_command(work, command)
    phase = work.status.phase
    if phase in TERMINAL_PHASES:
        return
    _follow_schedule(work)
    problem = _inconsistency(work)
    if problem:
        work.fail("InconsistentStatus", f"the persisted status does not fit the policy: {problem}")
        return
    if phase == Phase.PENDING and work.obs.target is None and work.status.original is None:
        wait_for_target(work)
        return
    if not work.resolve():
        return
    if phase == Phase.PENDING:
        pending(work)
    elif phase == Phase.PAUSED and work.status.step_index < 0:
        paused_before_the_steps(work)
    elif phase in {Phase.PROGRESSING, Phase.PAUSED}:
        progressing(work)
    elif phase == Phase.ROLLING_BACK:
        rolling_back(work)
    if work.status.phase == Phase.PAUSED:
        work.status.stall = _PAUSE_STALLS.get(work.status.paused_reason, Stall.PAUSED)


_PAUSE_STALLS: dict[PauseReason | None, Stall | None] = {
    PauseReason.MANUAL: Stall.PAUSED,
    PauseReason.DRIFT: Stall.DRIFT,
    PauseReason.INCONCLUSIVE: Stall.INCONCLUSIVE,
    PauseReason.AWAITING_PROMOTION: Stall.AWAITING_PROMOTION,
    PauseReason.PROMOTE_REQUESTED: None,  # moving to the last step
}


def _new_revision(work: RolloutPass) -> None:
    """What is rolled out changed (or this is the first pass). Tuning fields never get here.

    After Promoted the route stays as promotion left it, whatever changes: a new pod template of the canary
    that already carries the traffic is reported, not rolled out. A change of the route or destinations
    starts a new run from the route as it is.
    """
    status, obs = work.status, work.obs
    if status.revision is None:
        work.new_run("RolloutStarted")
        return
    if status.route_revision is None or obs.route_revision is None:
        # Written by a version that hashed the whole spec: its revision cannot say what changed. Adopt the new
        # one rather than restart a run (or move a promoted route) on an upgrade of the controller.
        status.revision, status.route_revision = obs.revision, obs.route_revision
        work.note("RevisionAdopted", "status from an earlier controller version: revision recorded, run unchanged")
        return
    if status.phase == Phase.PROMOTED and status.route_revision == obs.route_revision:
        status.revision = obs.revision
        canary = work.policy.spec.workload.canary
        name = canary.name if canary is not None else "the canary"
        weight = status.weight if status.weight is not None else work.steps[-1]
        message = (
            f"{name} changed after promotion and carries {weight} % of traffic; "
            "to canary a change, point a policy at a new canary"
        )
        status.message = message
        work.note("ChangedAfterPromotion", message)
        work.event("ChangedAfterPromotion", message, warning=True)
        return
    work.new_run("NewRevision")


def _follow_schedule(work: RolloutPass) -> None:
    """A changed schedule applies from the next step: the run keeps the weight it holds and its step's clock."""
    status = work.status
    steps = work.steps
    if status.schedule is None:
        status.schedule = list(steps)
        return
    if status.schedule == steps:
        return
    status.schedule = list(steps)
    if status.step_index < 0 or status.weight is None:
        work.note("ScheduleChanged", f"the schedule is now {steps}")
        return
    status.step_index = index_for(steps, status.weight)
    following = next_index(work)
    work.note(
        "ScheduleChanged",
        f"the schedule is now {steps}; the run holds weight {status.weight}, "
        + (f"next step {steps[following]}" if following is not None else "its last step"),
    )


def _applied(work: RolloutPass, command: Command) -> None:
    work.note("CommandApplied", f"{command.kind} ({command.id}) applied")


def _refuse(work: RolloutPass, command: Command, why: str) -> None:
    work.note("CommandRefused", f"{command.kind} ({command.id}) refused: {why}")
    work.event("CommandRefused", f"{command.kind} refused: {why}", warning=True)


def _apply_command(work: RolloutPass, command: Command) -> None:
    status = work.status
    phase = status.phase
    kind = command.kind
    by = f" by {command.by}" if command.by else ""
    if phase in TERMINAL_PHASES and kind != CommandKind.RETRY:
        _refuse(work, command, f"the run is {phase}; retry or a new revision starts a new run")
        return
    if kind == CommandKind.RETRY:
        if phase not in {Phase.ROLLED_BACK, Phase.FAILED, Phase.ABORTED}:
            _refuse(work, command, f"only a RolledBack, Failed or Aborted run can be retried (it is {phase})")
            return
        _applied(work, command)
        work.new_run("Retry")
        return
    if kind == CommandKind.PAUSE:
        if phase not in {Phase.PENDING, Phase.PROGRESSING}:
            _refuse(work, command, f"only a Pending or Progressing rollout can be paused (it is {phase})")
            return
        if status.step_started_at is not None:
            status.paused_elapsed_seconds = (work.now - status.step_started_at).total_seconds()
        status.paused_reason = PauseReason.MANUAL
        _applied(work, command)
        work.transition(Phase.PAUSED, "Paused", f"paused{by}")
        return
    if kind == CommandKind.RESUME:
        if phase != Phase.PAUSED:
            _refuse(work, command, f"only a Paused rollout can be resumed (it is {phase})")
            return
        _applied(work, command)
        _resume(work, by)
        return
    if kind == CommandKind.PROMOTE:
        if phase not in {Phase.PROGRESSING, Phase.PAUSED} or status.step_index < 0:
            _refuse(work, command, f"only a rollout that has started its steps can be promoted (it is {phase})")
            return
        status.paused_reason = PauseReason.PROMOTE_REQUESTED
        _applied(work, command)
        if phase != Phase.PAUSED:
            work.transition(Phase.PAUSED, "PromoteRequested", f"promote requested{by}")
        return
    if kind == CommandKind.ABORT:
        if phase == Phase.ROLLING_BACK:
            _refuse(work, command, "the rollout is already rolling back")
            return
        status.paused_reason = None
        status.rollback_reason = f"aborted{by}"
        status.rollback_ends_in = Phase.ABORTED
        _applied(work, command)
        # The restore itself is decided below, once the live route is known.
        work.transition(Phase.ROLLING_BACK, "AbortRequested", f"abort requested{by}", warning=True)


def _resume(work: RolloutPass, by: str) -> None:
    status = work.status
    reason = status.paused_reason
    status.paused_reason = None
    if status.step_index < 0:
        work.transition(Phase.PENDING, "Resumed", f"resumed{by}")
        return
    if reason == PauseReason.DRIFT:
        # Asked to: take the route back to the current step's weight, and restart the step's clock.
        status.step_started_at = None
        status.paused_elapsed_seconds = None
        status.write_pending = False
        status.expected_weights = None
        work.transition(Phase.PROGRESSING, "Resumed", f"resumed{by}; the step's weight will be written again")
        return
    if status.paused_elapsed_seconds is not None:
        status.step_started_at = work.now - timedelta(seconds=status.paused_elapsed_seconds)
    status.paused_elapsed_seconds = None
    work.transition(Phase.PROGRESSING, "Resumed", f"resumed{by}")


def _inconsistency(work: RolloutPass) -> str:
    status = work.status
    if status.step_index >= len(work.steps) or status.step_index < -1:
        return f"step index {status.step_index} outside the schedule of {len(work.steps)} steps"
    if (
        status.step_index >= 0
        and status.weight is not None
        and status.weight != work.steps[status.step_index]
        and index_for(work.steps, status.weight) != status.step_index
    ):
        return f"weight {status.weight} is not step {status.step_index + 1}'s weight {work.steps[status.step_index]}"
    if status.phase != Phase.PENDING and status.run_id is None:
        return "no run id"
    return ""
