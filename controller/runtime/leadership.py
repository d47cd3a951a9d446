"""Leadership for the daemon: the election thread, and the fence that keeps non-leaders from writing.

Every write the controller makes to rollout state goes through a fenced port: the route (VirtualService or
TCPRoute), the status (CR status or ConfigMap) and Events. Each write asks :meth:`LeaderElector.is_leader`
first, which checks the renew deadline itself, so a replica that loses the lease stops writing at once,
even in the middle of a pass (the pass then ends with :class:`NotLeaderError`; the status-before-route
protocol makes that as safe as a crash at the same point).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from controller.core.status import RolloutStatus
from controller.errors import NotLeaderError
from controller.ports import EventRecorder, InvolvedObject, LoadedStatus, PolicyRef, StatusStore, TrafficRouter

log = logging.getLogger("controller.leader")


def _refuse(what: str) -> NotLeaderError:
    return NotLeaderError([f"{what} refused: this replica does not hold the leader lease"])


class FencedRouter:
    """A :class:`TrafficRouter` that writes only while ``is_leader()``."""

    def __init__(self, router: TrafficRouter, is_leader: Callable[[], bool]) -> None:
        self.router = router
        self.is_leader = is_leader

    def get(self, *, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """Reads are never fenced."""
        return self.router.get(kind=kind, namespace=namespace, name=name)

    def replace_route(
        self, *, kind: str, namespace: str, name: str, pointer: str, expect: list[Any], destinations: list[Any]
    ) -> None:
        """The write, if this replica leads (else NotLeaderError)."""
        if not self.is_leader():
            raise _refuse(f"write of {kind} {namespace}/{name}")
        self.router.replace_route(
            kind=kind, namespace=namespace, name=name, pointer=pointer, expect=expect, destinations=destinations
        )


class FencedStatusStore:
    """A :class:`StatusStore` that saves only while ``is_leader()``."""

    def __init__(self, store: StatusStore, is_leader: Callable[[], bool]) -> None:
        self.store = store
        self.is_leader = is_leader

    def load(self, *, policy: PolicyRef) -> LoadedStatus:
        """Reads are never fenced."""
        return self.store.load(policy=policy)

    def save(self, *, policy: PolicyRef, status: RolloutStatus, version: str | None) -> str:
        """The write, if this replica leads (else NotLeaderError)."""
        if not self.is_leader():
            raise _refuse(f"status write of {policy.namespace}/{policy.name}")
        return self.store.save(policy=policy, status=status, version=version)


class FencedEvents:
    """An :class:`EventRecorder` that records only while ``is_leader()`` (skipped quietly otherwise)."""

    def __init__(self, events: EventRecorder, is_leader: Callable[[], bool]) -> None:
        self.events = events
        self.is_leader = is_leader

    def record(self, *, involved: InvolvedObject, reason: str, message: str, event_type: str) -> None:
        """Record the event, if this replica leads."""
        if not self.is_leader():
            log.debug("event %s not recorded: not the leader", reason)
            return
        self.events.record(involved=involved, reason=reason, message=message, event_type=event_type)


class ElectionThread:
    """Runs an elector's loop in a daemon thread; ``stop()`` ends it and releases the lease.

    Args:
        step: one round of the election (acquire or renew).
        release: gives the lease up (called once on stop).
        next_delay: seconds until the next round (the retry period, or sooner when a lease is about to expire).
        is_leader: whether this replica leads (with ``on_leading``).
        on_leading: called, on a thread of its own, when a round makes this replica the leader: a new leader
            (a failover, or a shard's first leader) takes its rollouts over at once, not at the next tick.
    """

    def __init__(
        self,
        *,
        step: Callable[[], None],
        release: Callable[[], bool],
        next_delay: Callable[[], float],
        is_leader: Callable[[], bool] | None = None,
        on_leading: Callable[[], object] | None = None,
    ) -> None:
        self._step = step
        self._release = release
        self._next_delay = next_delay
        self._is_leader = is_leader
        self._on_leading = on_leading
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="leader-election", daemon=True)

    def start(self) -> None:
        """Start electing."""
        self._thread.start()

    def _loop(self) -> None:
        leading = False
        while not self._stop.is_set():
            try:
                self._step()
                was, leading = leading, self._is_leader is not None and self._is_leader()
                if leading and not was and self._on_leading is not None:
                    # Off this thread: taking the rollouts over must never delay the next renewal.
                    threading.Thread(target=self._took_over, name="leader-takeover", daemon=True).start()
            except Exception:  # the election must outlive any bug in one round
                log.exception("leader election round crashed")
            self._stop.wait(self._next_delay())

    def _took_over(self) -> None:
        assert self._on_leading is not None
        try:
            self._on_leading()
        except Exception:
            log.exception("taking the rollouts over as the new leader failed (the next tick does it)")

    def stop(self, *, release: bool = True, timeout: float = 3.0) -> None:
        """Stop the loop; then release the lease so a standby takes over at once."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if release:
            self._release()
