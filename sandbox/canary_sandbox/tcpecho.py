"""tcp-echo servers speaking the protocol of Istio's ``samples/tcp-echo``, for the local sandbox.

The sample server (``samples/tcp-echo/src/main.go``) answers every newline-terminated line with
``<prefix> <line>`` on the same connection and closes only when the client does; a line cut short by the
client's close gets no answer. Istio's "TCP Traffic Shifting" task runs it with prefix ``one`` (v1) and
``two`` (v2) and counts the replies to see the split. :class:`TcpEchoServer` does the same on a loopback
port, counts what it accepts, and can be told to refuse connections (the failure a canary rollout must
catch) and to accept them again on the same port.

Each server runs an asyncio loop in a thread of its own, so a test or the demo drives it from ordinary
blocking code.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar

V1_PREFIX = "one"
V2_PREFIX = "two"
_LINE_LIMIT = 1 << 16
_T = TypeVar("_T")


class TcpEchoServer:
    """A tcp-echo server (Istio's sample protocol) on a loopback port, in a background thread.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`::

        with TcpEchoServer("one") as v1:
            reply = ask(("127.0.0.1", v1.port), "hello")   # "one hello"

    Args:
        prefix: what each reply starts with (``one`` for v1, ``two`` for v2 in Istio's task).
        host: address to listen on.
        port: port to listen on; 0 picks a free one, kept across :meth:`refuse` / :meth:`accept_again`.
    """

    def __init__(self, prefix: str, host: str = "127.0.0.1", port: int = 0) -> None:
        if "\n" in prefix:
            raise ValueError("the prefix must be a single line")
        self.prefix = prefix
        self.host = host
        self._port = port
        self._reply_prefix = f"{prefix} ".encode()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._lock = threading.Lock()
        self._accepted = 0
        self._replies = 0
        self._open = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> TcpEchoServer:
        """Start listening; returns self once connections are accepted."""
        if self._loop is not None:
            raise RuntimeError("the server is already running")
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=self._run, args=(loop,), name=f"tcp-echo-{self.prefix}", daemon=True)
        self._thread.start()
        try:
            self._call(self._listen())
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening, close every open connection and join the thread. Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if thread.is_alive():
            with contextlib.suppress(RuntimeError, TimeoutError):
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._loop = self._thread = None

    def __enter__(self) -> TcpEchoServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ fault switch

    def refuse(self) -> None:
        """Close the listening socket: new connections get ``ECONNREFUSED``; open ones carry on.

        The port number is kept for :meth:`accept_again`. Idempotent.
        """
        self._call(self._close_listener())

    def accept_again(self) -> None:
        """Listen again on the same port after :meth:`refuse`. Idempotent."""
        self._call(self._listen())

    # ------------------------------------------------------------------ inspection

    @property
    def port(self) -> int:
        """The port the server listens on (also while it refuses)."""
        if self._port == 0:
            raise RuntimeError("the server has not started")
        return self._port

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)``."""
        return self.host, self.port

    @property
    def refusing(self) -> bool:
        """True while connections are refused (after :meth:`refuse`, or before :meth:`start`)."""
        return self._server is None

    @property
    def accepted(self) -> int:
        """Connections accepted since start."""
        with self._lock:
            return self._accepted

    @property
    def replies(self) -> int:
        """Lines answered since start."""
        with self._lock:
            return self._replies

    @property
    def open_connections(self) -> int:
        """Connections open right now."""
        with self._lock:
            return self._open

    # ------------------------------------------------------------------ event loop side

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            with contextlib.suppress(RuntimeError):
                loop.run_until_complete(self._shutdown())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def _call(self, coroutine: Coroutine[Any, Any, _T], timeout: float = 5.0) -> _T:
        loop = self._loop
        if loop is None:
            coroutine.close()
            raise RuntimeError("the server is not running")
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout)

    async def _listen(self) -> None:
        if self._server is not None:
            return
        # reuse_address (the default on POSIX) lets accept_again bind while old connections sit in TIME_WAIT.
        server = await asyncio.start_server(
            self._serve, self.host, self._port, limit=_LINE_LIMIT, backlog=512, reuse_address=True
        )
        self._server = server
        self._port = int(server.sockets[0].getsockname()[1])

    async def _close_listener(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def _shutdown(self) -> None:
        await self._close_listener()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        # Closed transports release their sockets on the loop's next iterations.
        for _ in range(3):
            await asyncio.sleep(0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        with self._lock:
            self._accepted += 1
            self._open += 1
        try:
            while True:
                line = await reader.readline()
                if not line.endswith(b"\n"):
                    return  # EOF, possibly after a partial line: the sample answers nothing then
                with self._lock:
                    self._replies += 1
                writer.write(self._reply_prefix + line)
                await writer.drain()
        except (ConnectionError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return  # reset by the client, or a line beyond the limit: drop the connection
        finally:
            with self._lock:
                self._open -= 1
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()
            if task is not None:
                self._handlers.discard(task)


def ask(
    address: tuple[str, int], line: str, *, timeout: float = 2.0, on_connect: Callable[[], None] | None = None
) -> str | None:
    """Open a connection, send one line, return the reply without its newline (None when the peer closed
    without answering, as a proxy does when its upstream refuses), then close.

    Raises:
        OSError: the connection could not be made (``ConnectionRefusedError``) or timed out.
    """
    with socket.create_connection(address, timeout=timeout) as sock:
        if on_connect is not None:
            on_connect()  # the moment the peer accepted: what routed this connection is in effect now
        received = b""
        try:
            sock.sendall(line.encode() + b"\n")
            while not received.endswith(b"\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    return None
                received += chunk
        except (ConnectionResetError, BrokenPipeError):
            return None  # accepted, then closed without an answer
    return received[:-1].decode()
