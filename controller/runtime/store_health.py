"""Whether the status stores can be written, as the passes' own writes show it: for ``/readyz`` and the log.

A status store the controller cannot write (its namespace does not exist, RBAC forbids the write) leaves
every rollout it serves without a status: nothing can move. The leader's passes find it out by writing; this
records the cause, logs it once when it begins and once when it ends, and ``/readyz`` reports it. A standby
never writes (the fence refuses first), so its readiness is untouched by this check.
"""

from __future__ import annotations

import logging
import threading

from controller.core.status import RolloutStatus
from controller.errors import ForbiddenError, NotFoundError
from controller.ports import LoadedStatus, PolicyRef, StatusStore

log = logging.getLogger("controller")


class StoreHealth:
    """The cause of the last failed status write of each store, until a write of that store succeeds."""

    def __init__(self) -> None:
        self._problems: dict[str, str] = {}
        self._lock = threading.Lock()

    def watch(self, name: str, store: StatusStore, *, not_found: bool = True) -> WatchedStatusStore:
        """``store``, reporting its writes here under ``name`` (e.g. ``file-mode``).

        Args:
            name: the store, for people.
            store: the store to watch.
            not_found: whether a 404 on write is the store's problem (its namespace is missing), not the
                object's (a CanaryPolicy deleted during the pass).
        """
        return WatchedStatusStore(store, self, name, not_found=not_found)

    def failed(self, name: str, problem: str) -> None:
        """A write of store ``name`` failed for a cause retrying cannot fix."""
        with self._lock:
            new = self._problems.get(name) != problem
            self._problems[name] = problem
        if new:
            log.error("%s status store cannot be written: %s", name, problem, extra={"error": problem})

    def succeeded(self, name: str) -> None:
        """A write of store ``name`` succeeded."""
        with self._lock:
            gone = self._problems.pop(name, None)
        if gone is not None:
            log.info("%s status store can be written again", name)

    def problem(self) -> str | None:
        """Every store's problem, for ``/readyz``; None when every write that was tried succeeded."""
        with self._lock:
            found = sorted(self._problems.items())
        if not found:
            return None
        return "; ".join(f"{name} status store cannot be written: {problem}" for name, problem in found)


class WatchedStatusStore:
    """A :class:`StatusStore` whose writes tell a :class:`StoreHealth` whether the store can be written."""

    def __init__(self, store: StatusStore, health: StoreHealth, name: str, *, not_found: bool = True) -> None:
        self.store = store
        self.health = health
        self.name = name
        self.not_found = not_found

    def load(self, *, policy: PolicyRef) -> LoadedStatus:
        """Reads are not watched."""
        return self.store.load(policy=policy)

    def save(self, *, policy: PolicyRef, status: RolloutStatus, version: str | None) -> str:
        """The write; a missing namespace or a forbidden write is recorded (conflicts and outages are not)."""
        try:
            saved = self.store.save(policy=policy, status=status, version=version)
        except (NotFoundError, ForbiddenError) as exc:
            if self.not_found or isinstance(exc, ForbiddenError):
                self.health.failed(self.name, str(exc))
            raise
        self.health.succeeded(self.name)
        return saved
