"""Noticing a second controller writing the same policies, and stepping aside.

:class:`WriterGuard` keeps, per policy, what this daemon has seen of the stamps in the statuses it loads
(the rule is :mod:`controller.core.writers`; the clock is this process's monotonic clock). When another
writer's new stamp appears it logs an error, records a Warning Event ``ConflictingWriters`` on the policy
(on its target in file mode) and sets ``canary_conflicting_writers``; with election off, the daemon that
yields stops writing the policy until the other has been silent for a lease duration.

:class:`GuardedStatusStore` applies it to every status load and save: a load observes the stamp and, when
this daemon yields, ends the pass with :class:`WriterYieldedError` before anything is decided (so neither
the rollout's status, nor its route, nor its Events are written); a save is refused the same way and
stamps what it writes. The daemon that keeps a contested policy refreshes its stamp on load (see the core
rule). As it starts yielding, a daemon writes the status it loaded once more, unchanged but for its own
stamp: the writer it yields to may never have seen one of its writes (it took the first look after them),
and must learn of the conflict to report it and to keep renewing its stamp.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence

from controller.adapters.kubernetes.status import configmap_name
from controller.core.status import TERMINAL_PHASES, RolloutStatus
from controller.core.writers import Assessment, Me, Sighting, WriterStamp, WriterState, assess, observe, wrote
from controller.errors import CanaryError, ConflictError, WriterYieldedError
from controller.ports import (
    EventRecorder,
    InvolvedObject,
    LoadedStatus,
    PolicyRef,
    PolicySource,
    StampingStatusStore,
)
from controller.runtime.metrics import ControllerMetrics
from controller.service.reconcile import involved_object

log = logging.getLogger("controller.writers")

REASON = "ConflictingWriters"


class WriterGuard:
    """What this daemon has seen of each policy's writers, and what it does about them.

    Args:
        identity: this daemon's identity (as in the Lease and the User-Agent).
        elected: whether this daemon runs with leader election (then it reports conflicts but never yields).
        lease_duration: seconds another writer must be silent before a daemon that yielded writes again.
        events: where the Warning Event goes.
        involved_for: the object a policy's Events are about.
        metrics: ``canary_conflicting_writers`` lives there.
        monotonic: the clock (seconds); never compared with another machine's.
    """

    def __init__(
        self,
        *,
        identity: str,
        elected: bool,
        lease_duration: float,
        events: EventRecorder,
        involved_for: Callable[[PolicyRef], InvolvedObject],
        metrics: ControllerMetrics | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.me = Me(identity=identity, instance=uuid.uuid4().hex[:8], elected=elected)
        self.lease_duration = lease_duration
        self.events = events
        self.involved_for = involved_for
        self.metrics = metrics
        self.monotonic = monotonic
        self._states: dict[tuple[str, str, str], WriterState] = {}
        self._yielding: set[tuple[str, str, str]] = set()
        self._announced: set[tuple[str, str, str]] = set()
        self._serials = itertools.count(1)
        self._lock = threading.Lock()

    @staticmethod
    def _key(ref: PolicyRef) -> tuple[str, str, str]:
        return (ref.source, ref.namespace, ref.name)

    def next_stamp(self) -> WriterStamp:
        """A new stamp for one write."""
        return WriterStamp(
            identity=self.me.identity, instance=self.me.instance, serial=next(self._serials), elected=self.me.elected
        )

    def observe(self, ref: PolicyRef, loaded: LoadedStatus) -> Assessment:
        """Take in a loaded status's stamp; report what began or ended."""
        now = self.monotonic()
        finished = loaded.status.phase in TERMINAL_PHASES
        with self._lock:
            previous = self._states.get(self._key(ref), WriterState())
            assessment = observe(
                previous, loaded.writer, me=self.me, now=now, finished=finished, lease_duration=self.lease_duration
            )
            self._states[self._key(ref)] = assessment.state
        self._report(ref, assessment, now)
        return assessment

    def current(self, ref: PolicyRef) -> Assessment:
        """The assessment now, without a new load."""
        now = self.monotonic()
        with self._lock:
            previous = self._states.get(self._key(ref), WriterState())
            assessment = assess(previous, me=self.me, now=now, lease_duration=self.lease_duration)
            self._states[self._key(ref)] = assessment.state
        self._report(ref, assessment, now)
        return assessment

    def wrote(self, ref: PolicyRef, stamp: WriterStamp) -> None:
        """Record a successful write of this daemon's own."""
        now = self.monotonic()
        with self._lock:
            state = self._states.get(self._key(ref), WriterState())
            self._states[self._key(ref)] = wrote(state, stamp, now=now)

    def announce_due(self, ref: PolicyRef) -> bool:
        """Whether this daemon, yielding, has yet to show the other writer that it is there."""
        with self._lock:
            return self._key(ref) not in self._announced

    def announced(self, ref: PolicyRef) -> None:
        """Record that the yielding daemon's stamp is in the status (once per time it yields)."""
        with self._lock:
            self._announced.add(self._key(ref))

    def _report(self, ref: PolicyRef, assessment: Assessment, now: float) -> None:
        where = f"{ref.namespace}/{ref.name}"
        context = {"policy": ref.name, "namespace": ref.namespace, "source": ref.source}
        for other in assessment.started:
            message = self._conflict_message(ref, other, assessment)
            log.error("%s", message, extra={**context, "writer": other.identity})
            self.events.record(involved=self.involved_for(ref), reason=REASON, message=message, event_type="Warning")
        for other in assessment.ended:
            log.info(
                "policy %s: no write by %s for %.0f s: the conflict is over",
                where,
                other.describe(),
                now - other.last_seen,
                extra={**context, "writer": other.identity},
            )
        with self._lock:
            was_yielding = self._key(ref) in self._yielding
            if assessment.yield_to is None:
                self._yielding.discard(self._key(ref))
                self._announced.discard(self._key(ref))
            else:
                self._yielding.add(self._key(ref))
        if was_yielding and assessment.yield_to is None:
            log.warning(
                "policy %s: the other writer has been silent for %g s (a lease duration): writing it again",
                where,
                self.lease_duration,
                extra=context,
            )
        if self.metrics is not None:
            self.metrics.conflicting_writers.labels(ref.namespace, ref.name).set(len(assessment.active))

    def _conflict_message(self, ref: PolicyRef, other: Sighting, assessment: Assessment) -> str:
        same = (
            " (the same identity: give each controller its own CANARY_IDENTITY)"
            if other.identity == (self.me.identity)
            else ""
        )
        head = (
            f"another controller, {other.describe()}{same}, wrote the status of policy {ref.namespace}/{ref.name}, "
            f"which this controller, {self.me.identity} (process {self.me.instance}), serves too"
        )
        if assessment.yield_to is not None:
            return (
                f"{head}: this controller stops writing the policy until that one has been silent for "
                f"{self.lease_duration:g} s; run a single controller per policy, or turn on leader election"
            )
        if self.me.elected:
            return f"{head}: both hold a leader Lease (overlapping shards?); give each policy to one shard"
        return (
            f"{head}: that one yields and this one keeps writing; run a single controller per policy, or turn on "
            "leader election"
        )


