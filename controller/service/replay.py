"""Retrospective analysis: run a policy's schedule and analysis over recorded history.

The replay drives the very state machine and analysis the controller uses, against a simulated route
(the policy's stable destination alone, as before a rollout) and a simulated clock that walks from
``start`` to ``end``; Prometheus answers every query at the simulated time. So the steps, gates,
``failureLimit``, ``maxInconclusive`` and rollbacks are exactly what the live controller would have done
on that traffic, and thresholds can be tuned before anyone trusts them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from controller.core.policy import CanaryPolicy
from controller.core.rollout import (
    AnalysisResult,
    Observations,
    Phase,
    RolloutStatus,
    WriteRoute,
    decide,
    revision_of,
    route_revision_of,
)
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

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "index": self.index,
            "weight": self.weight,
            "startedAt": self.started_at.isoformat() if self.started_at else None,
            "endedAt": self.ended_at.isoformat() if self.ended_at else None,
            "outcome": self.outcome,
            "evaluations": [
                {
                    "at": e.evaluated_at.isoformat() if e.evaluated_at else None,
                    "verdict": str(e.verdict),
                    "reason": e.reason,
                    "checks": e.checks,
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

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "policy": self.policy,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "outcome": self.outcome,
            "rolledBackAt": self.rolled_back_at.isoformat() if self.rolled_back_at else None,
            "reason": self.reason,
            "steps": [step.as_dict() for step in self.steps],
        }


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


def replay(
    policy: CanaryPolicy, metrics: MetricsSource, *, start: datetime, end: datetime, tick_seconds: float = 5.0
) -> ReplayReport:
    """Replay ``policy`` over ``[start, end]`` against recorded metrics."""
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
    return report
