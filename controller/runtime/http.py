"""One small HTTP server: ``/healthz``, ``/readyz`` and ``/metrics``.

* ``/healthz``: 200 while the scheduler's heartbeat is younger than ``max_heartbeat_age`` seconds.
* ``/readyz``: 200 when the Kubernetes API answers (and Prometheus, when a default one is configured)
  and this replica is the leader or a healthy standby; the checks are cached for a few seconds.
* ``/metrics``: the controller's own metrics in Prometheus text format.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from controller.runtime.metrics import ControllerMetrics


class HealthServer:
    """Serves the endpoints on ``host:port`` (port 0: a free one) in a background thread.

    Args:
        metrics: the registry to expose.
        heartbeat: the scheduler's last tick time (None before the first).
        checks: named readiness checks; each returns an error message, or None when fine.
        max_heartbeat_age: seconds after which the scheduler counts as dead.
        cache_seconds: how long readiness results are reused.
    """

    def __init__(
        self,
        *,
        metrics: ControllerMetrics,
        heartbeat: Callable[[], datetime | None],
        checks: dict[str, Callable[[], str | None]],
        max_heartbeat_age: float,
        host: str = "127.0.0.1",
        port: int = 0,
        cache_seconds: float = 5.0,
    ) -> None:
        self.metrics = metrics
        self.heartbeat = heartbeat
        self.checks = checks
        self.max_heartbeat_age = max_heartbeat_age
        self.cache_seconds = cache_seconds
        self._ready: tuple[float, dict[str, str | None]] | None = None
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                code, body, content_type = server.answer(self.path.split("?")[0])
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                del format, args

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="health-http", daemon=True)

    @property
    def port(self) -> int:
        """The port actually bound."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Start serving."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()

    def answer(self, path: str) -> tuple[int, bytes, str]:
        """Status code, body and content type for a GET of ``path``."""
        if path == "/metrics":
            return 200, generate_latest(self.metrics.registry), CONTENT_TYPE_LATEST
        if path == "/healthz":
            beat = self.heartbeat()
            if beat is None:
                return 503, b"scheduler has not ticked yet\n", "text/plain"
            age = (datetime.now(UTC) - beat).total_seconds()
            if age > self.max_heartbeat_age:
                return 503, f"scheduler heartbeat is {age:.0f}s old\n".encode(), "text/plain"
            return 200, b"ok\n", "text/plain"
        if path == "/readyz":
            failures = {name: error for name, error in self._readiness().items() if error}
            if failures:
                text = "".join(f"{name}: {error}\n" for name, error in sorted(failures.items()))
                return 503, text.encode(), "text/plain"
            return 200, b"ok\n", "text/plain"
        return 404, b"not found\n", "text/plain"

    def _readiness(self) -> dict[str, str | None]:
        with self._lock:
            if self._ready is not None and time.monotonic() - self._ready[0] < self.cache_seconds:
                return self._ready[1]
        results: dict[str, str | None] = {}
        for name, check in self.checks.items():
            try:
                results[name] = check()
            except Exception as exc:  # a broken check is a failed check, never a crashed endpoint
                results[name] = f"{type(exc).__name__}: {exc}"[:300]
        with self._lock:
            self._ready = (time.monotonic(), results)
        return results
