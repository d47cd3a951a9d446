"""Leader election on a ``coordination.k8s.io/v1`` Lease, with client-go's semantics.

The rules are those of client-go's ``leaderelection`` package (``tryAcquireOrRenew``):

* The lease names a holder, a ``leaseDurationSeconds``, ``acquireTime``, ``renewTime`` and
  ``leaseTransitions``. Only the holder renews it.
* Clocks of different machines are never compared: a candidate notes, on its own monotonic clock, when it
  last *saw the lease record change* (``observed``). It may take the lease only when the record has not
  changed for ``lease_duration`` seconds (or has no holder). The write carries the ``resourceVersion`` it
  read, so of two candidates only one succeeds (409 for the other).
* The leader renews every ``retry_period`` seconds. When no renewal has succeeded for ``renew_deadline``
  seconds it stops leading, before any candidate may take over (``renew_deadline < lease_duration``).
* On a graceful stop the leader releases the lease (holder cleared, duration 1 s) so a standby takes over
  at once, as client-go's ``ReleaseOnCancel`` does.

:class:`LeaderElector` is driven by one thread (the runtime's ``ElectionThread``);
:meth:`LeaderElector.is_leader` may be called from any thread and is what fences the controller's writes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from kubernetes import client as k8s

from controller.adapters.kubernetes.api import LEASES, KubeApi, metadata_of
from controller.errors import CanaryError, ConflictError, NotFoundError

log = logging.getLogger("controller.leader")


@dataclass(frozen=True)
class LeaseRecord:
    """What a Lease says (client-go's ``LeaderElectionRecord``)."""

    holder: str
    lease_duration_seconds: int
    acquire_time: datetime | None
    renew_time: datetime | None
    transitions: int


class LeaseLock:
    """Reads and writes one Lease through the API (client-go's ``LeaseLock``).

    Args:
        api: the Kubernetes API.
        namespace: where the Lease lives (the controller's own namespace).
        name: the Lease's name (one per shard).
    """

    def __init__(self, api: KubeApi, *, namespace: str, name: str) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name

    def describe(self) -> str:
        """``namespace/name`` for messages."""
        return f"{self.namespace}/{self.name}"

    def get(self) -> tuple[LeaseRecord, str] | None:
        """The record and its resourceVersion, or None when the Lease does not exist."""
        try:
            lease = self.api.get_obj(resource=LEASES, namespace=self.namespace, name=self.name)
        except NotFoundError:
            return None
        spec = lease.spec or k8s.V1LeaseSpec()
        record = LeaseRecord(
            holder=spec.holder_identity or "",
            lease_duration_seconds=int(spec.lease_duration_seconds or 0),
            acquire_time=spec.acquire_time,
            renew_time=spec.renew_time,
            transitions=int(spec.lease_transitions or 0),
        )
        return record, str(metadata_of(lease).resource_version or "")

    def create(self, record: LeaseRecord) -> str:
        """Create the Lease; ConflictError when someone created it first. Returns its resourceVersion."""
        body = k8s.V1Lease(metadata=k8s.V1ObjectMeta(name=self.name, namespace=self.namespace), spec=self._spec(record))
        created = self.api.create_obj(resource=LEASES, namespace=self.namespace, body=body)
        return str(metadata_of(created).resource_version or "")

    def update(self, record: LeaseRecord, resource_version: str) -> str:
        """Replace the Lease if it is still at ``resource_version`` (else ConflictError)."""
        body = k8s.V1Lease(
            metadata=k8s.V1ObjectMeta(name=self.name, namespace=self.namespace, resource_version=resource_version),
            spec=self._spec(record),
        )
        replaced = self.api.replace_obj(resource=LEASES, namespace=self.namespace, name=self.name, body=body)
        return str(metadata_of(replaced).resource_version or "")

    @staticmethod
    def _spec(record: LeaseRecord) -> k8s.V1LeaseSpec:
        return k8s.V1LeaseSpec(
            holder_identity=record.holder or None,
            lease_duration_seconds=record.lease_duration_seconds,
            acquire_time=micro_time(record.acquire_time),
            renew_time=micro_time(record.renew_time),
            lease_transitions=record.transitions,
        )


class MicroTime(datetime):
    """A ``datetime`` the client writes as ``metav1.MicroTime``: RFC 3339 in UTC with six fractional digits.

    The server parses MicroTime with Go's ``RFC3339Micro`` layout (apimachinery ``micro_time.go``,
    ``UnmarshalJSON``) and answers 400 to anything else; the client writes datetimes with ``isoformat()``,
    which has no fraction on a whole second. A subclass (not a string) because the client's models turn
    strings back into datetimes.
    """

    def isoformat(self, sep: str = "T", timespec: str = "auto") -> str:
        """The MicroTime wire form (``sep`` and ``timespec`` are ignored)."""
        return self.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def micro_time(moment: datetime | None) -> MicroTime | None:
    """``moment`` (naive means UTC) as a :class:`MicroTime`, or None."""
    if moment is None:
        return None
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return MicroTime.fromtimestamp(aware.timestamp(), UTC).replace(microsecond=aware.microsecond)


class LeaderElector:
    """Acquires and keeps a Lease (see the module docstring).

    Args:
        lock: the Lease.
        identity: this replica's name (the pod name in a cluster); unique per replica.
        lease_duration: seconds a standby waits after the record last changed before taking over.
        renew_deadline: seconds the leader keeps leading without a successful renewal.
        retry_period: seconds between attempts (to acquire, or to renew).
        on_started_leading / on_stopped_leading: called from the election thread on each change.
        monotonic: the clock (tests pass a fake one).
        wall_clock: the time written into the record (informational: nobody compares it across machines).
    """

    def __init__(
        self,
        lock: LeaseLock,
        *,
        identity: str,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        on_started_leading: Callable[[], None] | None = None,
        on_stopped_leading: Callable[[], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if not identity:
            raise ValueError("leader election needs a non-empty identity")
        if not 0 < retry_period < renew_deadline < lease_duration:
            raise ValueError(
                "leader election needs retry period < renew deadline < lease duration "
                f"(got {retry_period} s, {renew_deadline} s, {lease_duration} s)"
            )
        self.lock = lock
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.on_started_leading = on_started_leading
        self.on_stopped_leading = on_stopped_leading
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        self._observed: tuple[LeaseRecord, str] | None = None
        self._observed_at = 0.0
        self._renewed_at: float | None = None  # last successful acquire/renew, while leading
        self._contact_at: float | None = None  # last successful API call about the lease
        self._leading = False
        self._state_lock = threading.Lock()
        self.last_error: str | None = None
        self._announced = ""  # the holder last reported in the log

    # -- what other threads ask -------------------------------------------------------------------

    def is_leader(self) -> bool:
        """True while this replica holds the lease and its last renewal is younger than the renew deadline.

        The deadline is checked here, on every call, so that a stalled election thread cannot leave a
        replica writing after a standby may have taken over.
        """
        with self._state_lock:
            return (
                self._leading
                and self._renewed_at is not None
                and self._monotonic() - self._renewed_at < self.renew_deadline
            )

    def holder(self) -> str:
        """The holder last seen in the Lease ('' when none)."""
        with self._state_lock:
            return self._observed[0].holder if self._observed else ""

    def next_delay(self) -> float:
        """Seconds until the next round: the retry period, or sooner when another holder's lease expires sooner.

        client-go checks once per retry period; a standby here also checks at the moment the lease it
        watches would expire, so a takeover is late by at most the delay in seeing the last renewal.
        """
        with self._state_lock:
            if self._leading or self._observed is None or self._observed[0].holder in ("", self.identity):
                return self.retry_period
            until_expiry = self._observed_at + self.lease_duration - self._monotonic()
        return min(self.retry_period, max(0.01, until_expiry + 0.01))

    def contact_age(self) -> float | None:
        """Seconds since the last successful API call about the lease (None before the first)."""
        with self._state_lock:
            return None if self._contact_at is None else self._monotonic() - self._contact_at

    # -- the election -----------------------------------------------------------------------------

    def try_acquire_or_renew(self) -> bool:
        """One attempt (client-go's ``tryAcquireOrRenew``); True when this replica holds the lease now."""
        now = self._wall_clock()
        try:
            current = self.lock.get()
            self._touch()
            if current is None:
                record = LeaseRecord(self.identity, self._duration_field(), now, now, 0)
                version = self.lock.create(record)
                self._succeeded(record, version)
                return True
            record, version = current
            self._observe(record, version)
            held_by_other = record.holder not in ("", self.identity)
            if held_by_other and self._observed_at + self.lease_duration > self._monotonic():
                self._not_holding()
                if record.holder != self._announced:
                    self._announced = record.holder
                    log.info(
                        "standing by: the lease is held by %s",
                        record.holder,
                        extra={"lease": self.lock.describe(), "identity": self.identity},
                    )
                return False
            if record.holder == self.identity:
                new = LeaseRecord(self.identity, self._duration_field(), record.acquire_time, now, record.transitions)
            else:
                new = LeaseRecord(self.identity, self._duration_field(), now, now, record.transitions + 1)
            new_version = self.lock.update(new, version)
            self._succeeded(new, new_version)
            return True
        except ConflictError as exc:
            self.last_error = str(exc)
            return False
        except CanaryError as exc:
            self.last_error = str(exc)
            log.warning("lease %s: %s", self.lock.describe(), exc)
            return False

    def step(self) -> None:
        """One round of the loop: acquire (standby) or renew (leader); stop leading past the renew deadline."""
        with self._state_lock:
            leading_before = self._leading
        self.try_acquire_or_renew()
        with self._state_lock:
            if self._leading and (
                self._renewed_at is None or self._monotonic() - self._renewed_at >= self.renew_deadline
            ):
                self._leading = False
            leading_after = self._leading
        extra = {"lease": self.lock.describe(), "identity": self.identity}
        if leading_after and not leading_before:
            log.info("became the leader", extra=extra)
            if self.on_started_leading:
                self.on_started_leading()
        elif leading_before and not leading_after:
            log.warning("lost the lease: %s", self.last_error or f"held by {self.holder() or 'nobody'}", extra=extra)
            if self.on_stopped_leading:
                self.on_stopped_leading()

    def release(self) -> bool:
        """Give up the lease if held (client-go's ``release``): holder cleared, duration 1 s. True if released."""
        with self._state_lock:
            leading = self._leading
            self._leading = False
        if not leading or self._observed is None:
            return False
        record, version = self._observed
        now = self._wall_clock()
        try:
            self.lock.update(LeaseRecord("", 1, now, now, record.transitions), version)
        except CanaryError as exc:
            log.warning("could not release the lease %s: %s", self.lock.describe(), exc)
            return False
        finally:
            if self.on_stopped_leading:
                self.on_stopped_leading()
        log.info("released the lease", extra={"lease": self.lock.describe(), "identity": self.identity})
        return True

    # -- bookkeeping ------------------------------------------------------------------------------

    def _duration_field(self) -> int:
        return max(1, round(self.lease_duration))

    def _touch(self) -> None:
        with self._state_lock:
            self._contact_at = self._monotonic()

    def _observe(self, record: LeaseRecord, version: str) -> None:
        with self._state_lock:
            if self._observed is None or self._observed[0] != record:
                self._observed_at = self._monotonic()
            self._observed = (record, version)

    def _succeeded(self, record: LeaseRecord, version: str) -> None:
        with self._state_lock:
            now = self._monotonic()
            self._observed = (record, version)
            self._observed_at = now
            self._renewed_at = now
            self._contact_at = now
            self._leading = True
            self.last_error = None

    def _not_holding(self) -> None:
        with self._state_lock:
            self._leading = False
