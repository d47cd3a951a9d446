"""The /healthz server survives idle and slow clients (issue 13, item 4)."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime

import httpx

from controller.runtime.http import HealthServer
from controller.runtime.metrics import ControllerMetrics
from tests.support.paths import REPO

# A server in a process of its own whose open-file limit is low, as a pod's may be: the idle
# connections below outnumber the descriptors it has.
_CHILD = textwrap.dedent(
    """
    import resource, sys, threading
    from datetime import UTC, datetime
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))
    from controller.runtime.http import HealthServer
    from controller.runtime.metrics import ControllerMetrics
    kwargs = {"timeout_seconds": 30.0, "max_connections": 64}
    try:
        server = HealthServer(metrics=ControllerMetrics(), heartbeat=lambda: datetime.now(UTC), checks={},
                              max_heartbeat_age=60, **kwargs)
    except TypeError:  # a server without these settings
        server = HealthServer(metrics=ControllerMetrics(), heartbeat=lambda: datetime.now(UTC), checks={},
                              max_heartbeat_age=60)
    server.start()
    print(server.port, flush=True)
    sys.stdin.read()
    """
)


@contextmanager
def _server(**options: float) -> Iterator[HealthServer]:
    server = HealthServer(
        metrics=ControllerMetrics(),
        heartbeat=lambda: datetime.now(UTC),
        checks={},
        max_heartbeat_age=60,
        **options,  # type: ignore[arg-type]
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _idle(port: int, count: int, stack: ExitStack) -> None:
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        stack.callback(sock.close)


def test_healthz_answers_while_more_idle_connections_are_open_than_the_process_has_descriptors() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _CHILD], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as child:
        try:
            assert child.stdout is not None
            port = int(child.stdout.readline())
            with ExitStack() as stack:
                _idle(port, 300, stack)
                answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
                assert answer.status_code == 200
                assert answer.text == "ok\n"
        finally:
            child.kill()


def test_a_client_that_sends_nothing_is_disconnected_after_the_timeout() -> None:
    with _server(timeout_seconds=0.5) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        try:
            assert sock.recv(1) == b"", "the server closes the connection"
        finally:
            sock.close()


def test_open_connections_stay_within_the_limit_and_the_newest_get_answers() -> None:
    with _server(timeout_seconds=30, max_connections=16) as server, ExitStack() as stack:
        _idle(server.port, 40, stack)
        answer = httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=10)
        assert answer.status_code == 200
        assert server.open_connections <= 16


def test_requests_other_than_get_and_malformed_ones_get_clear_status_codes() -> None:
    with _server() as server:
        base = f"http://127.0.0.1:{server.port}"
        assert httpx.post(f"{base}/healthz", timeout=5).status_code == 405
        assert httpx.head(f"{base}/healthz", timeout=5).status_code == 200
        assert httpx.get(f"{base}/nope", timeout=5).status_code == 404
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"garbage\r\n\r\n")
            assert sock.recv(64).startswith(b"HTTP/1.1 400 ")
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n" + b"X-Long: " + b"a" * 10_000)
            assert sock.recv(64).startswith(b"HTTP/1.1 431 ")
