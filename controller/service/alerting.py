"""Alert delivery: the outbox in the rollout's status, drained by workers of their own.

A decision that calls for an alert records it in ``status.pendingAlerts`` in the same write as the
decision itself, so the alert exists exactly when the rollback (or failure, or drift) does, and a
restart cannot lose it. After the pass has applied its route writes, the dispatcher hands each pending
alert to a worker of its own pool: sending never delays or blocks a rollback, and a slow or broken sink
never stalls another rollout's passes. When every route has its final outcome (sent, or failed after
the adapter's bounded retries), the worker removes the alert from the outbox and appends the outcomes
to ``status.alertLog`` with one conditional status write. An alert is dispatched once per process; one
delivered but not yet recorded when the process dies is sent again after the restart, with the same
delivery key, so receivers (Alertmanager by its labels, webhooks by ``X-Canary-Delivery``) see a retry,
not a new event.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from controller.core.alerts import AlertMessage, message_for, route_label
from controller.core.policy import AlertRoute, CanaryPolicy
from controller.core.status import ALERT_LOG_LIMIT, Alert, AlertRecord, FiringAlert, Phase, RolloutStatus
from controller.errors import ConflictError
from controller.ports import AlertDelivery, Clock, PolicyRef, StatusStore

log = logging.getLogger(__name__)

# Alertmanager resolves a firing alert 5 minutes after its last post: re-post well before that.
REPOST_SECONDS = 240.0
DONE_KEPT = 10_000
# The alerts that describe a lasting condition (Alertmanager keeps them firing until a promotion).
LASTING = frozenset({"CanaryRolledBack", "CanaryFailed", "CanaryDriftDetected"})


def routes_for(policy: CanaryPolicy, alert: Alert, defaults: list[AlertRoute] | None = None) -> list[AlertRoute]:
    """The alert routes that take this alert: the policy's own, then the controller's defaults."""
    own = {route.name for route in policy.spec.alerts}
    routes = [*policy.spec.alerts, *(route for route in defaults or [] if route.name not in own)]
    return [route for route in routes if alert.name in route.on]


class AlertDispatcher:
    """Drains the alert outbox of each policy's status.

    Args:
        delivery: sends one message to one route (the adapter retries with backoff, bounded).
        store_for: the status store of a policy.
        clock: time, for the log.
        prometheus_url: for graph links when a policy names no Prometheus of its own.
        workers: parallel deliveries.
        on_outcome: called with (sink, result) for every final outcome, for metrics.
        default_routes: routes every policy's alerts also go to (settings), unless the policy has a route of
            the same name.
    """

    def __init__(
        self,
        *,
        delivery: AlertDelivery,
        store_for: Callable[[PolicyRef], StatusStore],
        clock: Clock,
        prometheus_url: str | None = None,
        workers: int = 4,
        on_outcome: Callable[[str, str], None] | None = None,
        default_routes: list[AlertRoute] | None = None,
    ) -> None:
        self.delivery = delivery
        self.store_for = store_for
        self.clock = clock
        self.prometheus_url = prometheus_url
        self.on_outcome = on_outcome
        self.default_routes = list(default_routes or [])
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="alerts")
        self._in_flight: set[str] = set()
        # Alerts delivered and recorded by this process: a pass that read its status just before the
        # outcome was recorded still lists them as pending and must not send them again.
        self._done: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def dispatch(self, *, policy: CanaryPolicy, ref: PolicyRef, status: RolloutStatus) -> int:
        """Start delivering every pending alert not already being delivered; returns how many started."""
        started = 0
        for alert in status.pending_alerts:
            with self._lock:
                if alert.key in self._in_flight or alert.key in self._done:
                    continue
                self._in_flight.add(alert.key)
            self._pool.submit(self._deliver, policy, ref, status, alert)
            started += 1
        return started

    def maintain(self, *, policy: CanaryPolicy, ref: PolicyRef, status: RolloutStatus) -> int:
        """Deliver pending alerts, re-post lasting ones to Alertmanager, and resolve them after a promotion.

        A lasting alert (rolled back, failed, drift) stays firing in Alertmanager, re-posted every
        ``REPOST_SECONDS``, until a later run of the same policy is promoted; then it is posted once more
        with ``endsAt`` and forgotten. An alert that opened a PagerDuty incident is not re-posted; once the
        policy is promoted (a later run, or the same run after a pause) a resolve event closes the incident.
        """
        started = self.dispatch(policy=policy, ref=ref, status=status)
        now = self.clock.now()
        routes = {route.name: route for route in [*self.default_routes, *policy.spec.alerts]}
        for firing in status.firing_alerts:
            route = routes.get(firing.route)
            paging = route is not None and route.sink == "pagerduty"
            # A PagerDuty incident stays open by itself (no re-post) until a promotion: of a later run, or of
            # the same run once a pause or drift that paged someone is over.
            resolve = status.phase == Phase.PROMOTED and (paging or status.run_id != firing.alert.run_id)
            due = not paging and (now - firing.posted_at).total_seconds() >= REPOST_SECONDS
            if route is None or not (resolve or due):
                continue
            token = f"{firing.alert.key}#{firing.route}#{'resolve' if resolve else 'repost'}"
            with self._lock:
                if token in self._in_flight:
                    continue
                self._in_flight.add(token)
            self._pool.submit(self._repost, policy, ref, status, firing, route, token, resolve)
            started += 1
        return started

    def _repost(
        self,
        policy: CanaryPolicy,
        ref: PolicyRef,
        status: RolloutStatus,
        firing: FiringAlert,
        route: AlertRoute,
        token: str,
        resolve: bool,
    ) -> None:
        try:
            now = self.clock.now()
            message = self._message(policy, status, firing.alert)
            message = replace(message, state="resolved", ended_at=now) if resolve else message
            outcome = self.delivery.deliver(policy=policy, route=route, message=message)
            if self.on_outcome is not None:
                self.on_outcome(route.sink, outcome.result)
            if outcome.result != "sent":
                return  # tried again at the next pass

            def mutate(saved: RolloutStatus) -> bool:
                kept = []
                for entry in saved.firing_alerts:
                    if entry.alert.key == firing.alert.key and entry.route == firing.route:
                        if not resolve:
                            kept.append(entry.model_copy(update={"posted_at": now}))
                        continue
                    kept.append(entry)
                saved.firing_alerts = kept
                if resolve:
                    saved.alert_log = [
                        *saved.alert_log,
                        AlertRecord(
                            key=firing.alert.key,
                            name=firing.alert.name,
                            sink=f"{route.name}/{route.sink}",
                            result="sent",
                            attempts=outcome.attempts,
                            error="resolved",
                            at=now,
                        ),
                    ][-ALERT_LOG_LIMIT:]
                return True

            self._update(ref, mutate)
        except Exception:
            log.exception("alert %s could not be re-posted or resolved", firing.alert.key)
        finally:
            with self._lock:
                self._in_flight.discard(token)

    def wait_idle(self, timeout: float) -> bool:
        """True once no delivery is in flight (for shutdown and tests)."""
        done = threading.Event()
        deadline = self.clock.now().timestamp() + timeout
        while self.clock.now().timestamp() < deadline:
            with self._lock:
                if not self._in_flight:
                    return True
            done.wait(0.02)
        return False

    def shutdown(self, timeout: float = 5.0) -> None:
        """Let in-flight deliveries finish (bounded), then stop."""
        self.wait_idle(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)
        close = getattr(self.delivery, "close", None)
        if callable(close):
            close()

    def _message(self, policy: CanaryPolicy, status: RolloutStatus, alert: Alert) -> AlertMessage:
        analysis = policy.spec.analysis
        prometheus = (analysis.prometheus.url if analysis and analysis.prometheus else None) or self.prometheus_url
        target = policy.spec.target
        route = route_label(status.original.pointer) if status.original else "-"
        return message_for(
            policy_name=policy.metadata.name,
            namespace=policy.metadata.namespace,
            target=f"{target.kind} {policy.target_namespace}/{target.ref.name}",
            route=route,
            key=alert.key,
            name=alert.name,
            severity=alert.severity,
            reason=alert.reason,
            summary=alert.summary,
            from_phase=str(alert.from_phase) if alert.from_phase else None,
            to_phase=str(alert.to_phase),
            step_index=alert.step_index,
            step_count=len(policy.spec.schedule.steps),
            weight=alert.weight,
            run_id=alert.run_id,
            created_at=alert.created_at,
            checks=alert.checks,
            prometheus_url=prometheus,
        )

    def _deliver(self, policy: CanaryPolicy, ref: PolicyRef, status: RolloutStatus, alert: Alert) -> None:
        try:
            records = []
            firing: list[FiringAlert] = []
            for route in routes_for(policy, alert, self.default_routes):
                severity = (route.severity or {}).get(alert.name, alert.severity)
                message = replace(self._message(policy, status, alert), severity=severity)
                outcome = self.delivery.deliver(policy=policy, route=route, message=message)
                records.append(
                    AlertRecord(
                        key=alert.key,
                        name=alert.name,
                        sink=f"{route.name}/{route.sink}",
                        result="sent" if outcome.result == "sent" else "failed",
                        attempts=outcome.attempts,
                        error=outcome.error,
                        at=self.clock.now(),
                    )
                )
                if self.on_outcome is not None:
                    self.on_outcome(route.sink, outcome.result)
                if outcome.result == "sent" and (
                    (route.sink == "alertmanager" and alert.name in LASTING) or route.sink == "pagerduty"
                ):
                    firing.append(FiringAlert(alert=alert, route=route.name, posted_at=self.clock.now()))
            self._record(ref, alert.key, records, firing)
            with self._lock:
                self._done[alert.key] = None
                while len(self._done) > DONE_KEPT:
                    self._done.popitem(last=False)
        except Exception:
            log.exception("alert %s could not be delivered or recorded; it stays pending", alert.key)
        finally:
            with self._lock:
                self._in_flight.discard(alert.key)

    def _record(self, ref: PolicyRef, key: str, records: list[AlertRecord], firing: list[FiringAlert]) -> None:
        def mutate(status: RolloutStatus) -> bool:
            if not any(p.key == key for p in status.pending_alerts):
                return False
            status.pending_alerts = [p for p in status.pending_alerts if p.key != key]
            status.alert_log = [*status.alert_log, *records][-ALERT_LOG_LIMIT:]
            status.firing_alerts = [*status.firing_alerts, *firing][-ALERT_LOG_LIMIT:]
            return True

        self._update(ref, mutate)

    def _update(self, ref: PolicyRef, mutate: Callable[[RolloutStatus], bool]) -> None:
        """Apply ``mutate`` to the stored status with a conditional write, retrying on conflict."""
        store = self.store_for(ref)
        for _ in range(10):
            loaded = store.load(policy=ref)
            status = loaded.status.model_copy(deep=True)
            if not mutate(status):
                return
            try:
                store.save(policy=ref, status=status, version=loaded.version)
                return
            except ConflictError:
                continue
        raise ConflictError(
            [f"{ref.namespace}/{ref.name}: status kept changing; alert outcome not recorded yet"], code=409
        )
