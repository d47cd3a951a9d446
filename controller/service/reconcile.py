"""One reconcile pass for one policy: observe, decide, persist, then act.

The order is what makes a crash harmless: the decision (with its write intent) is persisted before any
effect is applied, and every effect is idempotent. A conflict while persisting means someone else wrote
the status (a command arrived, or another replica): the pass stops without acting, and the next pass
decides again from fresh data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from controller.core.effects import Decision, RecordEvent, WriteRoute
from controller.core.policy import CanaryPolicy
from controller.core.rollout import decide, revision_of, route_revision_of
from controller.core.status import STATUS_REFRESH_SECONDS, Alert, Observations, Stall, with_conditions, worth_saving
from controller.errors import CanaryError, ConflictError
from controller.ports import (
    AnalysisSource,
    EventRecorder,
    InvolvedObject,
    PolicyRef,
    StatusStore,
    TrafficRouter,
    WorkloadReader,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dependencies:
    """The adapters one pass needs."""

    router: TrafficRouter
    store: StatusStore
    workloads: WorkloadReader
    events: EventRecorder
    analysis: AnalysisSource


@dataclass
class PassResult:
    """What one pass did, for logs, metrics and tests."""

    decision: Decision | None = None
    persisted: bool = False
    applied: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # (before, after) when this pass changed why the rollout does not move on (a new cause, or moving again).
    stall_changed: tuple[Stall | None, Stall | None] | None = None


# Stalls the state machine enters by a transition whose own event already says why (a person's pause, drift,
# the inconclusive limit, a schedule ending below 100); every other cause gets a Warning Event of its own.
_ANNOUNCED_STALLS = frozenset({Stall.PAUSED, Stall.DRIFT, Stall.INCONCLUSIVE, Stall.AWAITING_PROMOTION})


def involved_object(policy: CanaryPolicy, ref: PolicyRef) -> InvolvedObject:
    """Events go on the CanaryPolicy in CRD mode, on the target object in file mode."""
    if ref.source == "crd":
        return InvolvedObject("CanaryPolicy", "canaryctl.dev/v1alpha1", ref.namespace, ref.name)
    target = policy.spec.target
    api_version = "gateway.networking.k8s.io/v1" if target.kind == "TCPRoute" else "networking.istio.io/v1"
    return InvolvedObject(target.kind, api_version, policy.target_namespace, target.ref.name)


def reconcile_once(
    *,
    policy: CanaryPolicy,
    ref: PolicyRef,
    deps: Dependencies,
    now: datetime,
    refresh_after: float = STATUS_REFRESH_SECONDS,
) -> PassResult:
    """Observe, decide, persist, act. Raises nothing but ``CanaryError`` from reading.

    ``refresh_after``: how old a healthy rollout's saved measurements may grow before a pass that changes
    nothing else writes them (``controller.core.status.refresh_seconds``).
    """
    result = PassResult()
    loaded = deps.store.load(policy=ref)
    target = policy.spec.target
    namespace = policy.target_namespace
    live = deps.router.get(kind=target.kind, namespace=namespace, name=target.ref.name)
    workload = policy.spec.workload.canary
    canary = (
        deps.workloads.canary(namespace=workload.namespace or policy.metadata.namespace, name=workload.name)
        if workload is not None
        else None
    )
    analysis = deps.analysis.verdict(policy=policy, status=loaded.status, now=now)
    route_revision = route_revision_of(policy)
    observations = Observations(
        revision=revision_of(policy, canary.template if canary else None, route_revision=route_revision),
        route_revision=route_revision,
        target=live,
        target_missing=None if live is not None else f"{target.kind} {namespace}/{target.ref.name} not found",
        target_namespace=namespace,
        canary_ready=canary.ready if canary else True,
        canary_message=canary.message if canary else "",
        analysis=analysis,
        commands=loaded.commands,
    )
    decision = decide(policy, loaded.status, observations, now)
    result.decision = decision
    status = with_conditions(decision.status, now, len(policy.spec.schedule.steps))
    status.observed_generation = ref.generation
    if loaded.version is None or worth_saving(loaded.status, status, now, refresh_after=refresh_after):
        try:
            deps.store.save(policy=ref, status=status, version=loaded.version)
        except ConflictError as exc:
            result.errors.append(f"status not saved, nothing applied: {exc}")
            return result
    result.persisted = True
    involved = involved_object(policy, ref)
    for effect in decision.effects:
        if isinstance(effect, WriteRoute):
            try:
                deps.router.replace_route(
                    kind=target.kind,
                    namespace=namespace,
                    name=target.ref.name,
                    pointer=effect.pointer,
                    expect=effect.expect,
                    destinations=effect.destinations,
                )
                result.applied.append(f"{effect.purpose}:{effect.weight}")
            except CanaryError as exc:
                # The next pass sees the route unchanged and repeats, or sees someone's edit as drift.
                result.errors.append(str(exc))
                deps.events.record(involved=involved, reason="WriteFailed", message=str(exc), event_type="Warning")
        elif isinstance(effect, RecordEvent):
            deps.events.record(
                involved=involved, reason=effect.reason, message=effect.message, event_type=effect.event_type
            )
        elif isinstance(effect, Alert):
            log.warning("alert %s (%s): %s", effect.name, effect.severity, effect.summary)
    if status.stall != loaded.status.stall:
        # Compared with the persisted status, so once per cause: not per pass, nor again after a restart.
        result.stall_changed = (loaded.status.stall, status.stall)
        if status.stall is not None and status.stall not in _ANNOUNCED_STALLS:
            deps.events.record(involved=involved, reason="Stalled", message=status.message, event_type="Warning")
    return result
