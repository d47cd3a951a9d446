"""What ``canaryctl status`` shows: one row per policy, computed from its status, pending commands and ``now``.

Pure: no I/O and no clock (the caller passes ``now``). The adapters find the statuses
(``controller.adapters.kubernetes.control``); the CLI prints the rows as a table or as the JSON document
described by :func:`status_list_document`.

The JSON document (``canaryctl status -o json``) is a stable interface for scripts::

    {"apiVersion": "canaryctl.dev/v1alpha1", "kind": "StatusList", "items": [ITEM, ...]}

Each ITEM has exactly these keys (values are ``null`` when unknown):

* ``namespace``, ``name``: the policy.
* ``source``: ``"crd"`` (a CanaryPolicy resource) or ``"file"`` (a policy file; status in a ConfigMap).
* ``phase``: ``Pending``, ``Progressing``, ``Paused``, ``Promoted``, ``RollingBack``, ``RolledBack``,
  ``Failed`` or ``Aborted``; ``null`` when the controller has recorded no status yet.
* ``step``: display form ``"2/4"``; ``stepIndex``: 0-based index of the current step, -1 before the first.
* ``weight``: the canary weight (percent) the controller set, ``null`` when none.
* ``trafficShare``: the canary's observed share of new connections at the last evaluation, tested against
  the weight (``{"weight", "canaryConnections", "connections", "share", "low", "high", "off", "reason"}``,
  shares 0..1; docs/analysis.md), ``null`` when not measured. The table shows it beside the weight:
  ``20 (18.0% seen)``.
* ``stepStartedAt``: RFC 3339 time the current step's weight was confirmed live.
* ``secondsInStep``: how long the current step has run (frozen while paused); ``null`` before the step's
  weight is live and once the run has ended.
* ``lastVerdict``, ``lastError``, ``message``: the controller's last analysis verdict, last error and
  progress message, in full.
* ``stall``: why a rollout that has not ended does not move on, as a short machine reason
  (``AwaitingAnalysis``, ``CanaryNotReady``, ``WaitingForTarget``, ``Paused``...); ``null`` while it moves.
  ``message`` says the same in words.
* ``runId``: the current run.
* ``pendingCommands``: commands recorded but not yet consumed by the controller, oldest first, each
  ``{"id", "kind", "by", "at"}``.
* ``history``: the last 10 transitions, oldest first, each ``{"time", "from", "to", "reason", "message"}``.
* ``conditions``: Kubernetes-style conditions, each ``{"type", "status", "reason", "message",
  "lastTransitionTime"}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from controller.core.policy import API_VERSION
from controller.core.status import (
    TERMINAL_PHASES,
    Command,
    CommandKind,
    Condition,
    HistoryEntry,
    LastVerdict,
    PauseReason,
    Phase,
    RolloutStatus,
    Verdict,
)

STATUS_LIST_KIND = "StatusList"
HISTORY_SHOWN = 10
NONE = "-"
ELLIPSIS = "…"
NOT_SEEN = "no status yet: the controller has not run this policy (is it running, and serving this namespace?)"
TABLE_HEADERS = ("NAMESPACE", "NAME", "SOURCE", "PHASE", "STEP", "WEIGHT", "IN STEP", "VERDICT", "REASON")
ITEM_KEYS = (
    "namespace",
    "name",
    "source",
    "phase",
    "step",
    "stepIndex",
    "weight",
    "trafficShare",
    "stepStartedAt",
    "secondsInStep",
    "lastVerdict",
    "lastError",
    "message",
    "stall",
    "runId",
    "pendingCommands",
    "history",
    "conditions",
)


def human_duration(seconds: float) -> str:
    """A short duration for people: ``45s``, ``1m05s``, ``2h03m``, ``3d04h``.

    Args:
        seconds: the duration; fractions are dropped and a negative value (clock skew) reads as ``0s``.

    Returns:
        The two most significant units, the second zero-padded.
    """
    whole = max(int(seconds), 0)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def cut(text: str | None, width: int) -> str:
    """One line of at most ``width`` characters, ending in ``…`` when something was cut.

    Args:
        text: any text; runs of whitespace (newlines included) become one space. None or blank gives ``-``.
        width: the most characters to keep, the ellipsis included (at least 1).

    Returns:
        The shortened text.
    """
    line = " ".join((text or "").split())
    if not line:
        return NONE
    width = max(width, 1)
    if len(line) <= width:
        return line
    return line[: width - 1].rstrip() + ELLIPSIS


def pending_commands(commands: Iterable[Command], status: RolloutStatus | None) -> list[Command]:
    """The recorded commands the controller has not consumed yet (their ids are not in the status)."""
    processed = set(status.processed_commands) if status is not None else set()
    return [command for command in commands if command.id not in processed]


@dataclass(frozen=True)
class StatusRow:
    """One policy as ``canaryctl status`` shows it. Field meanings are those of the JSON item keys."""

    namespace: str
    name: str
    source: str
    phase: Phase | None
    step: str | None
    step_index: int
    weight: int | None
    step_started_at: datetime | None
    seconds_in_step: float | None
    last_verdict: LastVerdict | None
    last_error: str | None
    message: str
    run_id: str | None
    pending: tuple[Command, ...] = ()
    stall: str | None = None
    history: tuple[HistoryEntry, ...] = ()
    conditions: tuple[Condition, ...] = field(default=())
    traffic_share: dict[str, Any] | None = None


def _step_display(status: RolloutStatus, step_count: int | None) -> str | None:
    if status.step:
        return status.step
    if step_count is not None:
        return f"{max(status.step_index + 1, 0)}/{step_count}"
    return f"{status.step_index + 1}/?" if status.step_index >= 0 else None


def _aware(value: datetime) -> datetime:
    """Times without a zone are UTC (the controller writes UTC)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _seconds_in_step(status: RolloutStatus, now: datetime) -> float | None:
    if status.phase in TERMINAL_PHASES or status.step_started_at is None:
        return None
    if status.phase == Phase.PAUSED and status.paused_elapsed_seconds is not None:
        return max(status.paused_elapsed_seconds, 0.0)
    return max((_aware(now) - _aware(status.step_started_at)).total_seconds(), 0.0)


