"""What the web dashboard shows, computed from stored statuses, policy specs, routes and ``now``.

Pure: no I/O and no clock (the caller passes ``now``). ``controller.dashboard`` reads the statuses, the
CanaryPolicy specs and the live routes through the adapters and serves what these functions return as the
dashboard's JSON API (docs/dashboard.md describes every key).

* :func:`fleet_row`: one rollout's row of the fleet table (``GET /api/rollouts``), with its "needs
  attention" flag and the countdown to the next step.
* :func:`fleet_document`: the rows with the counts by phase.
* :func:`timeline`: markers from the status's history, its alert log, the recorded commands and the last
  analysis.
* :func:`plan`: the destination list written at every step.
* :func:`runs`: past runs, read from the history's transitions.
* :func:`route_view`: the live destination list beside the desired one, with drift flagged.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from controller.core.status import (
    TERMINAL_PHASES,
    Command,
    PauseReason,
    Phase,
    RolloutStatus,
    Stall,
)
from controller.core.status_view import StatusRow, status_row

ATTENTION_PHASES = (Phase.PAUSED, Phase.FAILED, Phase.ROLLED_BACK, Phase.ROLLING_BACK)
"""Phases a person should look at: the fleet's "needs attention" filter keeps these (and held rollouts)."""
HELD_STALLS = frozenset({Stall.INCONCLUSIVE, Stall.DRIFT})
"""Stalls of a running rollout that need a person: held without an answer from the analysis, or drifted."""


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.isoformat().replace("+00:00", "Z")


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def attention(status: RolloutStatus | None, *, problem: str | None = None) -> str | None:
    """Why a rollout needs a person's attention, or None: paused, failed, rolled back, drifted, held on no data.

    Args:
        status: the stored status (None: the controller has recorded none).
        problem: why the stored status cannot be read, if it cannot.

    Returns:
        A short reason for people, or None when nothing needs looking at.
    """
    if problem:
        return problem
    if status is None:
        return None
    if status.phase == Phase.PAUSED:
        if status.paused_reason == PauseReason.DRIFT:
            return "paused: someone else changed the route (drift)"
        return f"paused ({status.paused_reason})" if status.paused_reason else "paused"
    if status.phase in ATTENTION_PHASES:
        reason = status.rollback_reason or status.last_error or status.message
        return f"{status.phase}: {reason}" if reason else str(status.phase)
    held_without_data = status.stall == Stall.AWAITING_ANALYSIS and status.consecutive_inconclusive > 0
    if status.stall in HELD_STALLS or held_without_data:
        return f"held: {status.message or status.stall}"
    if status.last_error and status.phase not in TERMINAL_PHASES:
        return f"error: {status.last_error}"
    return None


def next_step_in(status: RolloutStatus | None, *, step_seconds: float | None, now: datetime) -> float | None:
    """Seconds until the current step's duration has elapsed (0 when it has; the analysis may still hold it).

    None when the rollout is not progressing at a step with a live weight, or the step duration is unknown.
    """
    if status is None or step_seconds is None or status.phase != Phase.PROGRESSING:
        return None
    if status.step_started_at is None:
        return None
    if status.schedule is not None and status.step_index >= len(status.schedule) - 1:
        return None
    elapsed = (now - _aware(status.step_started_at)).total_seconds()
    return max(step_seconds - elapsed, 0.0)


def started_at(status: RolloutStatus | None) -> datetime | None:
    """When the current run started: its last transition out of a terminal phase (or the first entry)."""
    if status is None or not status.history:
        return None
    start = status.history[0].time
    for entry in status.history:
        if entry.from_phase is None or entry.from_phase in TERMINAL_PHASES:
            start = entry.time
    return start


