"""Retrospective analysis: run a policy's schedule and analysis over recorded history.

The replay drives the very state machine and analysis the controller uses, against a simulated route
(the policy's stable destination alone, as before a rollout) and a simulated clock that walks from
``start`` to ``end``; Prometheus answers every query at the simulated time. So the steps, gates,
``failureLimit``, ``maxInconclusive`` and rollbacks are exactly what the live controller would have done
on that traffic, and thresholds can be tuned before anyone trusts them.

A replay that measured nothing says so (``ReplayReport.problem``) instead of "still running": a Prometheus
that cannot be queried is found by one probe before the walk, and a window where no query returned data
is found after it. ``sweep`` replays the same history once per value of one setting (``max=0.005,0.01``),
so thresholds can be chosen from the outcomes and detection times side by side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from controller.core.effects import WriteRoute
from controller.core.policy import CanaryPolicy
from controller.core.rollout import decide, revision_of, route_revision_of
from controller.core.status import AnalysisResult, Observations, Phase, RolloutStatus
from controller.ports import MetricsSource
from controller.service.prometheus_analysis import PrometheusAnalysis


@dataclass
class ReplayStep:
    """One step as it would have run."""

    index: int
    weight: int
    started_at: datetime | None = None
    ended_at: datetime | None = None
    evaluations: list[AnalysisResult] = field(default_factory=list)
    outcome: str = "not reached"

    @property
    def recorded_share(self) -> dict[str, Any] | None:
        """The canary's share of new connections in the history, from the step's last evaluation that
        measured it (the final one covers the whole step)."""
        shares = [e.traffic_share for e in self.evaluations if e.traffic_share is not None]
        return shares[-1] if shares else None

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "index": self.index,
            "weight": self.weight,
            "startedAt": self.started_at.isoformat() if self.started_at else None,
            "endedAt": self.ended_at.isoformat() if self.ended_at else None,
            "outcome": self.outcome,
            "recordedShare": self.recorded_share,
            "evaluations": [
                {
                    "at": e.evaluated_at.isoformat() if e.evaluated_at else None,
                    "verdict": str(e.verdict),
                    "reason": e.reason,
                    "checks": [check.model_dump(mode="json") for check in e.checks],
                    "trafficShare": e.traffic_share,
                }
                for e in self.evaluations
            ],
        }


@dataclass
class ReplayReport:
    """The whole replay."""

    policy: str
    start: datetime
    end: datetime
    outcome: str
    steps: list[ReplayStep]
    rolled_back_at: datetime | None = None
    reason: str = ""
    problem: str | None = None
    """Why the replay tells nothing (Prometheus cannot be queried, no data in the window); None when it measured."""

    @property
    def detection_seconds(self) -> float | None:
        """Seconds from ``start`` to the rollback, None when it did not roll back."""
        return (self.rolled_back_at - self.start).total_seconds() if self.rolled_back_at is not None else None

    @property
    def last_verdict(self) -> str:
        """The reason of the last evaluation of the step the replay ended in ("" when none ran)."""
        reached = [step for step in self.steps if step.evaluations]
        return reached[-1].evaluations[-1].reason if reached else ""

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "policy": self.policy,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "outcome": self.outcome,
            "problem": self.problem,
            "rolledBackAt": self.rolled_back_at.isoformat() if self.rolled_back_at else None,
            "reason": self.reason,
            "steps": [step.as_dict() for step in self.steps],
        }


@dataclass(frozen=True)
class Fold:
    """A run of consecutive evaluations with the same verdict and reason, shown as one line."""

    first: AnalysisResult
    last: AnalysisResult
    count: int


def fold_evaluations(evaluations: Sequence[AnalysisResult]) -> list[Fold]:
    """Consecutive evaluations with the same verdict and reason folded into one ``Fold`` each."""
    folds: list[Fold] = []
    for evaluation in evaluations:
        if folds and (folds[-1].last.verdict, folds[-1].last.reason) == (evaluation.verdict, evaluation.reason):
            folds[-1] = Fold(first=folds[-1].first, last=evaluation, count=folds[-1].count + 1)
        else:
            folds.append(Fold(first=evaluation, last=evaluation, count=1))
    return folds


_MEASURED = ("canary_value", "stable_value", "canary_connections", "stable_connections")


def _measured(evaluation: AnalysisResult) -> bool:
    return any(getattr(check, key) is not None for check in evaluation.checks for key in _MEASURED)


def _query_error(evaluation: AnalysisResult) -> str | None:
    """The error of the first failed query of an evaluation, None when none failed."""
    for check in evaluation.checks:
        reason = check.reason
        if reason.startswith("query failed: "):
            return reason.removeprefix("query failed: ")
    return None


def _unmeasured(report: ReplayReport) -> str | None:
    """Why a finished replay tells nothing, or None when some evaluation measured a value."""
    evaluations = [e for step in report.steps for e in step.evaluations]
    if not evaluations or any(_measured(e) for e in evaluations):
        return None
    errors = [error for error in map(_query_error, evaluations) if error is not None]
    if errors:
        return f"no query succeeded in {len(evaluations)} evaluations: {errors[-1]}"
    return (
        f"no data from {report.start.isoformat()} to {report.end.isoformat()}: none of {len(evaluations)} "
        f"evaluations measured a value (last: {evaluations[-1].reason}); check the time range and "
        "spec.analysis.selector"
    )


def _synthetic_target(policy: CanaryPolicy) -> dict[str, Any]:
    target = policy.spec.target
    stable = target.stable
    if target.kind == "TCPRoute":
        ref: dict[str, Any] = {"name": stable.host}
        if stable.port is not None:
            ref["port"] = stable.port
        return {
            "apiVersion": "gateway.networking.k8s.io/v1alpha2",
            "kind": "TCPRoute",
            "metadata": {"name": target.ref.name},
            "spec": {"rules": [{"backendRefs": [ref]}]},
        }
    destination: dict[str, Any] = {"host": stable.host}
    if stable.subset is not None:
        destination["subset"] = stable.subset
    if stable.port is not None:
        destination["port"] = {"number": stable.port}
    entry: dict[str, Any] = {"route": [{"destination": destination}]}
    if target.route.port is not None:
        entry["match"] = [{"port": target.route.port}]
    routes: list[Any] = [{"route": [{"destination": {"host": "unrelated.invalid"}}]}] * (target.route.index or 0)
    if target.route.name is not None:
        entry["name"] = target.route.name
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": target.ref.name},
        "spec": {target.route.protocol: [*routes, entry]},
    }


def _apply(obj: dict[str, Any], effect: WriteRoute) -> None:
    node: Any = obj
    parts = effect.pointer.strip("/").split("/")
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[parts[-1]] = effect.destinations


def _share_shown_only(policy: CanaryPolicy) -> CanaryPolicy:
    """The policy with its traffic-share check off: recorded history carries the weights that were live then,
    not the replayed schedule's, so the share is shown but never holds or fails a replayed step."""
    document = policy.model_dump(mode="json", exclude_none=True)
    analysis = document["spec"].get("analysis")
    if analysis is None:
        return policy
    analysis["trafficShare"] = {**analysis.get("trafficShare", {}), "check": "off"}
    return CanaryPolicy.model_validate(document)


