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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


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


class RecordingServer:
    """The server; ``url`` is its base URL, ``requests`` what it received."""

    def __init__(self, *, value: float = 0.0, require_authorization: str | None = None) -> None:
        self.value = value
        self.require_authorization = require_authorization
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> Recorded:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen = Recorded(self.command, self.path, dict(self.headers.items()), body)
                with server._lock:
                    server.requests.append(seen)
                return seen

            def _answer(self, code: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                seen = self._record()
                wanted = server.require_authorization
                if wanted is not None and seen.headers.get("Authorization") != wanted:
                    self._answer(401, {"status": "error", "error": "unauthorized"})
                    return
                if seen.path.startswith("/api/v1/query"):
                    sample = [{"metric": {}, "value": [time.time(), str(server.value)]}]
                    self._answer(200, {"status": "success", "data": {"resultType": "vector", "result": sample}})
                    return
                self._answer(200, {})

            do_POST = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                del format, args

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

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
    server = RecordingServer(value=value, require_authorization=require_authorization)
    server._thread.start()
    try:
        yield server
    finally:
        server._server.shutdown()
        server._server.server_close()
