"""A monotonic clock for tests: it moves only when the test says so."""

from __future__ import annotations


class FakeClock:
    """Monotonic time that moves only by :meth:`advance` (or :meth:`sleep`, for code that sleeps on it)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        """A ``sleep`` that waits no real time."""
        self.advance(seconds)
