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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from controller.core.alerts import AlertMessage, message_for, route_label
from controller.core.policy import AlertRoute, CanaryPolicy
from controller.core.rollout import ALERT_LOG_LIMIT, AlertRecord, PendingAlert, RolloutStatus
from controller.errors import ConflictError
from controller.ports import AlertDelivery, Clock, PolicyRef, StatusStore

log = logging.getLogger(__name__)


def routes_for(policy: CanaryPolicy, alert: PendingAlert) -> list[AlertRoute]:
    """The policy's alert routes that take this alert."""
    return [route for route in policy.spec.alerts if alert.name in route.on]


class AlertDispatcher:
    """Drains the alert outbox of each policy's status.

    Args:
        delivery: sends one message to one route (the adapter retries with backoff, bounded).
        store_for: the status store of a policy.
        clock: time, for the log.
        prometheus_url: for graph links when a policy names no Prometheus of its own.
        workers: parallel deliveries.
        on_outcome: called with (sink, result) for every final outcome, for metrics.
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
    ) -> None:
        self.delivery = delivery
        self.store_for = store_for
        self.clock = clock
        self.prometheus_url = prometheus_url
        self.on_outcome = on_outcome
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="alerts")
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()

    def dispatch(self, *, policy: CanaryPolicy, ref: PolicyRef, status: RolloutStatus) -> int:
        """Start delivering every pending alert not already being delivered; returns how many started."""
        started = 0
        for alert in status.pending_alerts:
            with self._lock:
                if alert.key in self._in_flight:
                    continue
                self._in_flight.add(alert.key)
            self._pool.submit(self._deliver, policy, ref, status, alert)
            started += 1
        return started

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

    def _message(self, policy: CanaryPolicy, status: RolloutStatus, alert: PendingAlert) -> AlertMessage:
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

    def _deliver(self, policy: CanaryPolicy, ref: PolicyRef, status: RolloutStatus, alert: PendingAlert) -> None:
        try:
            records = []
            for route in routes_for(policy, alert):
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
            self._record(ref, alert.key, records)
        except Exception:
            log.exception("alert %s could not be delivered or recorded; it stays pending", alert.key)
        finally:
            with self._lock:
                self._in_flight.discard(alert.key)

    def _record(self, ref: PolicyRef, key: str, records: list[AlertRecord]) -> None:
        store = self.store_for(ref)
        for _ in range(10):
            loaded = store.load(policy=ref)
            status = loaded.status.model_copy(deep=True)
            if not any(p.key == key for p in status.pending_alerts):
                return
            status.pending_alerts = [p for p in status.pending_alerts if p.key != key]
            status.alert_log = [*status.alert_log, *records][-ALERT_LOG_LIMIT:]
            try:
                store.save(policy=ref, status=status, version=loaded.version)
                return
            except ConflictError:
                continue
        raise ConflictError([f"alert {key}: status kept changing; outcome not recorded yet"], code=409)
