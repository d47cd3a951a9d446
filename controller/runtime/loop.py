"""The reconcile loop: a work queue of policies, fed by watch events and timers, drained by workers.

Every policy is a key ``(namespace, name)`` in a :class:`~controller.runtime.workqueue.WorkQueue`
(client-go's semantics: a key is queued once, one worker per key at a time, timers, per-key backoff). A key
is added when:

* its policy appears or changes in a source (``sync``, every tick);
* a watch event concerns it: its route, its canary workload, its status or commands changed (``touch_*``,
  called by the watch caches' handlers the composition root installs; the controller's own writes are
  written through to the caches and wake nobody);
* a timer runs out: after each pass, :func:`controller.core.wakeups.next_pass_in` says when the rollout next
  needs one without an event (its next analysis look, the end of its step, a deadline); a rollout that only
  an event can move (ended, paused) gets no timer and costs nothing;
* a pass failed: it is retried with an exponential backoff;
* the full resync, every ``resync_seconds``, adds every key: a safety net for anything a watch missed.

Keys added by a watch event or a policy change go ahead of those added by timers, retries and resyncs, so
a person's pause or edit is acted on at once even when thousands of rollouts' looks are queued.

APScheduler is the clock: it runs the tick (heartbeat, leadership, the sources' snapshot, problems), the
timers (``fire_due``, every ``timer_resolution`` seconds) and the resync. ``workers`` threads take keys
from the queue; nothing that goes wrong in one pass stops them.
"""

from __future__ import annotations

import logging
import operator
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler

from controller.core.status import refresh_seconds
from controller.core.wakeups import next_pass_in
from controller.errors import CanaryError, WriterYieldedError
from controller.ports import Clock, PolicyRef, PolicySnapshot, PolicySource, SourcedPolicy, SourceProblem
from controller.runtime.leadership import ElectionThread
from controller.runtime.metrics import ControllerMetrics
from controller.runtime.workqueue import WorkQueue
from controller.service.alerting import AlertDispatcher
from controller.service.reconcile import Dependencies, PassResult, reconcile_once

log = logging.getLogger("controller")

Key = tuple[str, str]


class _SkippedTimers(logging.Filter):
    """Drops APScheduler's warning that the timers job was skipped while its last run was still going: under
    load (10,000 rollouts) that happens every few seconds and is harmless, as the next run fires every timer
    due; a skipped tick or resync is still reported."""

    def filter(self, record: logging.LogRecord) -> bool:
        job = record.args[0] if isinstance(record.args, tuple) and record.args else None
        return not (getattr(job, "id", None) == "timers" and "maximum number of running instances" in str(record.msg))


def _quiet_timers_logger() -> logging.Logger:
    scheduler_log = logging.getLogger("apscheduler.scheduler")
    if not any(isinstance(f, _SkippedTimers) for f in scheduler_log.filters):
        scheduler_log.addFilter(_SkippedTimers())
    return scheduler_log


class SystemClock:
    """The real clock (UTC)."""

    def now(self) -> datetime:
        """Now, timezone-aware."""
        return datetime.now(UTC)


