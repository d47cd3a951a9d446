"""The rollout's status model: what the controller persists and what a pass observes, as typed data.

``RolloutStatus`` is everything the controller needs to resume a run after a crash; it is written to the
status ConfigMap (file mode) or the CanaryPolicy's ``status`` (CRD mode) as camelCase JSON. The JSON is a
published contract: every model here reads the statuses earlier versions wrote and writes the same JSON.
Three fields are typed in memory but keep their earlier JSON form (and their JSON Schema, so the generated
CRD is unchanged):

* ``pausedReason`` is a :class:`PauseReason`, written as its bare string;
* ``lastVerdict`` is a :class:`LastVerdict` (verdict and reason), written as ``"pass: reason"``;
* each check (``lastChecks``, an alert's ``checks``) is a :class:`CheckRecord`, written with exactly the
  keys it was read or built with (unknown keys kept), as the free-form objects earlier versions wrote.

The state machine (:mod:`controller.core.rollout`) turns one status into the next; this module holds no
decision but two derivations of a status: its Kubernetes conditions (:func:`with_conditions`) and whether a
new one is worth writing (:func:`worth_saving`).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_serializer,
    model_validator,
)
from pydantic.alias_generators import to_camel

HISTORY_LIMIT = 50
PROCESSED_COMMANDS_LIMIT = 50
PENDING_ALERTS_LIMIT = 50
ALERT_LOG_LIMIT = 50

Severity = Literal["critical", "warning", "info"]
"""How urgent an alert is (the policy's ``alerts.severity`` overrides the default per alert)."""


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


class PauseReason(StrEnum):
    """Why a rollout is Paused (``pausedReason``); the values are the strings earlier versions persisted."""

    MANUAL = "manual"  # canaryctl pause
    DRIFT = "drift"  # someone else changed the route's weights
    INCONCLUSIVE = "inconclusive"  # maxInconclusive reached with onInconclusive: pause
    AWAITING_PROMOTION = "awaiting-promote"  # the schedule ends below 100: canaryctl promote finishes it
    PROMOTE_REQUESTED = "promote"  # canaryctl promote: moving to the last step


class _Data(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )


# The JSON Schemas the retyped fields had as plain strings and free-form objects: the CRD keeps them.
_STRING_SCHEMA = WithJsonSchema({"type": "string"})
_CHECKS_SCHEMA = WithJsonSchema({"items": {"additionalProperties": True, "type": "object"}, "type": "array"})


class CheckRecord(_Data):
    """One check of one evaluation, as persisted: what was measured, the threshold and the verdict.

    Built from :meth:`controller.core.judgement.CheckResult.as_dict`. It is written back with exactly the keys
    it was built or read with, unknown ones included, so statuses of every version round-trip unchanged.
    """

    model_config = ConfigDict(extra="allow")

    name: str = ""
    verdict: Verdict | None = None
    reason: str = ""
    canary_value: int | float | None = None
    stable_value: int | float | None = None
    canary_errors: int | float | None = None
    canary_connections: int | float | None = None
    stable_errors: int | float | None = None
    stable_connections: int | float | None = None
    threshold: str = ""
    queries: list[str] = Field(default_factory=list)

    @model_serializer(mode="plain")
    def _as_written(self) -> dict[str, Any]:
        # The keys it was built or read with, in field order, then unknown ones: a plain dict, serialized as the
        # free-form objects earlier versions wrote (and cheaper than a wrapped serializer, at every save).
        written = self.model_fields_set
        data = {alias: getattr(self, name) for name, alias in _CHECK_FIELDS if name in written}
        data.update(self.model_extra or {})
        return data


_CHECK_FIELDS = [(name, field.alias or name) for name, field in CheckRecord.model_fields.items()]

Checks = Annotated[list[CheckRecord], _CHECKS_SCHEMA]


class LastVerdict(_Data):
    """The last counted evaluation's verdict and its reason; persisted as ``"pass: reason"`` (or ``"pass"``).

    Reads that text back without guessing: the word before the first colon is the verdict. Text whose first
    word is no verdict (no version wrote any) reads as inconclusive with the whole text as its reason.
    """

    verdict: Verdict
    reason: str = ""

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        word, colon, rest = value.partition(":")
        if word.strip() not in {str(v) for v in Verdict}:
            return {"verdict": Verdict.INCONCLUSIVE, "reason": value}
        return {"verdict": word.strip(), "reason": rest.removeprefix(" ") if colon else ""}

    @model_serializer(mode="plain")
    def _as_text(self) -> str:
        return f"{self.verdict}: {self.reason}" if self.reason else str(self.verdict)

    def __str__(self) -> str:
        return self._as_text()


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
    checks: Checks = Field(default_factory=list)
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


ConditionType = Literal["Ready", "Succeeded", "Reconciling", "Stalled"]
ConditionValue = Literal["True", "False", "Unknown"]


class Condition(_Data):
    """A Kubernetes-style condition, so ``kubectl wait --for=condition=Succeeded`` works."""

    type: ConditionType
    status: ConditionValue
    reason: str
    message: str = ""
    last_transition_time: datetime


class Alert(_Data):
    """An alert decided and persisted with its decision, waiting for delivery (the outbox)."""

    # The docstring is the CRD's description of ``pendingAlerts`` items: keep it. The same object is also one
    # of the decision's effects (``type`` names that effect and is not persisted), so logs and metrics see
    # exactly what is delivered. ``key`` identifies it: a sink seeing the same key twice sees a retry.
    type: ClassVar[Literal["SendAlert"]] = "SendAlert"

    key: str
    name: str
    severity: Severity
    summary: str
    reason: str
    from_phase: Phase | None = None
    to_phase: Phase
    step_index: int
    weight: int | None = None
    run_id: str
    created_at: datetime
    checks: Checks = Field(default_factory=list)


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

    alert: Alert
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
    paused_reason: Annotated[PauseReason, _STRING_SCHEMA] | None = None
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
    last_verdict: Annotated[LastVerdict, _STRING_SCHEMA] | None = None
    last_analysis_at: datetime | None = None
    last_checks: Checks = Field(default_factory=list)
    last_traffic_share: dict[str, Any] | None = Field(
        None, description="The canary's share of new connections at the last evaluation, against its weight."
    )
    consecutive_failures: int = 0
    consecutive_inconclusive: int = 0
    inconclusive_since: datetime | None = None
    last_error: str | None = None
    message: str = ""
    pending_alerts: list[Alert] = Field(default_factory=list)
    alert_log: list[AlertRecord] = Field(default_factory=list)
    firing_alerts: list[FiringAlert] = Field(default_factory=list)
    observed_generation: int | None = None
    step: str = Field("", description="Display form of the step, '2/4', for printer columns.")
    conditions: list[Condition] = Field(default_factory=list)


_RECONCILING = frozenset({Phase.PENDING, Phase.PROGRESSING, Phase.ROLLING_BACK})
_STALLED = frozenset({Phase.ROLLED_BACK, Phase.ABORTED, Phase.FAILED})


def with_conditions(status: RolloutStatus, now: datetime, step_count: int) -> RolloutStatus:
    """The status with its Ready and Succeeded conditions derived from the phase, and ``step`` filled in.

    Ready is True while the controller is in control (Pending, Progressing, Paused, and every terminal
    phase but Failed). Succeeded is True once Promoted, False once RolledBack, Aborted or Failed, and
    Unknown while the run is under way. Reconciling (Pending, Progressing, RollingBack) and Stalled
    (RolledBack, Aborted, Failed) are kstatus's abnormal-true conditions, present only while True, so that
    kstatus and Flux read a rollout under way as InProgress and a rejected one as Failed. A condition's
    transition time changes only when its value does.
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
    if phase in _RECONCILING:
        wanted.append(("Reconciling", "True", str(phase)))
    elif phase in _STALLED:
        wanted.append(("Stalled", "True", str(phase)))
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


def refresh_seconds(rollouts: int, writes_per_second: float) -> float:
    """How often a healthy rollout's last measurements are refreshed: every ``STATUS_REFRESH_SECONDS``, or
    more rarely when ``rollouts`` refreshed that often would write more than ``writes_per_second`` statuses
    (0: no limit). At 10,000 rollouts a once-a-minute refresh alone is 167 writes a second, more than a
    controller should ask of an API server for measurements nobody acts on; the decisions are still written at
    once.
    """
    if writes_per_second <= 0:
        return STATUS_REFRESH_SECONDS
    return max(STATUS_REFRESH_SECONDS, rollouts / writes_per_second)


def copy_status(status: RolloutStatus) -> RolloutStatus:
    """A deep copy of ``status`` that shares nothing with it (a decision changes its own copy; the status it was
    given may be shared, as the status stores share what they parsed). Made through the model's own schema
    (dump, then validate): four times cheaper than ``model_copy(deep=True)``, which copies object by object.
    """
    return RolloutStatus.model_validate(status.model_dump())


def worth_saving(
    saved: RolloutStatus, new: RolloutStatus, now: datetime, *, refresh_after: float = STATUS_REFRESH_SECONDS
) -> bool:
    """Whether a pass must write ``new`` over ``saved``.

    Every change is written, except a passing evaluation that changes only the last measurements (the
    verdict was PASS before and is PASS now, nothing else moved): that one is written at most every
    ``refresh_after`` seconds (:func:`refresh_seconds`), so a healthy rollout's status is written when its
    weight or phase changes and refreshed once a minute (more rarely with many rollouts), not at every
    check. Passing evaluations are idempotent (counting one twice after a restart changes nothing), so
    skipping their write is safe.
    """
    if new == saved:
        return False
    unchanged = new.model_copy(update={name: getattr(saved, name) for name in _OBSERVATIONS})
    if unchanged != saved:
        return True
    passing = all(s.last_verdict is not None and s.last_verdict.verdict == Verdict.PASS for s in (saved, new))
    if not passing or saved.last_analysis_at is None:
        return True
    return (now - saved.last_analysis_at).total_seconds() >= refresh_after
