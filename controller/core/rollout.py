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
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from controller.core.dataplane import DataPlane, data_plane_report
from controller.core.durations import parse_go_duration
from controller.core.policy import CanaryPolicy
from controller.core.routes import (
    ResolvedRoute,
    current_weights,
    resolve_route,
    route_destinations,
    route_pointer,
    with_canary_weight,
)
from controller.errors import RouteResolutionError

HISTORY_LIMIT = 50
PROCESSED_COMMANDS_LIMIT = 50
PENDING_ALERTS_LIMIT = 50
ALERT_LOG_LIMIT = 50


class Phase(StrEnum):
    """Where a rollout run stands."""

    PENDING = "Pending"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    PROMOTED = "Promoted"
    ROLLING_BACK = "RollingBack"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"
    ABORTED = "Aborted"


TERMINAL_PHASES = frozenset({Phase.PROMOTED, Phase.ROLLED_BACK, Phase.FAILED, Phase.ABORTED})


class CommandKind(StrEnum):
    """What a person can ask for."""

    PAUSE = "pause"
    RESUME = "resume"
    PROMOTE = "promote"
    ABORT = "abort"
    RETRY = "retry"


class Verdict(StrEnum):
    """Outcome of an analysis."""

    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    # The step is too young for its window to hold two scrapes of every counter: no evaluation yet. It holds
    # the step without counting as a failure, as inconclusive or as no data (docs/analysis.md).
    NOT_YET = "not-yet"


class Stall(StrEnum):
    """Why a rollout that is not terminal does not move on: a short cause for metrics and once-per-cause Events.

    ``RolloutStatus.message`` holds the same cause in full, in words.
    """

    WAITING_FOR_TARGET = "WaitingForTarget"
    CANARY_NOT_READY = "CanaryNotReady"
    AWAITING_ANALYSIS = "AwaitingAnalysis"
    PAUSED = "Paused"
    DRIFT = "Drift"
    INCONCLUSIVE = "Inconclusive"
    AWAITING_PROMOTION = "AwaitingPromotion"


class _Data(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )


class Command(_Data):
    """A manual command, recorded durably (an annotation) until the controller consumes it."""

    id: str
    kind: CommandKind
    by: str | None = None
    at: datetime | None = None


class AnalysisResult(_Data):
    """The analysis verdict for one step of one run.

    ``evaluated_at`` identifies one evaluation, so it is counted once however many passes see it (None:
    every pass counts as a new one). ``window_end_gate`` is True when the evaluation covered the step up to
    its full duration: only such a PASS lets the step advance.
    """

    run_id: str
    step_index: int
    verdict: Verdict
    reason: str = ""
    evaluated_at: datetime | None = None
    checks: list[dict[str, Any]] = Field(default_factory=list)
    traffic_share: dict[str, Any] | None = Field(
        None, description="The canary's share of new connections in the window against its weight (traffic_share)."
    )


class Observations(_Data):
    """What the service saw this pass."""

    revision: str
    route_revision: str | None = Field(
        None, description="Hash of what traffic is moved between (route, destinations, canary workload)."
    )
    target: dict[str, Any] | None = None
    target_missing: str | None = None
    target_namespace: str = "default"
    canary_ready: bool = True
    canary_message: str = ""
    analysis: AnalysisResult | None = None
    commands: list[Command] = Field(default_factory=list)


class RouteSnapshot(_Data):
    """The selected route's destination list as the run found it, for exact restore.

    Each run takes its own snapshot when it first writes. A run that replaces an unfinished one (a new
    revision mid-run, or a retry after Failed) first restores the replaced run's snapshot, so its own is that
    same route; a run after Promoted, RolledBack or Aborted starts from the route as it is then, never from an
    older run's snapshot. ``target`` fingerprints which route it is (object and route selector).
    """

    pointer: str
    destinations: list[Any]
    target: str = ""


