"""Fixtures for the alert sink tests: a real Alertmanager, a scriptable local receiver, and alert messages.

- ``alertmanager``: Debian's ``prometheus-alertmanager`` (0.25) for the session, on a free loopback port with a
  temp storage directory, no clustering, one ``null`` receiver and ``group_wait: 0s``. The tests fail (not
  skip) when the binary is missing.
- ``receiver``: a ``StubHttpServer`` (tests/support) on loopback that records every request (method, path, headers, raw
  body) and answers as scripted: a status and body, a hang (no answer until it is closed), or a closed
  connection; then the default answer.
- ``alert_message``: an ``AlertMessage`` about a rollback with one failing check, any field replaced.
"""

from __future__ import annotations

import json
import shutil
import threading
import uuid
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from canary_sandbox.processes import AlertmanagerProcess, free_port
from controller.core.alerts import AlertMessage, FailingCheck, graph_url
from tests.support.http_server import StubHandler, StubHttpServer

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


class Receiver(StubHttpServer):
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
        super().__init__()

    def url(self, path: str = "/hook") -> str:  # type: ignore[override]
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

    def handle(self, request: StubHandler) -> None:
        """Record the request, then behave as scripted."""
        body = request.body()
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
        request.reply(behaviour.status, behaviour.body, behaviour.content_type, dict(behaviour.headers))

    def close(self) -> None:
        """Release hanging handlers, stop serving and release the socket."""
        self._closing.set()
        super().close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A local receiver answering ``200 ok`` unless scripted otherwise."""
    with Receiver() as server:
        yield server


# -------------------------------------------------------------------------------------------- Alertmanager


# The sandbox's Alertmanager (no clustering, a null receiver, alerts dispatched at once) is the tests' too.
AlertmanagerServer = AlertmanagerProcess


@pytest.fixture(scope="session")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlertmanagerServer]:
    """The session's Alertmanager; the tests fail (not skip) without Debian's ``prometheus-alertmanager``."""
    binary = shutil.which("prometheus-alertmanager")
    if binary is None:
        pytest.fail(
            "Debian's prometheus-alertmanager is not installed (tests/alerts run a real Alertmanager): run make deps",
            pytrace=False,
        )
    server = AlertmanagerServer(tmp_path_factory.mktemp("alertmanager"), binary=binary)
    try:
        server.start()
        yield server
    finally:
        server.stop()
