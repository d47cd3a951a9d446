"""Fixtures for the alert sink tests: a real Alertmanager, a scriptable local receiver, and alert messages.

- ``alertmanager``: Debian's ``prometheus-alertmanager`` (0.25) for the session, on a free loopback port with a
  temp storage directory, no clustering, one ``null`` receiver and ``group_wait: 0s``. The tests fail (not
  skip) when the binary is missing.
- ``receiver``: a ``ThreadingHTTPServer`` on loopback that records every request (method, path, headers, raw
  body) and answers as scripted: a status and body, a hang (no answer until it is closed), or a closed
  connection; then the default answer.
- ``alert_message``: an ``AlertMessage`` about a rollback with one failing check, any field replaced.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import uuid
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import httpx
import pytest
import yaml

from controller.core.alerts import AlertMessage, FailingCheck, graph_url
from tests.prom.servers import WaitTimeout, free_port, wait_until

PROMETHEUS_URL = "http://prometheus.istio-system:9090"
ERROR_RATE_QUERY = (
    'sum(rate(istio_tcp_connections_closed_total{reporter="source",destination_workload="tcp-echo-v2",'
    'response_flags!="-"}[1m])) / sum(rate(istio_tcp_connections_opened_total{reporter="source",'
    'destination_workload="tcp-echo-v2"}[1m]))'
)

# ------------------------------------------------------------------------------------------------ messages


def alert_message(**changes: Any) -> AlertMessage:
    """A firing ``CanaryRolledBack`` about ``shop/tcp-echo`` with one failing check and a fresh run id.

    Args:
        changes: fields to replace (``run_id`` also changes ``key``).
    """
    run_id = changes.pop("run_id", f"run-{uuid.uuid4().hex[:10]}")
    started = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)
    check = FailingCheck(
        name="error-rate",
        verdict="fail",
        reason="canary error rate 0.05 is above stable 0.001 x 2 + 0.01",
        canary_value=0.05,
        stable_value=0.001,
        sample_size=1200,
        threshold="<= 0.012",
        queries=(ERROR_RATE_QUERY,),
        graph_urls=(graph_url(PROMETHEUS_URL, ERROR_RATE_QUERY, at=started),),
    )
    message = AlertMessage(
        key=f"{run_id}/CanaryRolledBack/3",
        name="CanaryRolledBack",
        severity="critical",
        state="firing",
        policy="tcp-echo",
        namespace="shop",
        run_id=run_id,
        target="VirtualService shop/tcp-echo",
        route="tcp port 31400",
        step=2,
        weight=20,
        from_phase="Progressing",
        to_phase="RolledBack",
        reason="check error-rate failed at step 2",
        summary="tcp-echo rolled back at 20% canary weight",
        description="The canary tcp-echo-v2 failed error-rate; all traffic is back on the stable subset v1.",
        started_at=started,
        checks=(check,),
        source_url="http://canary-controller.shop:8080/policies/shop/tcp-echo",
    )
    return replace(message, **changes)


def many_checks(count: int, *, query_length: int = 5000) -> tuple[FailingCheck, ...]:
    """``count`` failing checks with long names, reasons and queries (to push every service's limits)."""
    query = ('sum(rate(istio_tcp_connections_closed_total{response_flags!="-"}[1m])) + ' * 200)[:query_length]
    return tuple(
        FailingCheck(
            name=f"check-{index:02d}-" + "x" * 60,
            verdict="fail",
            reason="r" * 600,
            canary_value=index + 0.5,
            stable_value=0.25,
            sample_size=1000 + index,
            threshold="<= 0.1",
            queries=(query,),
            graph_urls=(graph_url(PROMETHEUS_URL, f"up{{i='{index}'}}", at=datetime(2024, 5, 1, tzinfo=UTC)),),
        )
        for index in range(count)
    )


@pytest.fixture(scope="session")
def http() -> Iterator[httpx.Client]:
    """An HTTP client with the timeouts the controller uses (shared: building its TLS context takes a while)."""
    with httpx.Client(timeout=httpx.Timeout(5.0)) as client:
        yield client


@pytest.fixture
def impatient_http() -> Iterator[httpx.Client]:
    """An HTTP client that gives up after 0.2 s without an answer."""
    with httpx.Client(timeout=httpx.Timeout(0.2)) as client:
        yield client


@pytest.fixture
def refused_url() -> str:
    """A loopback URL where nothing listens."""
    return f"http://127.0.0.1:{free_port()}/hooks/nothing-listens-here"


# ------------------------------------------------------------------------------------------------ receiver


@dataclass(frozen=True)
class Reply:
    """Answer with this status, body and headers."""

    status: int = 200
    body: bytes = b"ok"
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Hang:
    """Do not answer (until the receiver closes)."""


@dataclass(frozen=True)
class Close:
    """Read the request, then close the connection without answering."""


Behaviour = Reply | Hang | Close


@dataclass(frozen=True)
class Received:
    """One request as the receiver got it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        """A header's value (case-insensitive), None when absent."""
        return next((value for key, value in self.headers.items() if key.lower() == name.lower()), None)

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


class _ReceiverHandler(BaseHTTPRequestHandler):
    server: _ReceiverServer
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.server.owner.handle(self)

    def do_GET(self) -> None:
        self.server.owner.handle(self)

    def log_message(self, format: str, *args: Any) -> None:
        del format, args


class _ReceiverServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: Receiver

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (timeout) is expected here."""
        del request, client_address


class Receiver:
    """A local webhook receiver that records requests and answers as scripted.

    Args:
        default: the answer once the script is used up.
    """

    def __init__(self, default: Behaviour | None = None) -> None:
        self.default: Behaviour = default or Reply()
        self.requests: list[Received] = []
        self._script: deque[Behaviour] = deque()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = _ReceiverServer(("127.0.0.1", 0), _ReceiverHandler)
        self._server.owner = self
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="Receiver", daemon=True
        )
        self._thread.start()

    def url(self, path: str = "/hook") -> str:
        """``http://127.0.0.1:<port><path>``."""
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, *behaviours: Behaviour) -> None:
        """Answer the next requests with ``behaviours``, in order, then with the default."""
        with self._lock:
            self._script.extend(behaviours)

    @property
    def last(self) -> Received:
        """The last request received."""
        with self._lock:
            assert self.requests, "the receiver got no request"
            return self.requests[-1]

    def handle(self, request: _ReceiverHandler) -> None:
        """Record the request, then behave as scripted."""
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        with self._lock:
            self.requests.append(
                Received(method=request.command, path=request.path, headers=dict(request.headers.items()), body=body)
            )
            behaviour = self._script.popleft() if self._script else self.default
        if isinstance(behaviour, Hang):
            self._closing.wait(30)
            request.close_connection = True
            return
        if isinstance(behaviour, Close):
            request.close_connection = True
            return
        request.send_response(behaviour.status)
        request.send_header("Content-Type", behaviour.content_type)
        request.send_header("Content-Length", str(len(behaviour.body)))
        for name, value in behaviour.headers.items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(behaviour.body)

    def close(self) -> None:
        """Release hanging handlers, stop serving and release the socket."""
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A local receiver answering ``200 ok`` unless scripted otherwise."""
    with Receiver() as server:
        yield server


# -------------------------------------------------------------------------------------------- Alertmanager


def alertmanager_config() -> dict[str, Any]:
    """One ``null`` receiver; alerts are dispatched at once and never re-notified during a test."""
    return {
        "route": {
            "receiver": "null",
            "group_by": ["alertname", "policy", "namespace"],
            "group_wait": "0s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [{"name": "null"}],
    }


@dataclass
class AlertmanagerServer:
    """One ``prometheus-alertmanager`` process on 127.0.0.1 with its own config and storage directory.

    Args:
        binary: path of the executable.
        workdir: where the config, the log and the storage go.
    """

    binary: str
    workdir: Path
    port: int = 0
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _http: httpx.Client | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """The server's combined stdout/stderr."""
        return self.workdir / "alertmanager.log"

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server log."""
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def start(self, *, timeout: float = 30.0, attempts: int = 3) -> None:
        """Start the process and wait until ``/-/ready`` answers 200 (a new port if the chosen one was taken).

        Raises:
            WaitTimeout: not ready in time, or the process exited (the message has the log's tail).
        """
        for attempt in range(attempts):
            try:
                self._start_once(timeout)
                return
            except WaitTimeout:
                self.stop()
                if attempt == attempts - 1 or "address already in use" not in self.log_tail():
                    raise

    def _start_once(self, timeout: float) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_path = self.workdir / "alertmanager.yml"
        config_path.write_text(yaml.safe_dump(alertmanager_config(), sort_keys=False))
        self.port = free_port()
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={config_path}",
                    f"--storage.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--cluster.listen-address=",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self._http = httpx.Client(base_url=self.url, timeout=5.0)
        wait_until(self._ready, timeout=timeout, message=lambda: f"alertmanager not ready:\n{self.log_tail()}")

    def _ready(self) -> bool:
        assert self._process is not None
        assert self._http is not None
        if self._process.poll() is not None:
            raise WaitTimeout(f"alertmanager exited with {self._process.returncode}:\n{self.log_tail()}")
        try:
            return self._http.get("/-/ready").status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        """Terminate (then kill) the process and close the HTTP client."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        self._process = None
        if self._http is not None:
            self._http.close()
            self._http = None

    def alerts(
        self,
        *matchers: str,
        active: bool = True,
        silenced: bool = True,
        inhibited: bool = True,
        unprocessed: bool = True,
    ) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts`` with ``filter`` matchers (``alertname="X"``) and the state flags."""
        assert self._http is not None, "alertmanager is not running"
        params: list[tuple[str, str | int | float | bool | None]] = [("filter", matcher) for matcher in matchers]
        params += [
            ("active", str(active).lower()),
            ("silenced", str(silenced).lower()),
            ("inhibited", str(inhibited).lower()),
            ("unprocessed", str(unprocessed).lower()),
        ]
        answer = self._http.get("/api/v2/alerts", params=params)
        assert answer.status_code == 200, f"GET /api/v2/alerts: HTTP {answer.status_code}: {answer.text}"
        alerts: list[dict[str, Any]] = answer.json()
        return alerts

    def received(self, status: str) -> float:
        """``alertmanager_alerts_received_total{status=...}`` over API versions (firing or resolved)."""
        assert self._http is not None, "alertmanager is not running"
        total = 0.0
        for line in self._http.get("/metrics").text.splitlines():
            if line.startswith("alertmanager_alerts_received_total{") and f'status="{status}"' in line:
                total += float(line.rsplit(" ", 1)[1])
        return total


@pytest.fixture(scope="session")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlertmanagerServer]:
    """The session's Alertmanager; the tests fail (not skip) without Debian's ``prometheus-alertmanager``."""
    binary = shutil.which("prometheus-alertmanager")
    if binary is None:
        pytest.fail(
            "Debian's prometheus-alertmanager is not installed (tests/alerts run a real Alertmanager): run make deps",
            pytrace=False,
        )
    server = AlertmanagerServer(binary=binary, workdir=tmp_path_factory.mktemp("alertmanager"))
    try:
        server.start()
        yield server
    finally:
        server.stop()
