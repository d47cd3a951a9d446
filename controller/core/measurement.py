"""What a metrics query returned: a value, no data, or a precise reason it could not be read."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field


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


@dataclass(frozen=True)
class VectorOutcome:
    """The result of one grouped instant query (``sum by (labels) (...)``): a value per group, or an error.

    ``values`` maps the group's label values (in the order the query groups by) to the raw sample text's
    number; a group absent from ``values`` had no series.
    """

    query: str
    values: Mapping[tuple[str, ...], float] = field(default_factory=dict)
    error: str | None = None

    def outcome_for(self, key: tuple[str, ...], *, query: str) -> QueryOutcome:
        """What ``query`` (the per-group form of this query) would have returned for the group ``key``."""
        if self.error is not None:
            return QueryOutcome(query=query, error=self.error)
        value = self.values.get(key)
        if value is None:
            return QueryOutcome(query=query)
        if math.isnan(value):
            return QueryOutcome(query=query, error="query returned NaN (e.g. 0/0: nothing to divide by)")
        if math.isinf(value):
            return QueryOutcome(query=query, error=f"query returned {'+' if value > 0 else '-'}Inf")
        return QueryOutcome(query=query, value=value)