def fleet_row(
    *,
    namespace: str,
    name: str,
    source: str,
    status: RolloutStatus | None,
    commands: Sequence[Command],
    now: datetime,
    steps: list[int] | None = None,
    step_seconds: float | None = None,
    target: dict[str, str] | None = None,
    problem: str | None = None,
) -> dict[str, Any]:
    """One rollout's row of the fleet table (the ROW object of ``GET /api/rollouts``).

    Args:
        namespace: the policy's namespace.
        name: the policy's name.
        source: ``crd`` or ``file``.
        status: the stored status, None when there is none.
        commands: the policy's recorded commands, oldest first.
        now: the current time (timezone-aware).
        steps: the schedule's weights, when the spec is at hand (else the status's).
        step_seconds: the schedule's step duration, when known (for the countdown).
        target: ``{"kind", "name"}`` of the route the policy changes, when known.
        problem: why the stored status cannot be read.

    Returns:
        The row as a JSON-ready dict.
    """
    schedule = steps if steps is not None else (status.schedule if status is not None else None)
    row: StatusRow = status_row(
        namespace=namespace,
        name=name,
        source=source,
        status=status,
        commands=commands,
        now=now,
        step_count=len(schedule) if schedule else None,
        problem=problem,
    )
    start = started_at(status)
    why = attention(status, problem=problem)
    verdict = None
    if row.last_verdict is not None:
        verdict = {"verdict": str(row.last_verdict.verdict), "reason": row.last_verdict.reason}
    return {
        "namespace": namespace,
        "name": name,
        "source": source,
        "target": target,
        "phase": str(row.phase) if row.phase is not None else None,
        "step": row.step,
        "stepIndex": row.step_index,
        "steps": list(schedule) if schedule else [],
        "weight": row.weight,
        "stall": row.stall,
        "message": row.message,
        "lastVerdict": verdict,
        "startedAt": _iso(start),
        "ageSeconds": (now - _aware(start)).total_seconds() if start is not None else None,
        "nextStepInSeconds": next_step_in(status, step_seconds=step_seconds, now=now),
        "needsAttention": why is not None,
        "attention": why,
    }


def fleet_document(rows: Iterable[dict[str, Any]], *, now: datetime) -> dict[str, Any]:
    """The body of ``GET /api/rollouts``: the rows (sorted by namespace, name) and the counts by phase."""
    listed = sorted(rows, key=lambda row: (row["namespace"], row["name"], row.get("source") or ""))
    counts: dict[str, int] = {}
    for row in listed:
        phase = row["phase"] or "Unknown"
        counts[phase] = counts.get(phase, 0) + 1
    return {"generatedAt": _iso(now), "counts": counts, "rollouts": listed}


_KIND_OF_REASON = {
    "StepAdvanced": "step",
    "Promoted": "promote",
    "RollbackStarted": "rollback",
    "RolledBack": "rollback",
    "Drift": "drift",
    "DriftDetected": "drift",
}


def _history_kind(to_phase: Phase, reason: str) -> str:
    if "drift" in reason.lower():
        return "drift"
    if to_phase == Phase.PAUSED:
        return "pause"
    if to_phase in (Phase.ROLLING_BACK, Phase.ROLLED_BACK, Phase.ABORTED):
        return "rollback"
    if to_phase == Phase.PROMOTED:
        return "promote"
    if reason.lower().startswith("resume"):
        return "resume"
    return _KIND_OF_REASON.get(reason, "step")


def timeline(status: RolloutStatus | None, commands: Sequence[Command]) -> list[dict[str, Any]]:
    """Markers for the rollout page's timeline, oldest first.

    Every history transition (steps, pauses, drift, rollback, promotion), every recorded command with who
    issued it, every alert delivery and the last analysis's checks each give one marker
    ``{"at", "kind", "weight", "verdict", "text", "by"}``.
    """
    markers: list[dict[str, Any]] = []
    if status is not None:
        for entry in status.history:
            kind = _history_kind(entry.to_phase, entry.reason)
            origin = f"{entry.from_phase} → " if entry.from_phase is not None else ""
            markers.append(
                {
                    "at": _iso(entry.time),
                    "kind": kind,
                    "weight": None,
                    "verdict": None,
                    "text": f"{origin}{entry.to_phase}: {entry.reason}"
                    + (f": {entry.message}" if entry.message else ""),
                    "by": None,
                }
            )
        for record in status.alert_log:
            markers.append(
                {
                    "at": _iso(record.at),
                    "kind": "alert",
                    "weight": None,
                    "verdict": None,
                    "text": f"alert {record.name} to {record.sink}: {record.result}"
                    + (f" ({record.error})" if record.error else ""),
                    "by": None,
                }
            )
        if status.last_analysis_at is not None and status.last_verdict is not None:
            markers.append(
                {
                    "at": _iso(status.last_analysis_at),
                    "kind": "check",
                    "weight": status.weight,
                    "verdict": str(status.last_verdict.verdict),
                    "text": status.last_verdict.reason,
                    "by": None,
                }
            )
    for command in commands:
        if command.at is None:
            continue
        markers.append(
            {
                "at": _iso(command.at),
                "kind": "command",
                "weight": None,
                "verdict": None,
                "text": f"{command.kind} requested",
                "by": command.by,
            }
        )
    markers.sort(key=lambda marker: marker["at"] or "")
    return markers