def _stall_of(status: RolloutStatus) -> str | None:
    return str(status.stall) if status.stall is not None else None


def _current_share(status: RolloutStatus) -> dict[str, Any] | None:
    """The last measured traffic share while it is about the weight now set (not after the run ended)."""
    share = status.last_traffic_share
    if share is None or status.phase in TERMINAL_PHASES or share.get("weight") != status.weight:
        return None
    return share


def status_row(
    *,
    namespace: str,
    name: str,
    source: str,
    status: RolloutStatus | None,
    commands: Sequence[Command],
    now: datetime,
    step_count: int | None = None,
    problem: str | None = None,
) -> StatusRow:
    """The row of one policy.

    Args:
        namespace: the policy's namespace.
        name: the policy's name.
        source: ``crd`` or ``file``.
        status: the persisted status, or None when the controller has recorded none (or it is unreadable).
        commands: the commands recorded for the policy (its commands annotation), oldest first.
        now: the current time (timezone-aware, like the status's times).
        step_count: how many steps the policy's schedule has, when known; used only when the status has no
            display step of its own.
        problem: why the status could not be read; shown as the last error.

    Returns:
        The row; ``seconds_in_step`` is frozen while paused and None once the run has ended.
    """
    pending = tuple(pending_commands(commands, status))
    if status is None:
        return StatusRow(
            namespace=namespace,
            name=name,
            source=source,
            phase=None,
            step=None,
            step_index=-1,
            weight=None,
            step_started_at=None,
            seconds_in_step=None,
            last_verdict=None,
            last_error=problem,
            message="",
            run_id=None,
            pending=pending,
        )
    return StatusRow(
        namespace=namespace,
        name=name,
        source=source,
        phase=status.phase,
        step=_step_display(status, step_count),
        step_index=status.step_index,
        weight=status.weight,
        step_started_at=status.step_started_at,
        seconds_in_step=_seconds_in_step(status, now),
        last_verdict=status.last_verdict,
        last_error=problem or status.last_error,
        message=status.message,
        run_id=status.run_id,
        pending=pending,
        stall=_stall_of(status),
        history=tuple(status.history[-HISTORY_SHOWN:]),
        conditions=tuple(status.conditions),
        traffic_share=_current_share(status),
    )


