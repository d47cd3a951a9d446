"""One small HTTP server: ``/healthz``, ``/readyz`` and ``/metrics``.

* ``/healthz``: 200 while the scheduler's heartbeat is younger than ``max_heartbeat_age`` seconds.
* ``/readyz``: 200 when the Kubernetes API answers (and Prometheus, when a default one is configured)
  and this replica is the leader or a healthy standby; the checks are cached for a few seconds.
* ``/metrics``: the controller's own metrics in Prometheus text format.

Idle or slow clients cannot take it down. One thread waits on every open connection with a selector, so
an idle connection costs a file descriptor, never a thread; a connection that has not sent its whole
request head within ``timeout_seconds`` is closed; at most ``max_connections`` are open at once (beyond
that the longest-waiting one that has not sent its request is closed to make room: probes, which send at
once, get through); a fixed pool of ``workers`` threads answers complete requests, each answer written
with the same timeout, then the connection is closed (``Connection: close``). The listen backlog is
``backlog``. A failing ``accept`` (the process out of file descriptors) frees one and pauses briefly
rather than spinning.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from urllib.parse import parse_qs

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from controller.runtime.metrics import ControllerMetrics

log = logging.getLogger(__name__)

MAX_HEAD = 8192
"""Longest request head (request line and headers) accepted, in bytes."""
_ACCEPTS_PER_ROUND = 32
"""Connections accepted in a row before reading the open ones again."""


@dataclass
class _Waiting:
    """A connection whose request head has not fully arrived."""

    opened: float
    head: bytearray = field(default_factory=bytearray)


class HealthServer:
    """Serves the endpoints on ``host:port`` (port 0: a free one) in background threads.

    Args:
        metrics: the registry to expose.
        heartbeat: the scheduler's last tick time (None before the first).
        checks: named readiness checks; each returns an error message, or None when fine.
        max_heartbeat_age: seconds after which the scheduler counts as dead.
        cache_seconds: how long readiness results are reused.
        timeout_seconds: time a client has to send its request head, and to take the answer.
        max_connections: connections open at once (waiting and being answered).
        workers: threads answering requests.
        backlog: the listen backlog.
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
        timeout_seconds: float = 5.0,
        max_connections: int = 256,
        workers: int = 4,
        backlog: int = 128,
    ) -> None:
        self.metrics = metrics
        self.heartbeat = heartbeat
        self.checks = checks
        self.max_heartbeat_age = max_heartbeat_age
        self.cache_seconds = cache_seconds
        self.timeout_seconds = timeout_seconds
        self.max_connections = max(2, max_connections)
        self._ready: tuple[float, dict[str, str | None]] | None = None
        self._lock = threading.Lock()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server((host, port), family=family, backlog=backlog)
        self._listener.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._selector.register(self._wake_read, selectors.EVENT_READ)
        self._waiting: dict[socket.socket, _Waiting] = {}  # insertion order: oldest first
        self._answering = 0
        self._count_lock = threading.Lock()
        self._stopping = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="health-http")
        self._thread = threading.Thread(target=self._loop, name="health-http", daemon=True)

    @property
    def port(self) -> int:
        """The port actually bound."""
        return int(self._listener.getsockname()[1])

    @property
    def open_connections(self) -> int:
        """Connections open now: waiting for their request, or being answered."""
        with self._count_lock:
            return len(self._waiting) + self._answering

    def start(self) -> None:
        """Start serving."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close every socket."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_write.send(b"x")
        if self._thread.is_alive():
            self._thread.join(5)
        self._pool.shutdown(wait=False, cancel_futures=True)
        for sock in list(self._waiting):
            self._drop(sock)
        self._selector.close()
        for sock in (self._listener, self._wake_read, self._wake_write):
            sock.close()

    # ------------------------------------------------------------------ the connection loop

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                ready = self._selector.select(timeout=min(0.5, self.timeout_seconds / 2))
            except OSError:
                if self._stopping.is_set():
                    return
                raise
            for key, _ in ready:
                sock = key.fileobj
                if sock is self._listener:
                    self._accept()
                elif sock is self._wake_read:
                    with contextlib.suppress(OSError):
                        self._wake_read.recv(64)
                elif isinstance(sock, socket.socket):
                    self._read(sock)
            self._expire(time.monotonic())

    def _accept(self) -> None:
        for _ in range(_ACCEPTS_PER_ROUND):
            try:
                sock, _address = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}:
                    # Out of descriptors: free the longest-waiting one, and never spin on the listener.
                    log.warning("HTTP server cannot accept a connection: %s", exc.strerror)
                    if not self._evict_oldest():
                        self._stopping.wait(0.1)
                return
            if self.open_connections >= self.max_connections and not self._evict_oldest():
                sock.close()  # every connection is being answered: no room, and no one to make room
                continue
            sock.setblocking(False)
            with self._count_lock:
                self._waiting[sock] = _Waiting(opened=time.monotonic())
            self._selector.register(sock, selectors.EVENT_READ)

    def _read(self, sock: socket.socket) -> None:
        waiting = self._waiting.get(sock)
        if waiting is None:
            return
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            self._drop(sock)
            return
        if not data:
            self._drop(sock)
            return
        waiting.head += data
        end = waiting.head.find(b"\r\n\r\n")
        if end < 0:
            end = waiting.head.find(b"\n\n")
        if end < 0:
            if len(waiting.head) > MAX_HEAD:
                self._hand_over(sock, None)
            return
        self._hand_over(sock, bytes(waiting.head[:end]))

    def _hand_over(self, sock: socket.socket, head: bytes | None) -> None:
        """Pass a connection with its complete request head (None: too long) to a worker."""
        self._selector.unregister(sock)
        with self._count_lock:
            self._waiting.pop(sock, None)
            self._answering += 1
        try:
            self._pool.submit(self._respond, sock, head)
        except RuntimeError:  # the pool is shut down: we are stopping
            with self._count_lock:
                self._answering -= 1
            sock.close()

    def _expire(self, now: float) -> None:
        for sock, waiting in list(self._waiting.items()):
            if now - waiting.opened < self.timeout_seconds:
                break  # oldest first: the rest are younger
            self._drop(sock)

    def _evict_oldest(self) -> bool:
        oldest = next(iter(self._waiting), None)
        if oldest is None:
            return False
        self._drop(oldest)
        return True

    def _drop(self, sock: socket.socket) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(sock)
        with self._count_lock:
            self._waiting.pop(sock, None)
        sock.close()

    # ------------------------------------------------------------------ answering

    def _respond(self, sock: socket.socket, head: bytes | None) -> None:
        try:
            sock.setblocking(True)
            sock.settimeout(self.timeout_seconds)
            code, body, content_type, send_body = self._answer_head(head)
            reason = HTTPStatus(code).phrase
            header = (
                f"HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode("ascii")
            sock.sendall(header + body if send_body else header)
        except OSError:
            pass  # the client left, or took too long to read the answer
        except Exception:
            log.exception("HTTP answer failed")
        finally:
            with contextlib.suppress(OSError):
                sock.close()
            with self._count_lock:
                self._answering -= 1

    def _answer_head(self, head: bytes | None) -> tuple[int, bytes, str, bool]:
        """Status, body, content type, and whether to send the body, for a request head."""
        if head is None:
            return 431, b"request head too large\n", "text/plain", True
        request_line = head.split(b"\n", 1)[0].decode("latin-1").strip()
        parts = request_line.split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return 400, b"bad request\n", "text/plain", True
        method, target = parts[0], parts[1]
        if method not in {"GET", "HEAD"}:
            return 405, b"only GET\n", "text/plain", True
        path, _, query = target.partition("?")
        code, body, content_type = self.answer(path, query)
        return code, body, content_type, method == "GET"

    def answer(self, path: str, query: str = "") -> tuple[int, bytes, str]:
        """Status code, body and content type for a GET of ``path`` with the query string ``query``.

        ``/metrics?name[]=a&name[]=b`` renders only the series named (as prometheus_client's own handler
        does): a probe that reads one counter often need not pay for the per-rollout series.
        """
        if path == "/metrics":
            names = parse_qs(query).get("name[]")
            registry = self.metrics.registry.restricted_registry(names) if names else self.metrics.registry
            return 200, generate_latest(registry), CONTENT_TYPE_LATEST
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
