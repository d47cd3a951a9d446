"""The working state of one pass of the rollout state machine, and the moves every phase handler shares.

:class:`RolloutPass` holds a copy of the status being decided, the observations, the time and the effects
decided so far; its methods are the machine's vocabulary: a transition (with its history entry, Event and
alert), a note, a route write (with the write protocol's bookkeeping), a failure, a rollback. Only
:mod:`controller.core.rollout` and :mod:`controller.core.rollout_phases` use it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from controller.core.effects import Effect, RecordEvent, WriteRoute
from controller.core.policy import CanaryPolicy
from controller.core.routes import (
    ResolvedRoute,
    current_weights,
    resolve_route,
    route_destinations,
    route_pointer,
    with_canary_weight,
)
from controller.core.status import (
    HISTORY_LIMIT,
    PENDING_ALERTS_LIMIT,
    Alert,
    HistoryEntry,
    Observations,
    Phase,
    RolloutStatus,
    RouteSnapshot,
    Severity,
    Verdict,
    copy_status,
)
from controller.errors import RouteResolutionError


def target_key(policy: CanaryPolicy) -> str:
    """Fingerprint of the route the policy edits (object and route selector): a route snapshot belongs to it."""
    target = policy.spec.target.model_dump(mode="json", include={"virtual_service", "tcp_route", "route"})
    payload = json.dumps(target, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


class RolloutPass:
    """Mutable working state of one decision: ``decide`` and the phase handlers share it."""

    def __init__(self, policy: CanaryPolicy, status: RolloutStatus, obs: Observations, now: datetime) -> None:
        self.policy = policy
        self.status = copy_status(status)
        self.obs = obs
        self.now = now
        self.effects: list[Effect] = []
        self.resolved: ResolvedRoute | None = None
        self.live_weights: list[int] | None = None

    # -- bookkeeping -------------------------------------------------------------------------------

    def transition(self, to: Phase, reason: str, message: str = "", *, warning: bool = False) -> None:
        """Move to phase ``to``: its message, a history entry, an Event, and the alert the reason or the phase
        raises (queued in the outbox and returned as an effect)."""
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
        alert = ALERTS_BY_REASON.get(reason) or ALERTS_BY_PHASE.get(to)
        if alert is not None:
            name, severity = alert
            pending = Alert(
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
                checks=[c for c in self.status.last_checks if c.verdict != Verdict.PASS],
            )
            self.status.pending_alerts.append(pending)
            del self.status.pending_alerts[:-PENDING_ALERTS_LIMIT]
            # The effect is the same alert, for logs and metrics; the outbox above is what gets delivered.
            self.effects.append(pending)

    def note(self, reason: str, message: str) -> None:
        """A history entry without a phase change (commands refused, writes repeated, ...)."""
        phase = self.status.phase
        self.status.history.append(
            HistoryEntry(time=self.now, from_phase=phase, to_phase=phase, reason=reason, message=message)
        )
        del self.status.history[:-HISTORY_LIMIT]

    def event(self, reason: str, message: str, *, warning: bool = False) -> None:
        """Record a Kubernetes Event on the policy (a Warning when ``warning``)."""
        self.effects.append(RecordEvent(reason=reason, message=message, event_type="Warning" if warning else "Normal"))

    # -- route helpers -----------------------------------------------------------------------------

    @property
    def steps(self) -> list[int]:
        """The schedule's canary weights."""
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
        """The resolved route's destinations as they are on the live object."""
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
        """Decide the write that puts the original route back exactly as it was snapshotted."""
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
        """End the run as Failed, with ``message`` as its last error; no write is pending any more."""
        self.status.last_error = message
        self.status.write_pending = False
        self.transition(Phase.FAILED, reason, message, warning=True)

    def start_rollback(self, reason: str, message: str, ends_in: Phase = Phase.ROLLED_BACK) -> None:
        """Enter RollingBack, to end in ``ends_in``: restore the original route, or finish at once when this
        run never wrote one."""
        self.status.rollback_reason = reason
        self.status.rollback_ends_in = ends_in
        self.transition(Phase.ROLLING_BACK, reason, message, warning=True)
        if self.status.original is None:
            # Nothing was ever written in this run: the original route is still in place.
            self.finish_rollback()
        else:
            self.write_restore()

    def finish_rollback(self) -> None:
        """The original route is back: end as RolledBack (or Aborted), with no canary weight."""
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
        """Start a new run in Pending (a new run id), keeping history, processed commands and the alert outbox."""
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


ALERTS_BY_PHASE: dict[Phase, tuple[str, Severity]] = {
    Phase.ROLLED_BACK: ("CanaryRolledBack", "critical"),
    Phase.ABORTED: ("CanaryRolledBack", "warning"),
    Phase.FAILED: ("CanaryFailed", "critical"),
    Phase.PROMOTED: ("CanaryPromoted", "info"),
}
ALERTS_BY_REASON: dict[str, tuple[str, Severity]] = {
    "DriftDetected": ("CanaryDriftDetected", "warning"),
    "AnalysisInconclusive": ("CanaryPaused", "warning"),
    "Paused": ("CanaryPaused", "info"),
    "AwaitingPromotion": ("CanaryPaused", "info"),
}


def index_for(steps: list[int], weight: int) -> int:
    """The schedule position of a weight: the last step at or below it (0 when it is below every step)."""
    below = [index for index, step in enumerate(steps) if step <= weight]
    return below[-1] if below else 0


def next_index(work: RolloutPass) -> int | None:
    """The next step above the weight the run holds, or None when no step is above it (the last step)."""
    weight = work.status.weight if work.status.weight is not None else -1
    return next((index for index, step in enumerate(work.steps) if step > weight), None)
