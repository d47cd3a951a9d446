"""The controller's own metrics (prometheus_client), on a registry of their own, served on ``/metrics``."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from controller.core.effects import Decision
from controller.core.status import Alert, Phase
from controller.ports import PolicyRef


class ControllerMetrics:
    """Every metric the daemon exports, and how a pass updates them."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        labels = ["namespace", "policy"]
        self.weight = Gauge(
            "canary_weight", "Canary weight of the current step, percent.", labels, registry=self.registry
        )
        self.step = Gauge(
            "canary_step", "Index of the current step (-1 before the first).", labels, registry=self.registry
        )
        self.phase = Gauge(
            "canary_phase",
            "1 for the rollout's current phase, 0 for the others.",
            [*labels, "phase"],
            registry=self.registry,
        )
        self.verdicts = Counter(
            "canary_analysis_verdicts", "Analysis verdicts per check.", ["metric", "verdict"], registry=self.registry
        )
        self.rollbacks = Counter("canary_rollbacks", "Rollbacks, by reason.", ["reason"], registry=self.registry)
        self.promotions = Counter("canary_promotions", "Rollouts promoted.", registry=self.registry)
        self.pass_duration = Histogram(
            "canary_tick_duration_seconds",
            "Duration of one reconcile pass of one policy.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.alerts_sent = Counter(
            "canary_alerts_sent",
            "Alerts delivered or given up on, per sink kind and final result (after retries).",
            ["sink", "result"],
            registry=self.registry,
        )
        self.api_errors = Counter(
            "canary_kubernetes_api_errors",
            "Failed Kubernetes API calls, by HTTP status (0: no answer).",
            ["code"],
            registry=self.registry,
        )
        self.leader = Gauge("canary_leader", "1 when this replica is the leader.", registry=self.registry)
        self.policy_errors = Gauge(
            "canary_policy_errors",
            "Problems with policies that keep them from running (a bad file or resource, a name clash), by source.",
            ["source"],
            registry=self.registry,
        )
        self.conflicting_writers = Gauge(
            "canary_conflicting_writers",
            "Other controllers seen writing this policy's status within the last minute (0: none).",
            labels,
            registry=self.registry,
        )
        self.stalled = Gauge(
            "canary_stalled",
            "1 while a rollout that has not ended does not move on, labelled with why (its status's short stall "
            "reason: AwaitingAnalysis, CanaryNotReady, WaitingForTarget, Paused...); no series while it moves.",
            [*labels, "reason"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "canary_workqueue_depth", "Policies queued for a pass, not yet taken by a worker.", registry=self.registry
        )
        self.queue_seconds = Histogram(
            "canary_workqueue_queue_seconds",
            "Time from a policy being queued to a worker taking it, by why it was queued (event, timer, resync, "
            "source, retry).",
            ["reason"],
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
            registry=self.registry,
        )
        self.pass_lag = Histogram(
            "canary_pass_lag_seconds",
            "How late a timer's pass (next analysis look, step end, deadline) started after it was due.",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.resyncs = Counter(
            "canary_resyncs",
            "Full resyncs (every policy queued): at start, on leading, and periodically.",
            registry=self.registry,
        )
        self.cache_objects = Gauge(
            "canary_cache_objects", "Objects held by each watch cache.", ["resource"], registry=self.registry
        )
        self.cache_events = Counter(
            "canary_cache_events",
            "Watch events received by each watch cache, by type.",
            ["resource", "type"],
            registry=self.registry,
        )
        self.cache_lists = Counter(
            "canary_cache_lists",
            "LISTs made by each watch cache (its first, and each after a failure or a 410).",
            ["resource"],
            registry=self.registry,
        )
        self._cache_counts: dict[tuple[str, str, str], int] = {}
        self._evaluations: dict[tuple[str, str], datetime | None] = {}
        self._stalls: dict[tuple[str, str], str] = {}
        # The weight, step and phase each rollout's series show.
        self._shown: dict[tuple[str, str], tuple[int, int, Phase]] = {}
        self._lock = threading.Lock()

    def observe_caches(self, caches: Iterable[Any]) -> None:
        """Update the watch caches' metrics (at each tick): each cache has ``name``, ``len()`` and ``stats``
        (:class:`~controller.adapters.kubernetes.informer.InformerStats`, counts since its start)."""
        for cache in caches:
            self.cache_objects.labels(cache.name).set(len(cache))
            counts = {
                ("lists", ""): cache.stats.lists,
                **{("event", kind): n for kind, n in cache.stats.events.items()},
            }
            for (what, kind), count in counts.items():
                key = (cache.name, what, kind)
                with self._lock:
                    delta = count - self._cache_counts.get(key, 0)
                    self._cache_counts[key] = count
                if delta > 0:
                    if what == "lists":
                        self.cache_lists.labels(cache.name).inc(delta)
                    else:
                        self.cache_events.labels(cache.name, kind).inc(delta)

    def alert_outcome(self, sink: str, result: str) -> None:
        """Count one final delivery outcome."""
        self.alerts_sent.labels(sink=sink, result=result).inc()

    def api_error(self, code: int) -> None:
        """Count one failed Kubernetes API call."""
        self.api_errors.labels(code=str(code)).inc()

    def _observe_stall(self, key: tuple[str, str], stall: str | None) -> None:
        """One series per stalled rollout, for its current reason only: the old reason's series goes."""
        with self._lock:
            before = self._stalls.pop(key, None)
            if stall is not None:
                self._stalls[key] = stall
        if before is not None and before != stall:
            self.stalled.remove(*key, before)
        if stall is not None:
            self.stalled.labels(*key, stall).set(1)

    def observe_pass(self, ref: PolicyRef, decision: Decision, seconds: float) -> None:
        """Update the gauges and counters from one pass's decision."""
        status = decision.status
        self.pass_duration.observe(seconds)
        key = (ref.namespace, ref.name)
        shown = (status.weight if status.weight is not None else 0, status.step_index, status.phase)
        with self._lock:
            changed = self._shown.get(key) != shown
            self._shown[key] = shown
        if changed:  # most passes change none of them: the series keep their values
            self.weight.labels(ref.namespace, ref.name).set(shown[0])
            self.step.labels(ref.namespace, ref.name).set(shown[1])
            for phase in Phase:
                self.phase.labels(ref.namespace, ref.name, phase.value).set(1 if status.phase == phase else 0)
        stall = str(status.stall) if status.stall is not None else None
        if stall is not None or key in self._stalls:
            self._observe_stall(key, stall)
        with self._lock:
            new_evaluation = (
                status.last_analysis_at is not None and self._evaluations.get(key) != status.last_analysis_at
            )
            self._evaluations[key] = status.last_analysis_at
        if new_evaluation:
            for check in status.last_checks:
                self.verdicts.labels(metric=check.name, verdict=str(check.verdict)).inc()
        for effect in decision.effects:
            if isinstance(effect, Alert) and effect.name == "CanaryRolledBack":
                # The cause is the reason of the transition into RollingBack (a small, fixed set).
                cause = next(
                    (h.reason for h in reversed(status.history) if h.to_phase == Phase.ROLLING_BACK), effect.reason
                )
                self.rollbacks.labels(reason=cause).inc()
            if isinstance(effect, Alert) and effect.name == "CanaryPromoted":
                self.promotions.inc()