def target_key(policy: CanaryPolicy) -> str:
    """Fingerprint of the route the policy edits (object and route selector): a route snapshot belongs to it."""
    target = policy.spec.target.model_dump(mode="json", include={"virtual_service", "tcp_route", "route"})
    payload = json.dumps(target, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


class HistoryEntry(_Data):
    """One phase transition or notable decision."""

    time: datetime
    from_phase: Phase | None = Field(None, alias="from")
    to_phase: Phase = Field(alias="to")
    reason: str
    message: str = ""


class Counters(_Data):
    """Running totals for the current run."""

    steps_advanced: int = 0
    analysis_failures: int = 0
    drifts: int = 0
    writes: int = 0
    writes_repeated: int = 0
    transitions: int = 0


ConditionType = Literal["Ready", "Succeeded"]
ConditionValue = Literal["True", "False", "Unknown"]


class Condition(_Data):
    """A Kubernetes-style condition, so ``kubectl wait --for=condition=Succeeded`` works."""

    type: ConditionType
    status: ConditionValue
    reason: str
    message: str = ""
    last_transition_time: datetime


class PendingAlert(_Data):
    """An alert decided and persisted with its decision, waiting for delivery (the outbox)."""

    key: str
    name: str
    severity: Literal["critical", "warning", "info"]
    summary: str
    reason: str
    from_phase: Phase | None = None
    to_phase: Phase
    step_index: int
    weight: int | None = None
    run_id: str
    created_at: datetime
    checks: list[dict[str, Any]] = Field(default_factory=list)


class AlertRecord(_Data):
    """The final outcome of one alert at one sink."""

    key: str
    name: str
    sink: str
    result: Literal["sent", "failed", "skipped"]
    attempts: int = 0
    error: str | None = None
    at: datetime


class FiringAlert(_Data):
    """An alert Alertmanager holds as firing: re-posted while it lasts, resolved by a later promotion."""

    alert: PendingAlert
    route: str
    posted_at: datetime


class RolloutStatus(_Data):
    """Everything the controller needs to resume a run after a crash."""

    phase: Phase = Phase.PENDING
    revision: str | None = None
    route_revision: str | None = None
    run_id: str | None = None
    run_number: int = 0
    step_index: int = -1
    weight: int | None = None
    step_started_at: datetime | None = None
    paused_elapsed_seconds: float | None = None
    pending_since: datetime | None = None
    paused_reason: str | None = None
    stall: Stall | None = Field(None, description="Why a rollout that is not terminal does not move on, if so.")
    schedule: list[int] | None = Field(None, description="The steps the run follows (the policy's, as last seen).")
    rollback_reason: str | None = None
    rollback_ends_in: Phase | None = None
    original: RouteSnapshot | None = None
    write_pending: bool = False
    data_plane: str | None = Field(
        None, description="What the route's status says of the last write reaching the data plane, in words."
    )
    data_plane_since: datetime | None = Field(None, description="When the last write began to wait for it.")
    expected_weights: list[int] | None = None
    previous_weights: list[int] | None = None
    counters: Counters = Field(default_factory=Counters)
    history: list[HistoryEntry] = Field(default_factory=list)
    processed_commands: list[str] = Field(default_factory=list)
    last_verdict: str | None = None
    last_analysis_at: datetime | None = None
    last_checks: list[dict[str, Any]] = Field(default_factory=list)
    last_traffic_share: dict[str, Any] | None = Field(
        None, description="The canary's share of new connections at the last evaluation, against its weight."
    )
    consecutive_failures: int = 0
    consecutive_inconclusive: int = 0
    inconclusive_since: datetime | None = None
    last_error: str | None = None
    message: str = ""
    pending_alerts: list[PendingAlert] = Field(default_factory=list)
    alert_log: list[AlertRecord] = Field(default_factory=list)
    firing_alerts: list[FiringAlert] = Field(default_factory=list)
    observed_generation: int | None = None
    step: str = Field("", description="Display form of the step, '2/4', for printer columns.")
    conditions: list[Condition] = Field(default_factory=list)


class WriteRoute(_Data):
    """Replace the selected route's destination list, only if it still equals ``expect``."""

    type: Literal["WriteRoute"] = "WriteRoute"
    pointer: str
    destinations: list[Any]
    expect: list[Any]
    purpose: Literal["step", "restore"]
    weight: int | None = None


class RecordEvent(_Data):
    """A Kubernetes Event on the policy (or the target in file mode)."""

    type: Literal["RecordEvent"] = "RecordEvent"
    reason: str
    message: str
    event_type: Literal["Normal", "Warning"] = "Normal"


class SendAlert(_Data):
    """Tell people (issue 5 routes it to sinks). ``key`` dedupes it within the run."""

    type: Literal["SendAlert"] = "SendAlert"
    key: str
    name: str
    severity: Literal["critical", "warning", "info"]
    summary: str
    reason: str
    from_phase: Phase | None
    to_phase: Phase
    step_index: int
    weight: int | None


Effect = WriteRoute | RecordEvent | SendAlert


class Decision(_Data):
    """The new status and the effects to apply after it is persisted."""

    status: RolloutStatus
    effects: list[WriteRoute | RecordEvent | SendAlert] = Field(default_factory=list)


def with_conditions(status: RolloutStatus, now: datetime, step_count: int) -> RolloutStatus:
    """The status with its Ready and Succeeded conditions derived from the phase, and ``step`` filled in.

    Ready is True while the controller is in control (Pending, Progressing, Paused, and every terminal
    phase but Failed). Succeeded is True once Promoted, False once RolledBack, Aborted or Failed, and
    Unknown while the run is under way. A condition's transition time changes only when its value does.
    """
    phase = status.phase
    succeeded: ConditionValue = "Unknown"
    if phase == Phase.PROMOTED:
        succeeded = "True"
    elif phase in {Phase.ROLLED_BACK, Phase.ABORTED, Phase.FAILED}:
        succeeded = "False"
    ready: ConditionValue = "False" if phase == Phase.FAILED else "True"
    message = status.last_error if phase == Phase.FAILED and status.last_error else status.message
    wanted: list[tuple[ConditionType, ConditionValue, str]] = [
        ("Ready", ready, "Failed" if ready == "False" else "InControl"),
        ("Succeeded", succeeded, str(phase)),
    ]
    previous = {c.type: c for c in status.conditions}
    conditions = []
    for kind, value, reason in wanted:
        old = previous.get(kind)
        conditions.append(
            Condition(
                type=kind,
                status=value,
                reason=reason,
                message=message,
                last_transition_time=now if old is None or old.status != value else old.last_transition_time,
            )
        )
    step = f"{status.step_index + 1}/{step_count}" if status.step_index >= 0 else f"0/{step_count}"
    return status.model_copy(update={"conditions": conditions, "step": step})


# What a passing evaluation changes in the status without changing any decision: the last measurements.
_OBSERVATIONS = ("last_analysis_at", "last_checks", "last_verdict", "last_traffic_share")
STATUS_REFRESH_SECONDS = 60.0


def worth_saving(saved: RolloutStatus, new: RolloutStatus, now: datetime) -> bool:
    """Whether a pass must write ``new`` over ``saved``.

    Every change is written, except a passing evaluation that changes only the last measurements (the
    verdict was PASS before and is PASS now, nothing else moved): that one is written at most every
    ``STATUS_REFRESH_SECONDS``, so a healthy rollout's status is written when its weight or phase changes
    and refreshed once a minute, not at every check. Passing evaluations are idempotent (counting one
    twice after a restart changes nothing), so skipping their write is safe.
    """
    if new == saved:
        return False
    unchanged = new.model_copy(update={name: getattr(saved, name) for name in _OBSERVATIONS})
    if unchanged != saved:
        return True
    passing = all((s.last_verdict or "").startswith(f"{Verdict.PASS}") for s in (saved, new))
    if not passing or saved.last_analysis_at is None:
        return True
    return (now - saved.last_analysis_at).total_seconds() >= STATUS_REFRESH_SECONDS


def route_revision_of(policy: CanaryPolicy) -> str:
    """A short stable hash of *between what* traffic moves: the route, both destinations, the canary workload.

    Tuning fields (schedule, analysis, alerts, labels) are not part of it: they apply to the run in flight.
    """
    payload = {
        "target": policy.spec.target.model_dump(mode="json"),
        "canary": policy.spec.workload.canary.model_dump(mode="json") if policy.spec.workload.canary else None,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def revision_of(policy: CanaryPolicy, canary_template: Mapping[str, Any] | None = None) -> str:
    """A short stable hash of *what is rolled out*: the route revision and the canary pod template.

    A new value starts a new run (after Promoted, only a new route revision does: see ``_new_revision``).
    """
    payload = {"route": route_revision_of(policy), "template": canary_template}
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
    return digest[:16]


class _Pass:
    """Mutable working state of one decision; only ``decide`` uses it."""

    def __init__(self, policy: CanaryPolicy, status: RolloutStatus, obs: Observations, now: datetime) -> None:
        self.policy = policy
        self.status = status.model_copy(deep=True)
        self.obs = obs
        self.now = now
        self.effects: list[WriteRoute | RecordEvent | SendAlert] = []
        self.resolved: ResolvedRoute | None = None
        self.live_weights: list[int] | None = None

    # -- bookkeeping -------------------------------------------------------------------------------

    def transition(self, to: Phase, reason: str, message: str = "", *, warning: bool = False) -> None:
        before = self.status.phase
        self.status.phase = to
        # Every phase carries its own message: a RolledBack status never still shows the last step's countdown.
        self.status.message = message or f"{before} -> {to}"
        self.status.history.append(
            HistoryEntry(time=self.now, from_phase=before, to_phase=to, reason=reason, message=message)
        )
        del self.status.history[:-HISTORY_LIMIT]
        self.event(reason, message or f"{before} -> {to}", warning=warning)
        self.status.counters.transitions += 1
        alert = _ALERTS_BY_REASON.get(reason) or _ALERTS_BY_PHASE.get(to)
        if alert is not None:
            name, severity = alert
            pending = PendingAlert(
                key=f"{self.status.run_id}/{name}/{self.status.counters.transitions}",
                name=name,
                severity=severity,
                summary=message or f"{before} -> {to}",
                reason=reason,
                from_phase=before,
                to_phase=to,
                step_index=self.status.step_index,
                weight=self.status.weight,
                run_id=self.status.run_id or "",
                created_at=self.now,
                checks=[c for c in self.status.last_checks if c.get("verdict") != "pass"],
            )
            self.status.pending_alerts.append(pending)
            del self.status.pending_alerts[:-PENDING_ALERTS_LIMIT]
            # The effect is the same alert, for logs and metrics; the outbox above is what gets delivered.
            self.effects.append(SendAlert(**pending.model_dump(include=set(SendAlert.model_fields) - {"type"})))

    def note(self, reason: str, message: str) -> None:
        """A history entry without a phase change (commands refused, writes repeated, ...)."""
        phase = self.status.phase
        self.status.history.append(
            HistoryEntry(time=self.now, from_phase=phase, to_phase=phase, reason=reason, message=message)
        )
        del self.status.history[:-HISTORY_LIMIT]

    def event(self, reason: str, message: str, *, warning: bool = False) -> None:
        self.effects.append(RecordEvent(reason=reason, message=message, event_type="Warning" if warning else "Normal"))

    # -- route helpers -----------------------------------------------------------------------------

    @property
    def steps(self) -> list[int]:
        return self.policy.spec.schedule.steps

    def resolve(self) -> bool:
        """Resolve the route on the live object; False (and Failed) when impossible."""
        if self.obs.target is None:
            self.fail("TargetNotFound", self.obs.target_missing or "the target object does not exist")
            return False
        target = self.policy.spec.target
        try:
            self.resolved = resolve_route(
                self.obs.target,
                kind=target.kind,
                namespace=self.obs.target_namespace,
                target=target,
                where=f"{target.kind} {self.obs.target_namespace}/{target.ref.name}",
            )
        except RouteResolutionError as exc:
            self.fail("RouteUnresolvable", "; ".join(exc.problems))
            return False
        self.live_weights = [w.weight for w in current_weights(self.obs.target, self.resolved)]
        return True

    def live_destinations(self) -> list[Any]:
        assert self.obs.target is not None
        assert self.resolved is not None
        return route_destinations(self.obs.target, self.resolved)

    def write_weight(self, weight: int) -> bool:
        """Decide the write that puts the canary at ``weight``; False (and Failed) when impossible."""
        assert self.obs.target is not None
        assert self.resolved is not None
        if self.status.original is None:
            self.status.original = RouteSnapshot(
                pointer=route_pointer(self.resolved),
                destinations=self.live_destinations(),
                target=target_key(self.policy),
            )
        target = self.policy.spec.target
        try:
            written = with_canary_weight(self.obs.target, self.resolved, target, weight, where="live object")
        except RouteResolutionError as exc:
            self.fail("RouteUnresolvable", "; ".join(exc.problems))
            return False
        new_resolved = resolve_route(
            written, kind=self.resolved.kind, namespace=self.obs.target_namespace, target=target, where="planned"
        )
        self._write(
            WriteRoute(
                pointer=route_pointer(self.resolved),
                destinations=route_destinations(written, new_resolved),
                expect=self.live_destinations(),
                purpose="step",
                weight=weight,
            ),
            [w.weight for w in current_weights(written, new_resolved)],
        )
        self.status.weight = weight
        return True

    def write_restore(self) -> None:
        assert self.status.original is not None
        self._write(
            WriteRoute(
                pointer=self.status.original.pointer,
                destinations=self.status.original.destinations,
                expect=self.live_destinations(),
                purpose="restore",
            ),
            None,
        )

    def _write(self, effect: WriteRoute, expected: list[int] | None) -> None:
        self.status.write_pending = True
        self.status.expected_weights = expected
        self.status.previous_weights = self.live_weights
        self.status.counters.writes += 1
        self.effects.append(effect)

    # -- outcomes ----------------------------------------------------------------------------------

    def fail(self, reason: str, message: str) -> None:
        self.status.last_error = message
        self.status.write_pending = False
        self.transition(Phase.FAILED, reason, message, warning=True)

    def start_rollback(self, reason: str, message: str, ends_in: Phase = Phase.ROLLED_BACK) -> None:
        self.status.rollback_reason = reason
        self.status.rollback_ends_in = ends_in
        self.transition(Phase.ROLLING_BACK, reason, message, warning=True)
        if self.status.original is None:
            # Nothing was ever written in this run: the original route is still in place.
            self.finish_rollback()
        else:
            self.write_restore()

    def finish_rollback(self) -> None:
        ends_in = self.status.rollback_ends_in or Phase.ROLLED_BACK
        self.status.write_pending = False
        self.transition(
            ends_in,
            "RolledBack" if ends_in == Phase.ROLLED_BACK else "Aborted",
            f"original route restored ({self.status.rollback_reason})",
            warning=True,
        )
        self.status.weight = None

    def new_run(self, reason: str) -> None:
        # An unfinished run (mid-run, or Failed wherever it stopped) may still send traffic to a canary being
        # replaced: keep its snapshot so the new run first puts that route back. After Promoted, RolledBack or
        # Aborted the route is as that run left it on purpose: the new run starts from the route as it is.
        unfinished = self.status.phase not in {Phase.PROMOTED, Phase.ROLLED_BACK, Phase.ABORTED}
        keep_original = (
            unfinished and self.status.original is not None and self.status.original.target == target_key(self.policy)
        )
        number = self.status.run_number + 1
        before = self.status
        self.status = RolloutStatus(
            phase=before.phase,
            revision=self.obs.revision,
            route_revision=self.obs.route_revision,
            schedule=list(self.steps),
            run_id=f"{self.obs.revision[:8]}-{number}",
            run_number=number,
            pending_since=self.now,
            original=before.original if keep_original else None,
            history=before.history,
            processed_commands=before.processed_commands,
            pending_alerts=before.pending_alerts,
            alert_log=before.alert_log,
            firing_alerts=before.firing_alerts,
        )
        self.transition(Phase.PENDING, reason, f"run {self.status.run_id} starts")


Severity = Literal["critical", "warning", "info"]
_ALERTS_BY_PHASE: dict[Phase, tuple[str, Severity]] = {
    Phase.ROLLED_BACK: ("CanaryRolledBack", "critical"),
    Phase.ABORTED: ("CanaryRolledBack", "warning"),
    Phase.FAILED: ("CanaryFailed", "critical"),
    Phase.PROMOTED: ("CanaryPromoted", "info"),
}
_ALERTS_BY_REASON: dict[str, tuple[str, Severity]] = {
    "DriftDetected": ("CanaryDriftDetected", "warning"),
    "AnalysisInconclusive": ("CanaryPaused", "warning"),
    "Paused": ("CanaryPaused", "info"),
    "AwaitingPromotion": ("CanaryPaused", "info"),
}


def decide(policy: CanaryPolicy, status: RolloutStatus, obs: Observations, now: datetime) -> Decision:
    """Advance one rollout by one pass. Never raises."""
    try:
        work = _Pass(policy, status, obs, now)
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


def _decide(work: _Pass) -> None:
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
        _wait_for_target(work)
        return
    if not work.resolve():
        return
    if phase == Phase.PENDING:
        _pending(work)
    elif phase == Phase.PAUSED and work.status.step_index < 0:
        _paused_before_the_steps(work)
    elif phase in {Phase.PROGRESSING, Phase.PAUSED}:
        _progressing(work)
    elif phase == Phase.ROLLING_BACK:
        _rolling_back(work)
    if work.status.phase == Phase.PAUSED:
        work.status.stall = _PAUSE_STALLS.get(work.status.paused_reason, Stall.PAUSED)


_PAUSE_STALLS: dict[str | None, Stall | None] = {
    "manual": Stall.PAUSED,
    "drift": Stall.DRIFT,
    "inconclusive": Stall.INCONCLUSIVE,
    "awaiting-promote": Stall.AWAITING_PROMOTION,
    "promote": None,  # moving to the last step
}


def _new_revision(work: _Pass) -> None:
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


def _index_for(steps: list[int], weight: int) -> int:
    """The schedule position of a weight: the last step at or below it (0 when it is below every step)."""
    below = [index for index, step in enumerate(steps) if step <= weight]
    return below[-1] if below else 0


def _next_index(work: _Pass) -> int | None:
    """The next step above the weight the run holds, or None when no step is above it (the last step)."""
    weight = work.status.weight if work.status.weight is not None else -1
    return next((index for index, step in enumerate(work.steps) if step > weight), None)


def _follow_schedule(work: _Pass) -> None:
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
    status.step_index = _index_for(steps, status.weight)
    following = _next_index(work)
    work.note(
        "ScheduleChanged",
        f"the schedule is now {steps}; the run holds weight {status.weight}, "
        + (f"next step {steps[following]}" if following is not None else "its last step"),
    )


def _applied(work: _Pass, command: Command) -> None:
    work.note("CommandApplied", f"{command.kind} ({command.id}) applied")


def _refuse(work: _Pass, command: Command, why: str) -> None:
    work.note("CommandRefused", f"{command.kind} ({command.id}) refused: {why}")
    work.event("CommandRefused", f"{command.kind} refused: {why}", warning=True)


def _apply_command(work: _Pass, command: Command) -> None:
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
        status.paused_reason = "manual"
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
        status.paused_reason = "promote"
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


def _resume(work: _Pass, by: str) -> None:
    status = work.status
    reason = status.paused_reason
    status.paused_reason = None
    if status.step_index < 0:
        work.transition(Phase.PENDING, "Resumed", f"resumed{by}")
        return
    if reason == "drift":
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


def _inconsistency(work: _Pass) -> str:
    status = work.status
    if status.step_index >= len(work.steps) or status.step_index < -1:
        return f"step index {status.step_index} outside the schedule of {len(work.steps)} steps"
    if (
        status.step_index >= 0
        and status.weight is not None
        and status.weight != work.steps[status.step_index]
        and _index_for(work.steps, status.weight) != status.step_index
    ):
        return f"weight {status.weight} is not step {status.step_index + 1}'s weight {work.steps[status.step_index]}"
    if status.phase != Phase.PENDING and status.run_id is None:
        return "no run id"
    return ""


def _waited(work: _Pass) -> float:
    if work.status.pending_since is None:
        work.status.pending_since = work.now
    return (work.now - work.status.pending_since).total_seconds()


def _wait_for_target(work: _Pass) -> None:
    """Before anything is written, a missing target may still appear (GitOps ordering): wait for it."""
    waited = _waited(work)
    deadline = work.policy.spec.workload.progress_deadline_seconds
    missing = work.obs.target_missing or "the target object does not exist"
    if waited > deadline:
        work.fail("TargetNotFound", f"{missing} (waited {int(waited)}s)")
    else:
        work.status.message = f"waiting for the target: {missing}"
        work.status.stall = Stall.WAITING_FOR_TARGET


def _restoring_before_the_run(work: _Pass) -> bool:
    """A new revision arrived mid-run: the route still sends the old run's weight to a canary that is being
    replaced. Put the original route back first (again, until it is live); the new run starts from it."""
    status = work.status
    if status.original is None or work.live_destinations() == status.original.destinations:
        return False
    work.write_restore()
    status.message = "new revision: restoring the original route before the new run starts"
    return True


def _paused_before_the_steps(work: _Pass) -> None:
    """Paused before step 1: start nothing, but finish putting the original route back if a new revision
    interrupted a run, since the old run's weight still points at a canary being replaced."""
    if _restoring_before_the_run(work):
        work.status.message += " (paused: no step starts until resumed)"
        return
    work.status.write_pending = False


def _pending(work: _Pass) -> None:
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


def _write_settled(work: _Pass) -> bool:
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
    status.paused_reason = "drift"
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


def _reached_the_data_plane(work: _Pass) -> bool:
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


def _progressing(work: _Pass) -> None:
    status = work.status
    if status.phase == Phase.PAUSED and status.paused_reason == "drift":
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
    if status.paused_reason == "promote":
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
    following = _next_index(work)
    if following is None:
        if status.weight == 100:
            work.transition(Phase.PROMOTED, "Promoted", "canary at 100 and healthy")
        else:
            status.paused_reason = "awaiting-promote"
            status.paused_elapsed_seconds = elapsed
            work.transition(
                Phase.PAUSED,
                "AwaitingPromotion",
                f"schedule ends at canary weight {status.weight}; waiting for canaryctl promote",
            )
        return
    _advance(work, following, "StepAdvanced")


def _count_analysis(work: _Pass, current: AnalysisResult) -> bool:
    """Record a new evaluation; True when it ended the step (rollback or pause)."""
    status = work.status
    if current.verdict == Verdict.NOT_YET:
        return False  # not an evaluation: counts nothing, resets nothing; a step end still waits for one
    if current.evaluated_at is not None and current.evaluated_at == status.last_analysis_at:
        return False
    status.last_analysis_at = current.evaluated_at
    status.last_checks = current.checks
    status.last_traffic_share = current.traffic_share
    status.last_verdict = f"{current.verdict}: {current.reason}" if current.reason else str(current.verdict)
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
        status.paused_reason = "inconclusive"
        if status.step_started_at is not None:
            status.paused_elapsed_seconds = (work.now - status.step_started_at).total_seconds()
        work.transition(
            Phase.PAUSED,
            "AnalysisInconclusive",
            f"{described} (maxInconclusive {limit_value}); paused: {current.reason}",
            warning=True,
        )
    return True


def _advance(work: _Pass, index: int, reason: str) -> None:
    status = work.status
    status.step_index = index
    status.step_started_at = None
    status.paused_elapsed_seconds = None
    status.counters.steps_advanced += 1
    weight = work.steps[index]
    if work.write_weight(weight):
        work.transition(Phase.PROGRESSING, reason, f"step {index + 1}/{len(work.steps)}: canary weight {weight}")


def _promote(work: _Pass) -> None:
    status = work.status
    last = len(work.steps) - 1
    status.paused_reason = None
    if _next_index(work) is not None:
        _advance(work, last, "Promoting")
        status.paused_reason = "promote"
        return
    if status.write_pending:
        return
    work.transition(Phase.PROMOTED, "Promoted", f"promoted at canary weight {status.weight}")


def _rolling_back(work: _Pass) -> None:
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