def display_phase(row: StatusRow) -> str:
    """The phase, with the commands still waiting for the controller: ``Progressing (pause pending)``."""
    phase = str(row.phase) if row.phase is not None else NONE
    if not row.pending:
        return phase
    kinds = ", ".join(str(command.kind) for command in row.pending)
    return f"{phase} ({kinds} pending)" if row.phase is not None else f"{kinds} pending"


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def verdict_word(last_verdict: LastVerdict | None) -> str:
    """The verdict alone (``pass``, ``fail``, ``inconclusive``); ``-`` if none."""
    return str(last_verdict.verdict) if last_verdict is not None else NONE


def reason(row: StatusRow) -> str:
    """Why the rollout is where it is, in full and on one line: never shortened.

    The controller's message (which, while a step is held, names what holds it), then what it does not
    already say: the last analysis when it did not pass, and the last error.
    """
    if row.phase is None and not row.last_error:
        return NOT_SEEN
    message = _one_line(row.message)
    parts = [message] if message else []
    last = row.last_verdict
    if last is not None and last.verdict != Verdict.PASS:
        verdict, said = _one_line(str(last)), _one_line(last.reason)
        if (said or verdict) not in message:
            parts.append(f"last analysis: {verdict}")
    error = _one_line(row.last_error)
    if error and error not in message:
        parts.append(f"last error: {error}")
    return "; ".join(parts) or NONE


def weight_cell(row: StatusRow) -> str:
    """The weight, with the canary's observed share of new connections when measured: ``20 (18.0% seen)``."""
    if row.weight is None:
        return NONE
    observed = row.traffic_share or {}
    share = observed.get("share")
    if not isinstance(share, int | float):
        return f"{row.weight}"
    return f"{row.weight} ({share * 100:.1f}% seen{', far off' if observed.get('off') else ''})"


def table_cells(row: StatusRow) -> tuple[str, ...]:
    """The row's cells, in the order of :data:`TABLE_HEADERS`; ``-`` where there is nothing to show.

    Every cell is whole: the reason is never cut (a terminal wraps it; -o json has every field apart).
    """
    return (
        row.namespace,
        row.name,
        row.source,
        display_phase(row),
        row.step or NONE,
        weight_cell(row),
        human_duration(row.seconds_in_step) if row.seconds_in_step is not None else NONE,
        verdict_word(row.last_verdict),
        reason(row),
    )