class ReconcileLoop:
    """Runs reconcile passes for the policies of its sources (the daemon's core; :mod:`controller.runtime.daemon`).

    Args:
        sources: where policies come from.
        merge: combines the sources' snapshots (name clashes are reported on both definitions).
        dependencies_for: the adapters for one policy (its status store depends on its source).
        clock: time.
        workers: parallel passes.
        tick_seconds: time between two looks at the sources (and the cadence of a rollout under way without
            analysis, or with alerts to deliver).
        on_problem: called once per new policy problem (to log and record events).
        dispatcher: delivers the alerts recorded by passes.
        metrics: the controller's own metrics.
        is_leader: whether this replica may run passes (None: always; a standby keeps its sources warm).
        resync_seconds: time between two full resyncs (every policy queued); 0 for none.
        timer_resolution: how often due timers are fired, in seconds.
        retry_max_seconds: the longest backoff before retrying a failed pass.
        status_refresh_writes_per_second: the most status writes a second that only refresh healthy rollouts'
            last measurements (their refresh stretches beyond once a minute with the number of rollouts;
            ``controller.core.status.refresh_seconds``); 0: no limit.
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
        resync_seconds: float = 300.0,
        timer_resolution: float = 0.1,
        retry_max_seconds: float = 60.0,
        status_refresh_writes_per_second: float = 20.0,
    ) -> None:
        self.sources = list(sources)
        self.merge = merge
        self.dependencies_for = dependencies_for
        self.clock = clock or SystemClock()
        self.tick_seconds = tick_seconds
        self.resync_seconds = resync_seconds
        self.timer_resolution = timer_resolution
        self.status_refresh_writes_per_second = status_refresh_writes_per_second
        self.on_problem = on_problem
        self.dispatcher = dispatcher
        self.metrics = metrics
        self.is_leader = is_leader or (lambda: True)
        # Named readiness checks for /readyz (each returns an error message, or None when fine).
        self.readiness: dict[str, Callable[[], str | None]] = {}
        # Called at every tick (the composition root updates the watch caches' gauges from here).
        self.on_tick: list[Callable[[], None]] = []
        # Called once the loop has stopped (the composition root closes the watch caches from here).
        self.on_close: list[Callable[[], None]] = []
        # Watch events (a person's edit, pause or command) and policy changes go ahead of timers and resyncs.
        self.queue: WorkQueue[Key] = WorkQueue(
            base_delay=0.2,
            max_delay=retry_max_seconds,
            on_dequeue=self._dequeued,
            urgent_reasons=frozenset({"event", "source"}),
        )
        self.worker_count = workers
        self._workers: list[threading.Thread] = []
        self._policies: dict[Key, SourcedPolicy] = {}
        # The source snapshots the merged one was made from, held (not their id()s: a freed snapshot's id
        # is reused by the next one, which then looked unchanged and an edited policy went unseen).
        self._merged_from: tuple[PolicySnapshot, ...] | None = None
        self._merged = PolicySnapshot()
        self._by_target: dict[tuple[str, str, str], set[Key]] = {}
        self._by_workload: dict[Key, set[Key]] = {}
        self._due: dict[Key, float] = {}
        self._was_leading = False
        self._reported: set[SourceProblem] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self.heartbeat: datetime | None = None
        self.election: ElectionThread | None = None  # set by the composition root when electing a leader

    # -- what adds keys -------------------------------------------------------------------------------

    def tick(self) -> None:
        """Look at the sources, then queue every policy (a full resync): one pass each, as soon as a worker is free."""
        if self.sync():
            self.resync()

    def sync(self) -> bool:
        """Heartbeat, leadership, the sources' policies and problems; queue the new and changed policies.

        Returns:
            Whether this replica leads and its sources have synced (passes may run).
        """
        with self._sync_lock:  # the scheduler's tick and a watch thread (a policy edited) may call it at once
            return self._sync()

    def _sync(self) -> bool:
        if self._stop.is_set():
            return False
        self.heartbeat = self.clock.now()
        for hook in self.on_tick:
            try:
                hook()
            except Exception:
                log.exception("a tick hook failed")
        leading = self.is_leader()
        if self.metrics is not None:
            self.metrics.leader.set(1 if leading else 0)
        if not leading:
            self._was_leading = False
            return False  # a standby: the leader runs the passes
        if not all(source.synced() for source in self.sources):
            # Acting on a partial view could run a policy that clashes with one not seen yet.
            log.info("waiting for every policy source to sync before the first pass")
            return False
        snapshot = self._snapshot()
        self._report(snapshot)
        fresh = {(s.ref.namespace, s.ref.name): s for s in snapshot.policies}
        if fresh:
            self._start_workers()
        with self._lock:
            previous = self._policies
            changed = [
                key
                for key, sourced in fresh.items()
                if previous.get(key) is not sourced and previous.get(key) != sourced
            ]
            self._policies = fresh
            if changed or len(previous) != len(fresh) or any(key not in fresh for key in previous):
                self._index()
        became_leader = not self._was_leading
        self._was_leading = True
        if became_leader:
            self.resync()  # a new leader (or the first sync) looks at every policy
        else:
            for key in changed:
                self.queue.add(key, "source")
        if self.metrics is not None:
            self.metrics.queue_depth.set(len(self.queue))
        return True

    def took_leadership(self) -> None:
        """This replica has just become the leader (the election thread says so): look at every policy now,
        not at the next tick, including those whose passes were dropped while it did not lead (a leader that
        lost the Lease for a moment between two ticks never saw itself as a standby)."""
        with self._sync_lock:
            self._was_leading = False
            self._sync()

    def resync(self) -> None:
        """Queue every policy: the safety net for anything a watch event or a timer missed."""
        with self._lock:
            keys = list(self._policies)
        for key in keys:
            self.queue.add(key, "resync")
        if self.metrics is not None:
            self.metrics.resyncs.inc()

    def touch(self, key: Key, reason: str = "event") -> None:
        """A watch event concerns policy ``key`` (its resource, its status or commands): queue it."""
        if key in self._policies and not self._stop.is_set():
            self.queue.add(key, reason)

    def touch_target(self, kind: str, namespace: str, name: str) -> None:
        """A route object changed (someone's edit, the mesh's status): queue the policies that target it."""
        for key in self._by_target.get((kind, namespace, name), ()):
            self.queue.add(key, "event")

    def touch_workload(self, namespace: str, name: str) -> None:
        """A Deployment changed: queue the policies whose canary it is."""
        for key in self._by_workload.get((namespace, name), ()):
            self.queue.add(key, "event")

    def _snapshot(self) -> PolicySnapshot:
        """The merged snapshot, merged again only when a source's snapshot changed."""
        snapshots = tuple(source.snapshot() for source in self.sources)
        known = self._merged_from
        if known is None or len(known) != len(snapshots) or any(map(operator.is_not, known, snapshots)):
            self._merged = self.merge(*snapshots)
            self._merged_from = snapshots
        return self._merged

    def _index(self) -> None:
        """Which policies each route object and canary workload concerns. Caller holds the lock."""
        by_target: dict[tuple[str, str, str], set[Key]] = {}
        by_workload: dict[Key, set[Key]] = {}
        for key, sourced in self._policies.items():
            policy = sourced.policy
            target = policy.spec.target
            by_target.setdefault((target.kind, policy.target_namespace, target.ref.name), set()).add(key)
            canary = policy.spec.workload.canary
            if canary is not None:
                by_workload.setdefault((canary.namespace or policy.metadata.namespace, canary.name), set()).add(key)
        self._by_target = by_target
        self._by_workload = by_workload

    def _report(self, snapshot: PolicySnapshot) -> None:
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

    # -- the workers ----------------------------------------------------------------------------------

    def _start_workers(self) -> None:
        with self._lock:
            if self._workers or self._stop.is_set():
                return
            self._workers = [
                threading.Thread(target=self._work, name=f"reconcile-{index}", daemon=True)
                for index in range(self.worker_count)
            ]
        for worker in self._workers:
            worker.start()

    def _dequeued(self, key: Key, seconds: float, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.queue_seconds.labels(reason).observe(seconds)

    def _work(self) -> None:
        while not self.queue.shutting_down:
            key = self.queue.get(timeout=0.5)
            if key is None:
                continue
            try:
                self._process(key)
            except Exception:
                log.exception("a worker failed", extra={"namespace": key[0], "policy": key[1]})
            finally:
                self.queue.done(key)

    def _process(self, key: Key) -> None:
        with self._lock:
            sourced = self._policies.get(key)
            due = self._due.pop(key, None)
        if sourced is None:
            self.queue.forget(key)
            return  # the policy is gone (its timers run out harmlessly)
        if not self.is_leader():
            return  # a new leader resyncs every policy
        started = time.monotonic()
        if due is not None and self.metrics is not None and started >= due:
            self.metrics.pass_lag.observe(started - due)
        result = self._reconcile(sourced)
        if result is None:  # failed: back off
            self.queue.add_rate_limited(key)
            return
        self.queue.forget(key)
        decision = result.decision
        if decision is None:
            delay: float | None = self.tick_seconds
        else:
            delay = next_pass_in(sourced.policy, decision.status, self.clock.now(), idle_seconds=self.tick_seconds)
        if delay is not None:
            with self._lock:
                self._due[key] = min(self._due.get(key, float("inf")), time.monotonic() + delay)
            self.queue.add_after(key, delay, "timer")

    def _reconcile(self, sourced: SourcedPolicy) -> PassResult | None:
        """One pass, logged; None when it failed (to be retried with a backoff)."""
        ref = sourced.ref
        context = {"policy": ref.name, "namespace": ref.namespace, "source": ref.source}
        started = time.monotonic()
        try:
            result = reconcile_once(
                policy=sourced.policy,
                ref=ref,
                deps=self.dependencies_for(ref),
                now=self.clock.now(),
                refresh_after=refresh_seconds(len(self._policies), self.status_refresh_writes_per_second),
            )
        except WriterYieldedError as exc:  # reported once when it began (controller.runtime.writers)
            log.debug("pass skipped: %s", exc, extra=context)
            return PassResult()
        except CanaryError as exc:
            log.warning("pass failed: %s", exc, extra={**context, "error": str(exc)})
            return None
        except Exception:
            log.exception("pass crashed", extra=context)
            return None
        decision = result.decision
        if decision is None:
            return result
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
        return result

    # -- running --------------------------------------------------------------------------------------

    def run_forever(self) -> None:
        """Tick, fire timers and resync until ``stop()``; then let running passes finish (bounded) and return."""
        scheduler = BackgroundScheduler(
            timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1}, logger=_quiet_timers_logger()
        )
        now = datetime.now(UTC)
        scheduler.add_job(
            self.sync, "interval", seconds=self.tick_seconds, next_run_time=now, id="tick", misfire_grace_time=None
        )
        scheduler.add_job(
            self.queue.fire_due, "interval", seconds=self.timer_resolution, id="timers", misfire_grace_time=None
        )
        if self.resync_seconds > 0:
            scheduler.add_job(
                self.resync, "interval", seconds=self.resync_seconds, id="resync", misfire_grace_time=None
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
        """Finish the queued and running passes for up to ``timeout`` s (each persists before it acts; what is
        left is picked up by the next start), then stop the workers and close the sources."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        with self._lock:
            workers = list(self._workers)
        while workers and (len(self.queue) or self.queue.processing) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.queue.shut_down()
        for worker in workers:
            worker.join(max(deadline - time.monotonic(), 0.0))
        if self.dispatcher is not None:
            self.dispatcher.shutdown(timeout=1.0)
        for source in self.sources:
            source.close()
        for close in self.on_close:
            close()