def replay(
    policy: CanaryPolicy, metrics: MetricsSource, *, start: datetime, end: datetime, tick_seconds: float = 5.0
) -> ReplayReport:
    """Replay ``policy`` over ``[start, end]`` against recorded metrics.

    The traffic-share check only shows the recorded share (see :func:`_share_shown_only`).
    """
    policy = _share_shown_only(policy)
    analysis = PrometheusAnalysis(metrics)
    target = _synthetic_target(policy)
    status = RolloutStatus()
    revision = revision_of(policy)
    steps = [ReplayStep(index=i, weight=w) for i, w in enumerate(policy.spec.schedule.steps)]
    now = start
    seen: set[datetime] = set()
    report = ReplayReport(
        policy=f"{policy.metadata.namespace}/{policy.metadata.name}",
        start=start,
        end=end,
        outcome="still running at the end of the window",
        steps=steps,
    )
    probe = metrics.query(query="vector(1)", at=start, connection=policy)
    if probe.error is not None:
        report.problem = f"Prometheus cannot be queried: {probe.error}"
        report.outcome = "not replayed"
        return report
    while now <= end:
        verdict = analysis.verdict(policy=policy, status=status, now=now)
        if verdict is not None and verdict.evaluated_at is not None and verdict.evaluated_at not in seen:
            seen.add(verdict.evaluated_at)
            steps[verdict.step_index].evaluations.append(verdict)
        observations = Observations(
            revision=revision, route_revision=route_revision_of(policy), target=target, analysis=verdict
        )
        decision = decide(policy, status, observations, now)
        before = status
        status = decision.status
        for effect in decision.effects:
            if isinstance(effect, WriteRoute):
                _apply(target, effect)
        if status.step_started_at is not None and status.step_index >= 0:
            step = steps[status.step_index]
            step.started_at = step.started_at or status.step_started_at
        if before.step_index != status.step_index and before.step_index >= 0:
            steps[before.step_index].ended_at = now
            steps[before.step_index].outcome = "passed"
        if status.phase in {Phase.ROLLING_BACK, Phase.ROLLED_BACK}:
            report.outcome = "rolled back"
            report.rolled_back_at = now
            report.reason = status.rollback_reason or ""
            if status.step_index >= 0:
                steps[status.step_index].ended_at = now
                steps[status.step_index].outcome = "rolled back"
            break
        if status.phase == Phase.PROMOTED:
            report.outcome = "promoted"
            steps[status.step_index].ended_at = now
            steps[status.step_index].outcome = "passed"
            break
        if status.phase == Phase.PAUSED:
            report.outcome = f"paused ({status.paused_reason})"
            break
        if status.phase == Phase.FAILED:
            report.outcome = f"failed: {status.last_error}"
            break
        now += timedelta(seconds=tick_seconds)
    for step in steps:
        if step.started_at is not None and step.outcome == "not reached":
            step.outcome = "in progress"
    report.problem = _unmeasured(report)
    return report


