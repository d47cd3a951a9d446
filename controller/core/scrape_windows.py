"""Windows that respect the scrape interval (docs/analysis.md).

A counter is known only at its scrapes. A window shorter than two scrape intervals may hold one sample of
a series or none, although the series is there, so an early look would read "no data" or nothing at all;
and the last sample before the window was taken before the step (its weight) began. So:

* the **scrape interval** of the counters a policy reads is learned from the spacing of their samples
  (``controller.core.promql.scrape_interval_queries``), unless the policy (``spec.analysis.scrapeInterval``)
  or the controller's setting states it;
* a window is never shorter than **two scrape intervals** (``minimum_window``); until the step is that old
  the analysis is "not yet" (``not_yet_reason``): neither data nor no data, it holds the step and counts
  nothing;
* a window counts only increases between samples taken inside it (``controller.core.promql``), and a
  window never reaches back before the step started, so nothing counted belongs to the previous weight.

The first check of a step therefore runs two scrape intervals after the weight was confirmed live (at the
controller's next pass), and a failure that starts later shows in the check after its first two scrapes:
the minimum detection time is about two scrape intervals plus one analysis interval.

Also here: at weight 0 a check that observed nothing at all (no canary traffic, as expected, and no stable
baseline either) has no data; it must not pass (``weight_zero_without_baseline``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime

from controller.core.judgement import CheckResult, SideData
from controller.core.policy import MetricCheck
from controller.core.status import Verdict

# Scrapes a window must be able to hold.
SCRAPES_PER_WINDOW = 2


def slowest(intervals: Iterable[float]) -> float | None:
    """The scrape interval a policy's windows respect: the slowest of its counters' (learned per group),
    to the millisecond; None when none is known. Non-finite or non-positive values are ignored."""
    known = [value for value in intervals if math.isfinite(value) and value > 0]
    return round(max(known), 3) if known else None


def minimum_window(scrape_interval_seconds: float) -> float:
    """The shortest window that holds two samples of a series scraped every ``scrape_interval_seconds``
    (0: unknown, no minimum)."""
    return SCRAPES_PER_WINDOW * max(0.0, scrape_interval_seconds)


def window_seconds(*, wanted: float, age: float, scrape_interval_seconds: float) -> float:
    """The window a look evaluates: what the check wants, at least two scrape intervals, never reaching back
    before the step started (``age`` seconds ago)."""
    return max(0.0, min(max(wanted, minimum_window(scrape_interval_seconds)), age))


def not_yet_reason(
    *, step_started_at: datetime, now: datetime, scrape_interval_seconds: float, source: str
) -> str | None:
    """Why no look can be evaluated yet at ``now``, or None when the step is old enough.

    The reason is the same on every pass of the step (no countdown in it), so a pass that changes nothing
    writes nothing.
    """
    need = minimum_window(scrape_interval_seconds)
    age = (now - step_started_at).total_seconds()
    if need <= 0 or age >= need:
        return None
    return (
        "not yet: the window since the step started holds fewer than two scrapes "
        f"(every {scrape_interval_seconds:g} s, {source}); the first check is {need:g} s after the step started"
    )


def weight_zero_without_baseline(
    check: MetricCheck, canary: SideData, stable: SideData | None, *, weight: int, result: CheckResult
) -> CheckResult:
    """At weight 0 the first step observes the stable baseline: a check that saw no canary traffic (as
    expected) and no stable traffic either observed nothing, so it follows ``onNoData`` instead of passing.

    Returns ``result`` unchanged in every other case.
    """
    if weight != 0 or result.verdict != Verdict.PASS:
        return result
    if _observed(canary) or (stable is not None and _observed(stable)):
        return result
    why = (
        "weight 0 and no stable connections either: the first step observes the stable baseline"
        if stable is not None
        else "weight 0 and no stable workload to observe (set analysis.selector's stable workload or cluster): "
        "the first step observes the stable baseline"
    )
    verdict = {"hold": Verdict.INCONCLUSIVE, "fail": Verdict.FAIL, "pass": Verdict.PASS}[check.on_no_data]
    return CheckResult(
        name=result.name,
        verdict=verdict,
        reason=f"no data: {why} (onNoData: {check.on_no_data})",
        queries=result.queries,
        stable_errors=result.stable_errors,
        stable_connections=result.stable_connections,
        stable_value=result.stable_value,
    )


def _observed(side: SideData) -> bool:
    """True when a side measured something: a value, or at least one connection."""
    if side.total is not None:
        return side.total.value is not None and side.total.value > 0
    return side.value is not None and side.value.value is not None