class GuardedStatusStore:
    """A status store whose loads watch for other writers and whose saves are stamped and may be refused.

    Args:
        store: the stamping adapter (CR status or ConfigMap).
        guard: the daemon's :class:`WriterGuard`.
        is_leader: renewals (writes made on load) happen only while this is true, as every write.
    """

    def __init__(
        self, store: StampingStatusStore, guard: WriterGuard, *, is_leader: Callable[[], bool] | None = None
    ) -> None:
        self.store = store
        self.guard = guard
        self.is_leader = is_leader or (lambda: True)

    def load(self, *, policy: PolicyRef) -> LoadedStatus:
        """Load and observe; WriterYieldedError when this daemon leaves the policy to another writer."""
        loaded = self.store.load(policy=policy)
        assessment = self.guard.observe(policy, loaded)
        if assessment.yield_to is not None:
            # One write of the very status it loaded, with this daemon's stamp: the writer it yields to may
            # never have seen it write, and must learn that it has to keep renewing its own stamp.
            if self.guard.announce_due(policy) and self.is_leader() and self._restamp(policy, loaded) is not loaded:
                self.guard.announced(policy)
            raise _yielded(policy, assessment, self.guard)
        if assessment.renew and self.is_leader():
            return self._restamp(policy, loaded)
        return loaded

    def _restamp(self, policy: PolicyRef, loaded: LoadedStatus) -> LoadedStatus:
        """Write ``loaded`` again, unchanged but for a new stamp of this daemon's (``loaded`` when it failed)."""
        stamp = self.guard.next_stamp()
        try:
            version = self.store.save(policy=policy, status=loaded.status, version=loaded.version, writer=stamp)
        except ConflictError:
            return loaded  # someone wrote in between: this pass's own save fails and the next one looks again
        except CanaryError as exc:
            log.warning("policy %s/%s: stamp not written: %s", policy.namespace, policy.name, exc)
            return loaded
        self.guard.wrote(policy, stamp)
        return LoadedStatus(status=loaded.status, version=version, commands=loaded.commands, writer=stamp)

    def save(self, *, policy: PolicyRef, status: RolloutStatus, version: str | None) -> str:
        """The stamped write, unless this daemon leaves the policy to another writer (WriterYieldedError)."""
        assessment = self.guard.current(policy)
        if assessment.yield_to is not None:
            raise _yielded(policy, assessment, self.guard)
        stamp = self.guard.next_stamp()
        new_version = self.store.save(policy=policy, status=status, version=version, writer=stamp)
        self.guard.wrote(policy, stamp)
        return new_version


def _yielded(policy: PolicyRef, assessment: Assessment, guard: WriterGuard) -> WriterYieldedError:
    other = assessment.yield_to
    assert other is not None
    ago = guard.monotonic() - other.last_seen
    return WriterYieldedError(
        [
            f"policy {policy.namespace}/{policy.name} left to {other.describe()}, seen writing it {ago:.1f} s ago; "
            f"this controller writes it again after {guard.lease_duration:g} s without a write from it"
        ]
    )


def events_about(
    sources: Sequence[PolicySource], *, controller_namespace: str
) -> Callable[[PolicyRef], InvolvedObject]:
    """Where a policy's Events go, as the passes record them: the CanaryPolicy, or a policy file's target.

    A file policy no longer served (rare: its pass is running) gets them on its status ConfigMap.
    """

    def involved(ref: PolicyRef) -> InvolvedObject:
        if ref.source == "crd":
            return InvolvedObject("CanaryPolicy", "canaryctl.dev/v1alpha1", ref.namespace, ref.name)
        for source in sources:
            for sourced in source.snapshot().policies:
                if sourced.ref == ref:
                    return involved_object(sourced.policy, ref)
        return InvolvedObject("ConfigMap", "v1", controller_namespace, configmap_name(ref))

    return involved
