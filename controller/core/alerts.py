"""What an alert says, independent of where it goes (the sinks and the delivery: :mod:`controller.adapters.alerts`).

``AlertMessage`` carries everything a person needs to act on a rollback: the policy, the target and route,
the step and weight, the phase change and its reason, each failing check with its measured value,
threshold, sample size and expanded query, links to the Prometheus graph of those queries (without the
URL's user info), and the run id. It never holds a secret.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal
from urllib.parse import urlencode

from controller.core.status import CheckRecord, Severity
from controller.core.url_rules import strip_userinfo

AlertState = Literal["firing", "resolved"]


@dataclass(frozen=True)
class FailingCheck:
    """One check that failed (or was inconclusive), with its numbers."""

    name: str
    verdict: str
    reason: str
    canary_value: float | None = None
    stable_value: float | None = None
    sample_size: float | None = None
    threshold: str = ""
    queries: tuple[str, ...] = ()
    graph_urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class AlertMessage:
    """One alert about one rollout run.

    ``key`` identifies the event (run id, alert name, transition number): a sink that sees the same key
    twice is seeing a retry of the same event, never a new one.
    """

    key: str
    name: str
    severity: Severity
    state: AlertState
    policy: str
    namespace: str
    run_id: str
    target: str
    route: str
    step: int
    weight: int | None
    from_phase: str | None
    to_phase: str
    reason: str
    summary: str
    description: str
    started_at: datetime
    ended_at: datetime | None = None
    checks: tuple[FailingCheck, ...] = field(default_factory=tuple)
    source_url: str = ""

    @property
    def title(self) -> str:
        """A one-line title, e.g. ``CanaryRolledBack: shop/tcp-echo``."""
        return f"{self.name}: {self.namespace}/{self.policy}"


def graph_url(prometheus_url: str, query: str, *, at: datetime, range_seconds: int = 3600) -> str:
    """A link to the Prometheus graph of ``query`` ending at ``at``.

    User info (``user:password@``) is left out: links go to every alert sink, whoever reads them.
    """
    params = {
        "g0.expr": query,
        "g0.tab": "0",
        "g0.range_input": f"{range_seconds}s",
        "g0.end_input": at.strftime("%Y-%m-%d %H:%M:%S"),
    }
    return f"{strip_userinfo(prometheus_url).rstrip('/')}/graph?{urlencode(params)}"


_SUMMARY = {
    "CanaryRolledBack": "rolled back",
    "CanaryFailed": "failed",
    "CanaryDriftDetected": "paused: someone else changed the weights",
    "CanaryPaused": "paused",
    "CanaryPromoted": "promoted",
}


def route_label(pointer: str) -> str:
    """``/spec/tcp/0/route`` -> ``tcp[0]``; ``/spec/rules/1/backendRefs`` -> ``rules[1]``."""
    parts = pointer.strip("/").split("/")
    return f"{parts[1]}[{parts[2]}]" if len(parts) >= 3 else pointer


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def message_for(
    *,
    policy_name: str,
    namespace: str,
    target: str,
    route: str,
    key: str,
    name: str,
    severity: Severity,
    reason: str,
    summary: str,
    from_phase: str | None,
    to_phase: str,
    step_index: int,
    step_count: int,
    weight: int | None,
    run_id: str,
    created_at: datetime,
    checks: Sequence[CheckRecord],
    prometheus_url: str | None,
    state: AlertState = "firing",
    ended_at: datetime | None = None,
) -> AlertMessage:
    """Build the alert people read: what happened, where, at which step and weight, and the numbers."""
    failing = []
    for check in checks:
        queries = tuple(q for q in check.queries if not q.startswith("("))
        failing.append(
            FailingCheck(
                name=check.name,
                verdict=str(check.verdict) if check.verdict is not None else "",
                reason=check.reason,
                canary_value=_number(check.canary_value),
                stable_value=_number(check.stable_value),
                sample_size=_number(check.canary_connections),
                threshold=check.threshold,
                queries=queries,
                graph_urls=tuple(graph_url(prometheus_url, q, at=created_at) for q in queries)
                if prometheus_url
                else (),
            )
        )
    step = f"step {step_index + 1}/{step_count}" if step_index >= 0 else "before the first step"
    at_weight = f" at canary weight {weight}" if weight is not None else ""
    lines = [
        f"CanaryPolicy {namespace}/{policy_name} {_SUMMARY.get(name, name)} ({reason}) at {step}{at_weight}.",
        f"Target: {target}, route {route}. Phase: {from_phase or '-'} -> {to_phase}. Run: {run_id}.",
        summary,
    ]
    for item in failing:
        numbers = f"value {item.canary_value}" if item.canary_value is not None else "no value"
        if item.sample_size is not None:
            numbers += f" over {int(item.sample_size)} connections"
        if item.stable_value is not None:
            numbers += f", stable {item.stable_value}"
        lines.append(f"Check {item.name}: {item.verdict}: {item.reason} ({numbers}; {item.threshold or '-'}).")
        lines.extend(f"  query: {q}" for q in item.queries)
    return AlertMessage(
        key=key,
        name=name,
        severity=severity,
        state=state,
        policy=policy_name,
        namespace=namespace,
        run_id=run_id,
        target=target,
        route=route,
        step=step_index,
        weight=weight,
        from_phase=from_phase,
        to_phase=to_phase,
        reason=reason,
        summary=f"{namespace}/{policy_name} {_SUMMARY.get(name, name)}: {reason}{at_weight}",
        description="\n".join(lines),
        started_at=created_at,
        ended_at=ended_at,
        checks=tuple(failing),
        source_url=failing[0].graph_urls[0] if failing and failing[0].graph_urls else "",
    )