def plain_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Columns aligned with spaces, like ``kubectl get``; no trailing spaces, ends with a newline."""
    lines = [tuple(headers), *(tuple(row) for row in rows)]
    widths = [max(len(line[column]) for line in lines) for column in range(len(headers))]
    text = ["   ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in lines]
    return "\n".join(text) + "\n"


def _time(value: datetime | None) -> str | None:
    if value is None:
        return None
    return _aware(value).astimezone(UTC).isoformat().replace("+00:00", "Z")


def row_json(row: StatusRow) -> dict[str, Any]:
    """One item of the JSON document, with exactly the keys of :data:`ITEM_KEYS`."""
    return {
        "namespace": row.namespace,
        "name": row.name,
        "source": row.source,
        "phase": str(row.phase) if row.phase is not None else None,
        "step": row.step,
        "stepIndex": row.step_index,
        "weight": row.weight,
        "trafficShare": row.traffic_share,
        "stepStartedAt": _time(row.step_started_at),
        "secondsInStep": round(row.seconds_in_step, 3) if row.seconds_in_step is not None else None,
        "lastVerdict": str(row.last_verdict) if row.last_verdict is not None else None,
        "lastError": row.last_error,
        "message": row.message,
        "stall": row.stall,
        "runId": row.run_id,
        "pendingCommands": [{"id": c.id, "kind": str(c.kind), "by": c.by, "at": _time(c.at)} for c in row.pending],
        "history": [
            {
                "time": _time(h.time),
                "from": str(h.from_phase) if h.from_phase is not None else None,
                "to": str(h.to_phase),
                "reason": h.reason,
                "message": h.message,
            }
            for h in row.history
        ],
        "conditions": [
            {
                "type": c.type,
                "status": c.status,
                "reason": c.reason,
                "message": c.message,
                "lastTransitionTime": _time(c.last_transition_time),
            }
            for c in row.conditions
        ],
    }


def status_list_document(rows: Iterable[StatusRow]) -> dict[str, Any]:
    """The ``canaryctl status -o json`` document: ``{"apiVersion", "kind": "StatusList", "items"}``."""
    return {"apiVersion": API_VERSION, "kind": STATUS_LIST_KIND, "items": [row_json(row) for row in rows]}


# -- what a command will do ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandPreview:
    """What the controller will do with a command, judged from the status as it is now.

    Attributes:
        accepted: False when the controller will refuse it (the rollout's phase does not allow it).
        says: what will happen, or why it will be refused (the controller's own words for a refusal).
    """

    accepted: bool
    says: str


def _refusal(kind: CommandKind, phase: Phase, step_index: int) -> str | None:
    """Why the controller refuses ``kind`` in ``phase``: the same rule and words as the state machine's."""
    if phase in TERMINAL_PHASES and kind != CommandKind.RETRY:
        return f"the run is {phase}; retry or a new revision starts a new run"
    if kind == CommandKind.RETRY and phase not in {Phase.ROLLED_BACK, Phase.FAILED, Phase.ABORTED}:
        return f"only a RolledBack, Failed or Aborted run can be retried (it is {phase})"
    if kind == CommandKind.PAUSE and phase not in {Phase.PENDING, Phase.PROGRESSING}:
        return f"only a Pending or Progressing rollout can be paused (it is {phase})"
    if kind == CommandKind.RESUME and phase != Phase.PAUSED:
        return f"only a Paused rollout can be resumed (it is {phase})"
    if kind == CommandKind.PROMOTE and (phase not in {Phase.PROGRESSING, Phase.PAUSED} or step_index < 0):
        return f"only a rollout that has started its steps can be promoted (it is {phase})"
    if kind == CommandKind.ABORT and phase == Phase.ROLLING_BACK:
        return "the rollout is already rolling back"
    return None


def _after(kind: CommandKind, phase: Phase, step_index: int) -> tuple[Phase, int]:
    """The phase and step index right after the controller applies an accepted command."""
    if kind in {CommandKind.PAUSE, CommandKind.PROMOTE}:
        return Phase.PAUSED, step_index
    if kind == CommandKind.RESUME:
        return (Phase.PROGRESSING if step_index >= 0 else Phase.PENDING), step_index
    if kind == CommandKind.ABORT:
        return Phase.ROLLING_BACK, step_index
    return Phase.PENDING, -1


def _what_happens(kind: CommandKind, phase: Phase, status: RolloutStatus) -> str:
    at = f" at weight {status.weight}" if status.weight is not None and status.step_index >= 0 else ""
    if kind == CommandKind.PAUSE:
        if phase == Phase.PENDING:
            return "the rollout stays Pending: no step starts until resume"
        return f"the rollout pauses{at}: the weight stays and the step's clock stops until resume"
    if kind == CommandKind.RESUME:
        if status.step_index < 0:
            return "the rollout goes back to Pending and starts its first step when the canary is ready"
        if status.paused_reason == PauseReason.DRIFT:
            return f"the step's weight{at.replace(' at weight', '')} is written again and the step starts over"
        return f"the rollout resumes{at}: the step's clock continues where it stopped"
    if kind == CommandKind.PROMOTE:
        return "the rollout jumps to its last step now, without waiting for the remaining steps"
    if kind == CommandKind.ABORT:
        return "the original route is restored exactly and the run ends as Aborted"
    return "a new run starts from the first step"


def preview_command(kind: CommandKind, status: RolloutStatus | None, pending: Sequence[Command] = ()) -> CommandPreview:
    """What the controller will do with ``kind`` on its next pass, after the ``pending`` commands before it.

    The controller stays the judge: the status may change before its next pass. A policy it has not run
    yet gets its commands on its first pass.

    Args:
        kind: the command asked for.
        status: the policy's status now, or None when the controller has recorded none.
        pending: commands recorded before this one and not consumed yet, oldest first.

    Returns:
        Whether it will be accepted, and what will happen or why not.
    """
    if status is None:
        return CommandPreview(
            True, "the controller has not run this policy yet: it applies or refuses the command on its first pass"
        )
    phase, step_index = status.phase, status.step_index
    for earlier in pending:
        if _refusal(earlier.kind, phase, step_index) is None:
            phase, step_index = _after(earlier.kind, phase, step_index)
    why = _refusal(kind, phase, step_index)
    if why is not None:
        return CommandPreview(False, why)
    return CommandPreview(True, _what_happens(kind, phase, status))
