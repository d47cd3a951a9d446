"""The reconcile loop: every tick, take the policies of all sources and reconcile each in a worker.

APScheduler drives the tick (one instance at a time, missed ticks coalesced); the passes run in a bounded
thread pool, and a policy whose previous pass is still running is skipped for that tick, so one slow
rollout, query or API call never delays the others. Nothing that goes wrong in one pass stops the loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler

from controller.errors import CanaryError, WriterYieldedError
from controller.ports import Clock, PolicyRef, PolicySnapshot, PolicySource, SourcedPolicy, SourceProblem
from controller.runtime.leadership import ElectionThread
from controller.runtime.metrics import ControllerMetrics
from controller.service.alerting import AlertDispatcher
from controller.service.reconcile import Dependencies, reconcile_once

log = logging.getLogger("controller")


class SystemClock:
    """The real clock (UTC)."""

    def now(self) -> datetime:
        """Now, timezone-aware."""
        return datetime.now(UTC)


class ReconcileLoop:
    """Runs reconcile passes for every policy of its sources (the daemon's core; :mod:`controller.runtime.daemon`).

    Args:
        sources: where policies come from.
        merge: combines the sources' snapshots (name clashes are reported on both definitions).
        dependencies_for: the adapters for one policy (its status store depends on its source).
        clock: time.
        workers: parallel passes.
        tick_seconds: time between passes of one policy.
        on_problem: called once per new policy problem (to log and record events).
        dispatcher: delivers the alerts recorded by passes.
        metrics: the controller's own metrics.
        is_leader: whether this replica may run passes (None: always; a standby keeps its sources warm).
    """

    def __init__(
        self,
        *,
        sources: Sequence[PolicySource],
        merge: Callable[..., PolicySnapshot],
        dependencies_for: Callable[[PolicyRef], Dependencies],
        clock: Clock | None = None,
        workers: int = 8,
        tick_seconds: float = 5.0,
        on_problem: Callable[[SourceProblem], None] | None = None,
        dispatcher: AlertDispatcher | None = None,
        metrics: ControllerMetrics | None = None,
        is_leader: Callable[[], bool] | None = None,
    ) -> None:
        self.sources = list(sources)
        self.merge = merge
        self.dependencies_for = dependencies_for
        self.clock = clock or SystemClock()
        self.tick_seconds = tick_seconds
        self.on_problem = on_problem
        self.dispatcher = dispatcher
        self.metrics = metrics
        self.is_leader = is_leader or (lambda: True)
        # Named readiness checks for /readyz (each returns an error message, or None when fine).
        self.readiness: dict[str, Callable[[], str | None]] = {}
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="reconcile")
        self._running: dict[tuple[str, str], Future[None]] = {}
        self._reported: set[SourceProblem] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.heartbeat: datetime | None = None
        self.election: ElectionThread | None = None  # set by the composition root when electing a leader

    def tick(self) -> None:
        """Dispatch one pass for every policy whose previous pass has finished."""
        if self._stop.is_set():
            return
        self.heartbeat = self.clock.now()
        leading = self.is_leader()
        if self.metrics is not None:
            self.metrics.leader.set(1 if leading else 0)
        if not leading:
            return  # a standby: the leader runs the passes
        if not all(source.synced() for source in self.sources):
            # Acting on a partial view could run a policy that clashes with one not seen yet.
            log.info("waiting for every policy source to sync before the first pass")
            return
        snapshot = self.merge(*(source.snapshot() for source in self.sources))
        if self.metrics is not None:
            for kind in ("file", "crd"):
                self.metrics.policy_errors.labels(kind).set(sum(p.source == kind for p in snapshot.problems))
        for problem in snapshot.problems:
            if problem not in self._reported:
                self._reported.add(problem)
                log.warning(
                    "policy skipped: %s: %s",
                    problem.location,
                    problem.message,
                    extra={"source": problem.source, "policy": problem.name, "namespace": problem.namespace},
                )
                if self.on_problem is not None:
                    self.on_problem(problem)
        self._reported &= set(snapshot.problems)
        with self._lock:
            for sourced in snapshot.policies:
                key = (sourced.ref.namespace, sourced.ref.name)
                previous = self._running.get(key)
                if previous is not None and not previous.done():
                    continue
                if self._stop.is_set():
                    return
                self._running[key] = self._pool.submit(self._reconcile, sourced)

    def _reconcile(self, sourced: SourcedPolicy) -> None:
        ref = sourced.ref
        context = {"policy": ref.name, "namespace": ref.namespace, "source": ref.source}
        started = time.monotonic()
        try:
            result = reconcile_once(
                policy=sourced.policy, ref=ref, deps=self.dependencies_for(ref), now=self.clock.now()
            )
        except WriterYieldedError as exc:  # reported once when it began (controller.runtime.writers)
            log.debug("pass skipped: %s", exc, extra=context)
            return
        except CanaryError as exc:
            log.warning("pass failed: %s", exc, extra={**context, "error": str(exc)})
            return
        except Exception:
            log.exception("pass crashed", extra=context)
            return
        decision = result.decision
        if decision is None:
            return
        if self.metrics is not None:
            self.metrics.observe_pass(ref, decision, time.monotonic() - started)
        status = decision.status
        if result.persisted and self.dispatcher is not None and (status.pending_alerts or status.firing_alerts):
            # After the pass has written the route: alerting never delays a rollback.
            self.dispatcher.maintain(policy=sourced.policy, ref=ref, status=status)
        for error in result.errors:
            log.warning("pass incomplete: %s", error, extra={**context, "run_id": status.run_id, "error": error})
        if result.stall_changed is not None:  # once per cause: the service compares with the persisted status
            before, after = result.stall_changed
            stall_context = {**context, "run_id": status.run_id, "stall": str(after) if after else None}
            if after is not None:
                log.warning("rollout stalled (%s): %s", after, status.message, extra=stall_context)
            elif before is not None:
                log.info("rollout moves again (was %s): %s", before, status.message, extra=stall_context)
        for effect in decision.effects:
            if effect.type == "RecordEvent":
                log.info(
                    "%s: %s",
                    effect.reason,
                    effect.message,
                    extra={
                        **context,
                        "run_id": status.run_id,
                        "phase": str(status.phase),
                        "step": status.step_index,
                        "weight": status.weight,
                    },
                )

    def run_forever(self) -> None:
        """Tick until ``stop()``; then let running passes finish (bounded) and return."""
        scheduler = BackgroundScheduler(timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1})
        scheduler.add_job(
            self.tick,
            "interval",
            seconds=self.tick_seconds,
            next_run_time=datetime.now(UTC),
            id="tick",
            misfire_grace_time=None,
        )
        scheduler.start()
        try:
            self._stop.wait()
        finally:
            scheduler.shutdown(wait=False)
            self.shutdown()

    def stop(self) -> None:
        """Stop taking new work (safe from a signal handler)."""
        self._stop.set()

    def shutdown(self, timeout: float = 8.0) -> None:
        """Wait up to ``timeout`` s for in-flight passes (each persists before it acts), then close sources."""
        self._stop.set()
        with self._lock:
            futures = list(self._running.values())
        deadline = threading.Event()
        timer = threading.Timer(timeout, deadline.set)
        timer.start()
        for future in futures:
            while not future.done() and not deadline.is_set():
                deadline.wait(0.05)
        timer.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self.dispatcher is not None:
            self.dispatcher.shutdown(timeout=1.0)
        for source in self.sources:
            source.close()
