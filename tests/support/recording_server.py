"""A loopback HTTP server that records every request: a tenant's server, or a stand-in Prometheus.

It answers ``/api/v1/query`` as Prometheus does, with one sample of ``value``, ``/-/ready`` with 200 (or
401 when ``require_authorization`` is set and the request lacks it), and anything else (an Alertmanager
post, a webhook) with 200 ``{}``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tests.support.http_server import StubHandler, StubHttpServer


@dataclass(frozen=True)
class Recorded:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def text(self) -> str:
        """Everything the client sent, as one string to search for secrets."""
        heads = "\n".join(f"{name}: {value}" for name, value in self.headers.items())
        return f"{self.method} {self.path}\n{heads}\n\n{self.body.decode('utf-8', 'replace')}"


class RecordingServer(StubHttpServer):
    """The server; ``url`` is its base URL, ``requests`` what it received."""

    def __init__(self, *, value: float = 0.0, require_authorization: str | None = None) -> None:
        self.value = value
        self.require_authorization = require_authorization
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        super().__init__()

    def handle(self, request: StubHandler) -> None:
        """Record the request, then answer as Prometheus, a readiness probe or any receiver would."""
        seen = Recorded(request.command, request.path, dict(request.headers.items()), request.body())
        with self._lock:
            self.requests.append(seen)
        wanted = self.require_authorization
        if wanted is not None and seen.headers.get("Authorization") != wanted:
            self._answer(request, 401, {"status": "error", "error": "unauthorized"})
        elif seen.path.startswith("/api/v1/query"):
            sample = [{"metric": {}, "value": [time.time(), str(self.value)]}]
            self._answer(request, 200, {"status": "success", "data": {"resultType": "vector", "result": sample}})
        else:
            self._answer(request, 200, {})

    @staticmethod
    def _answer(request: StubHandler, code: int, payload: Any) -> None:
        request.reply(code, json.dumps(payload).encode(), "application/json")

    def received(self) -> list[Recorded]:
        """A copy of the requests so far."""
        with self._lock:
            return list(self.requests)

    def everything(self) -> str:
        """All requests so far as one text."""
        return "\n".join(request.text() for request in self.received())


@contextmanager
def recording_server(*, value: float = 0.0, require_authorization: str | None = None) -> Iterator[RecordingServer]:
    """A started ``RecordingServer``, shut down on exit."""
    with RecordingServer(value=value, require_authorization=require_authorization) as server:
        yield server
