"""The sandbox's client: what the Istio task does with ``nc``, at a steady rate.

Every ``1/rate`` seconds a connection is opened through the gateway, one line is sent and the reply is
read; a reply starting with ``one`` counts for v1, ``two`` for v2, anything else (refused, closed without
an answer, timed out) is an error. Connections run in a small pool so a slow one never lowers the rate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from canary_sandbox.tcpecho import ask


@dataclass(frozen=True)
class Reply:
    """One connection: when it was accepted (monotonic s), what came back, and how long it took in all."""

    started: float
    outcome: str  # "one", "two" or "error"
    seconds: float
    detail: str = ""


@dataclass(frozen=True)
class Tally:
    """Connections in a time window."""

    connections: int
    v1: int
    v2: int
    errors: int

    @property
    def canary_share(self) -> float | None:
        """The share of answered connections that v2 answered (None before any answer)."""
        answered = self.v1 + self.v2
        return None if answered == 0 else self.v2 / answered


class LoadClient:
    """Opens ``rate`` connections per second to ``address`` until stopped.

    Args:
        address: the gateway's listener.
        rate: connections per second.
        timeout: seconds for one connection (connect, send, reply).
        clock: the monotonic clock the replies are stamped with.
    """

    def __init__(
        self,
        address: tuple[str, int],
        *,
        rate: float = 20.0,
        timeout: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError("the connection rate must be positive")
        self.address = address
        self.rate = rate
        self.timeout = timeout
        self.clock = clock
        self._replies: list[Reply] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=max(4, int(rate * timeout) + 1), thread_name_prefix="load")
        self._thread = threading.Thread(target=self._loop, name="load-client", daemon=True)
        self._sent = 0

    def start(self) -> LoadClient:
        """Start sending."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sending and wait for the connections in flight."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._pool.shutdown(wait=True)

    def _loop(self) -> None:
        interval = 1.0 / self.rate
        next_at = self.clock()
        while not self._stop.is_set():
            self._pool.submit(self._one, self._sent)
            self._sent += 1
            next_at += interval
            delay = next_at - self.clock()
            if delay < -1.0:  # far behind (a stalled machine): resynchronise instead of bursting
                next_at = self.clock()
            elif delay > 0:
                self._stop.wait(delay)

    def _one(self, number: int) -> None:
        # Stamped when the gateway accepted the connection (or when connecting failed), not when the worker
        # began: on a loaded machine a worker can start a while before it connects, under another config.
        begun = self.clock()
        stamp = {"at": begun}

        def connected() -> None:
            stamp["at"] = self.clock()

        try:
            reply = ask(self.address, f"hello {number}", timeout=self.timeout, on_connect=connected)
        except OSError as exc:
            if stamp["at"] == begun:
                stamp["at"] = self.clock()
            outcome, detail = "error", type(exc).__name__
        else:
            if reply is None:
                outcome, detail = "error", "closed without an answer"
            elif reply.startswith("one "):
                outcome, detail = "one", ""
            elif reply.startswith("two "):
                outcome, detail = "two", ""
            else:
                outcome, detail = "error", f"unexpected reply {reply[:40]!r}"
        with self._lock:
            self._replies.append(Reply(stamp["at"], outcome, self.clock() - begun, detail))

    def replies(self, since: float | None = None, until: float | None = None) -> list[Reply]:
        """Replies to connections started in ``[since, until)``, in start order."""
        with self._lock:
            chosen = [
                r
                for r in self._replies
                if (since is None or r.started >= since) and (until is None or r.started < until)
            ]
        return sorted(chosen, key=lambda r: r.started)

    def tally(self, since: float | None = None, until: float | None = None) -> Tally:
        """Counts of connections started in ``[since, until)``."""
        chosen = self.replies(since, until)
        return Tally(
            connections=len(chosen),
            v1=sum(1 for r in chosen if r.outcome == "one"),
            v2=sum(1 for r in chosen if r.outcome == "two"),
            errors=sum(1 for r in chosen if r.outcome == "error"),
        )

    def first_error(self, since: float) -> Reply | None:
        """The first failed connection started at or after ``since``."""
        return next((r for r in self.replies(since) if r.outcome == "error"), None)