# -- sweeps -----------------------------------------------------------------------------------------

_ANALYSIS_FIELDS = ("interval", "failureLimit", "maxInconclusive", "onInconclusive")


def with_setting(policy: CanaryPolicy, setting: str, value: object) -> CanaryPolicy:
    """``policy`` with one analysis setting changed, validated like the policy itself.

    ``setting`` is a field path as written in YAML: a check's field (``max``, ``minConnections``,
    ``countTest.confidence``), prefixed by the check's name when the policy has several (``errors.max``), or
    an analysis field (``failureLimit``, ``maxInconclusive``, ``interval``).

    Raises:
        ValueError: the setting names no field, or the value is not valid there (the message says why).
    """
    document = policy.model_dump(mode="json", exclude_none=True)
    analysis = document["spec"].get("analysis")
    if analysis is None:
        raise ValueError("the policy has no spec.analysis")
    path = setting.split(".")
    checks = {check["name"]: check for check in analysis["metrics"]}
    node: dict[str, Any]
    if path[0] in _ANALYSIS_FIELDS:
        node = analysis
    elif path[0] in checks and len(path) > 1:
        node, path = checks[path[0]], path[1:]
    elif len(checks) == 1:
        node = next(iter(checks.values()))
    else:
        raise ValueError(f"{setting}: name the check first ({', '.join(f'{name}.{setting}' for name in checks)})")
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ValueError(f"{setting}: {part} is not a group of fields")
        node = child
    node[path[-1]] = value
    try:
        return CanaryPolicy.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors(include_url=False)
        )
        raise ValueError(f"{setting}={value}: {problems}") from None


@dataclass(frozen=True)
class SweepRun:
    """The replay of one value of the swept setting."""

    value: object
    report: ReplayReport

    def as_dict(self) -> dict[str, Any]:
        """JSON form: the outcome and detection time first, then the whole replay."""
        return {
            "value": self.value,
            "outcome": self.report.outcome,
            "rolledBackAt": self.report.rolled_back_at.isoformat() if self.report.rolled_back_at else None,
            "detectionSeconds": self.report.detection_seconds,
            "lastVerdict": self.report.last_verdict,
            "replay": self.report.as_dict(),
        }


def sweep(
    policy: CanaryPolicy,
    metrics: MetricsSource,
    *,
    setting: str,
    values: Sequence[object],
    start: datetime,
    end: datetime,
    tick_seconds: float = 5.0,
) -> list[SweepRun]:
    """Replay ``policy`` over ``[start, end]`` once per value of ``setting`` (see :func:`with_setting`).

    Raises:
        ValueError: a value is not valid for the setting (checked for every value before any replay).
    """
    variants = [with_setting(policy, setting, value) for value in values]
    return [
        SweepRun(value=value, report=replay(variant, metrics, start=start, end=end, tick_seconds=tick_seconds))
        for value, variant in zip(values, variants, strict=True)
    ]
