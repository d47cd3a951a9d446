"""What a metrics query returned: a value, no data, or a precise reason it could not be read."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QueryOutcome:
    """The result of one instant query that must yield at most one number.

    Exactly one of these holds: ``error`` is set (Prometheus unreachable, HTTP 4xx/5xx, timeout, NaN,
    several series where one is expected, a malformed answer: the message says which, cut short, with no
    secret in it); or ``value`` is None (the query returned no series: no data); or ``value`` is the number.
    """

    query: str
    value: float | None = None
    error: str | None = None

    @property
    def no_data(self) -> bool:
        """True when the query answered with no series."""
        return self.error is None and self.value is None
