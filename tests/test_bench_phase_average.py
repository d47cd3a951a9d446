"""The scale benchmark's coverage figure does not depend on where its window starts (benchmarks/scale.py)."""

from __future__ import annotations

import pytest

from benchmarks.scale import PROBE_SECONDS, phase_averaged


def _waves(
    count: int, period: float, first: float, until: float, spread: float = 0.0
) -> list[tuple[float, tuple[float, ...]]]:
    """Probe rows every PROBE_SECONDS of a counter that grows by ``count`` once every ``period`` s, the
    wave's rollouts spread over ``spread`` s (0: all in the same instant)."""
    events: list[float] = []
    at = first
    while at < until:
        events.extend(at + spread * k / count for k in range(count))
        at += period
    rows: list[tuple[float, tuple[float, ...]]] = []
    t = 0.0
    while t <= until:
        rows.append((t, (float(len([e for e in events if e <= t])), 0.0)))
        t += PROBE_SECONDS
    return rows


@pytest.mark.parametrize("phase", [0.05, 1.3, 2.7, 4.9, 6.1, 8.8, 9.95])
def test_synchronised_waves_count_their_true_rate_at_any_phase(phase: float) -> None:
    # 100 rollouts passing in the same instant every 10.1 s (as measured at 100 rollouts): 100/10.1 per s.
    rows = _waves(100, 10.1, first=phase, until=120.0)
    start, end = 20.0, 80.0
    plain = rows[int(end / PROBE_SECONDS)][1][0] - rows[int(start / PROBE_SECONDS)][1][0]
    averaged = phase_averaged(rows, start, end, 10.0, 0)
    assert averaged is not None
    assert averaged / 100 == pytest.approx(10.0 / 10.1, abs=0.02)
    # The plain difference counts whole waves: 5 or 6 of them, 0.83 or 1.0 "per interval".
    assert plain in (500.0, 600.0)


def test_a_spread_counter_gives_its_rate() -> None:
    rows = _waves(1000, 10.0, first=0.0, until=120.0, spread=9.99)
    averaged = phase_averaged(rows, 30.0, 90.0, 10.0, 0)
    assert averaged == pytest.approx(1000.0, rel=0.01)


def test_no_figure_without_samples_over_the_window_or_with_a_short_window() -> None:
    rows = _waves(10, 10.0, first=0.0, until=50.0)
    assert phase_averaged(rows, 20.0, 90.0, 10.0, 0) is None  # the samples stop at 50 s
    assert phase_averaged(rows, 20.0, 35.0, 10.0, 0) is None  # shorter than two periods
    assert phase_averaged([], 20.0, 45.0, 10.0, 0) is None
