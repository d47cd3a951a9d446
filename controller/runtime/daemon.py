"""The daemon: the reconcile loop with its HTTP endpoints and leader election, what ``canaryctl run`` runs.

:func:`controller.runtime.composition.build_daemon` builds it from settings; nothing here reads settings
or builds adapters.
"""

from __future__ import annotations

import gc
import logging
import threading

from controller.dashboard.server import DashboardServer
from controller.runtime.http import HealthServer
from controller.runtime.loop import ReconcileLoop

log = logging.getLogger("controller")


def tune_gc(threshold: int) -> tuple[int, int, int]:
    """Collect the young generation every ``threshold`` allocations (0: Python's default); returns the
    thresholds before.

    The daemon holds millions of long-lived objects at thousands of rollouts (watch caches, parsed statuses),
    and decoding one grouped Prometheus answer allocates hundreds of thousands more: at Python's default of
    700, the collections this sets off took a sixth of the controller's time at 10,000 rollouts
    (docs/benchmarks.md). The older generations keep their defaults, so cycles are still collected.
    """
    before = gc.get_threshold()
    if threshold > 0:
        gc.set_threshold(threshold, *before[1:])
    return before


class Daemon:
    """The reconcile loop served with ``/healthz``, ``/readyz`` and ``/metrics``, and its leader election.

    ``serve()`` blocks until ``stop()``; ``start()`` serves from a background thread instead (the sandbox
    runs the controller in-process this way, through the very same code path).

    Args:
        loop: the reconcile loop (its ``election`` thread, when set, is started and stopped here).
        server: the HTTP endpoints, started by ``serve()``.
        host: the address the endpoints listen on, for the log.
        dashboard: the read-only web dashboard (``CANARY_DASHBOARD=true``), served beside the endpoints.
    """

    def __init__(
        self, loop: ReconcileLoop, server: HealthServer, *, host: str, dashboard: DashboardServer | None = None
    ) -> None:
        self.loop = loop
        self.server = server
        self.host = host
        self.dashboard = dashboard
        self._thread: threading.Thread | None = None

    def serve(self) -> None:
        """Serve until ``stop()``: endpoints, election, ticks; on the way out hand the lease over."""
        loop = self.loop
        self.server.start()
        log.info("serving /healthz, /readyz and /metrics on %s:%d", self.host, self.server.port)
        if self.dashboard is not None:
            self.dashboard.start()
            log.info("serving the read-only dashboard on %s", self.dashboard.url)
        log.info("controller started", extra={"source": ",".join(type(s).__name__ for s in loop.sources)})
        if loop.election is not None:
            loop.election.start()
        try:
            loop.run_forever()
        finally:
            if loop.election is not None:
                # In-flight passes have finished (run_forever waited); hand the lease over at once.
                loop.election.stop(release=True)
            self.server.stop()
            if self.dashboard is not None:
                self.dashboard.stop()
        log.info("controller stopped")

    def start(self) -> Daemon:
        """``serve()`` in a background thread."""
        self._thread = threading.Thread(target=self.serve, name="canary-daemon", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking work; with ``start()``, wait for the thread (in-flight passes finish first)."""
        self.loop.stop()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
