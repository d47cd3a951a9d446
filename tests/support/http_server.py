"""The one threaded stub HTTP server of the tests: a loopback port, a serving thread, answers from ``handle``.

Subclass ``StubHttpServer`` and answer each request in ``handle(request)`` (``request.body()`` reads what the
client sent, ``request.reply`` sends one complete response). The server listens on a free loopback port as
soon as it is built and serves until ``close()`` (or the end of a ``with`` block); after that its threads
are gone, kept-alive connections included, as the leak guard in ``tests/conftest.py`` requires. Clients
that give up on a slow answer are expected, not errors.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class StubHandler(BaseHTTPRequestHandler):
    """Hands every request to the owning ``StubHttpServer``; quiet; HTTP/1.1 (keep-alive)."""

    server: _Server
    protocol_version = "HTTP/1.1"

    def _dispatch(self) -> None:
        self.server.owner.handle(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        del format, args

    def body(self) -> bytes:
        """The request's body (empty when it has none)."""
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def reply(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        """Send one complete response."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: StubHttpServer

    def __init__(self, address: tuple[str, int], handler: type[StubHandler]) -> None:
        super().__init__(address, handler)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End the kept-alive connections, so that their handler threads, waiting for a next request, finish."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (it gave up on a slow answer) is expected, not an error."""
        del request, client_address


class StubHttpServer:
    """A ThreadingHTTPServer on a free loopback port, served from a thread until ``close()``.

    Args:
        tls: serve HTTPS with this server-side context.
    """

    def __init__(self, *, tls: ssl.SSLContext | None = None) -> None:
        self._server = _Server(("127.0.0.1", 0), StubHandler)
        self._server.owner = self
        self.scheme = "https" if tls is not None else "http"
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=type(self).__name__, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        """``http(s)://127.0.0.1:<port>``."""
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``, as a scrape target."""
        return f"127.0.0.1:{self.port}"

    def handle(self, request: StubHandler) -> None:
        """Answer one request."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop serving and release the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._server.close_connections()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