def plan(steps: Sequence[int], *, stable: str, canary: str, step_index: int = -1) -> list[dict[str, Any]]:
    """What is written at every step, stable first: ``[{"step": "1/4", "weight", "route", "current"}]``."""
    count = len(steps)
    return [
        {
            "step": f"{index + 1}/{count}",
            "weight": weight,
            "route": [
                {"destination": stable, "weight": 100 - weight},
                {"destination": canary, "weight": weight},
            ],
            "current": index == step_index,
        }
        for index, weight in enumerate(steps)
    ]


def runs(status: RolloutStatus | None) -> list[dict[str, Any]]:
    """Past and current runs read from the history: ``{"runId", "outcome", "startedAt", "endedAt", "steps"}``.

    A run starts at a transition from no phase or from a terminal phase, and ends at a terminal phase; each
    step's time is the time between consecutive ``Progressing`` transitions. Only the current run has its id
    (the history does not keep older ones). The history holds the last transitions only, so the first run
    listed may have started earlier than shown.
    """
    if status is None:
        return []
    found: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    step_started: datetime | None = None
    for entry in status.history:
        if current is None or entry.from_phase is None or entry.from_phase in TERMINAL_PHASES:
            if current is not None and current["outcome"] is None:
                current["outcome"] = "superseded"
            current = {"runId": None, "outcome": None, "startedAt": _iso(entry.time), "endedAt": None, "steps": []}
            found.append(current)
            step_started = None
        if step_started is not None:
            current["steps"][-1]["seconds"] = (_aware(entry.time) - _aware(step_started)).total_seconds()
            step_started = None
        if entry.to_phase == Phase.PROGRESSING:
            current["steps"].append({"reason": entry.reason, "seconds": None})
            step_started = entry.time
        if entry.to_phase in TERMINAL_PHASES:
            current["outcome"] = str(entry.to_phase)
            current["endedAt"] = _iso(entry.time)
    if found:
        found[-1]["runId"] = status.run_id
    return found


def route_view(
    live: Sequence[dict[str, Any]] | None,
    *,
    expected_weights: Sequence[int] | None,
    restored: Sequence[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The live destination list beside the desired one; ``drift`` when they differ.

    Args:
        live: the route's destinations as stored now, each ``{"destination", "weight"}`` (None: not read).
        expected_weights: the weights the controller last wrote, in the same order (None: nothing written).
        restored: after a rollback or an abort, the original destination list the controller restored
            (same shape as ``live``): it is what the route should be, weights as the original had them.

    Returns:
        ``{"live": [...], "desired": [...], "drift": bool}``.
    """
    shown = list(live or [])
    if restored is not None and expected_weights is None:
        desired = list(restored)
        return {"live": shown, "desired": desired, "drift": live is not None and shown != desired}
    if expected_weights is None or live is None:
        return {"live": shown, "desired": [], "drift": False}
    desired = [
        {"destination": item.get("destination"), "weight": weight}
        for item, weight in zip(shown, expected_weights, strict=False)
    ]
    live_weights = [item.get("weight") for item in shown]
    drift = len(live_weights) != len(expected_weights) or any(
        (have or 0) != want for have, want in zip(live_weights, expected_weights, strict=False)
    )
    return {"live": shown, "desired": desired, "drift": drift}


def increments(series: Sequence[Sequence[tuple[float, float]]], *, first_at: float, step: float) -> dict[float, float]:
    """What counters counted in each step, summed over series: the chart's points, tiling the range exactly.

    Args:
        series: each counter series' samples ``(unix time, value)`` on a grid of ``step`` seconds (a range
            query's answer), oldest first.
        first_at: the grid's first time; it only provides the base of the next point, so it has no point.
        step: the grid's spacing in seconds.

    Returns:
        Per grid time after ``first_at``: the increase since the previous grid time. A counter that went
        down was reset, so it counted its new value; a series first seen after ``first_at`` was born in the
        step before and counted its whole value (as the checks count a new series).
    """
    counted: dict[float, float] = {}
    for samples in series:
        previous: tuple[float, float] | None = None
        for at, value in samples:
            if previous is None:
                born = at - first_at > step / 2
                if born:
                    counted[at] = counted.get(at, 0.0) + value
            else:
                gap = at - previous[0]
                grew = value - previous[1]
                if gap > step * 1.5:  # absent in between: stale, then back (a new series of the same labels)
                    grew = value
                counted[at] = counted.get(at, 0.0) + (grew if grew >= 0 else value)
            previous = (at, value)
    return counted
