"""Smoke test of the stable-baseline what-if benchmark: the JSON's shape, the guard, and the floor's arithmetic."""

from __future__ import annotations

import json
from typing import Any

import pytest

from benchmarks import stable_baseline as what_if
from benchmarks.judgement_accuracy import ISSUE15_SLACK, best_power

SMALL = what_if.Config(
    trials=40, seed=3, connections=(300, 1000), weights=(20,), baseline_steps=(30,), guards=(0.0, 0.5), jobs=1
)


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return what_if.run(SMALL)


def test_the_report_has_every_cell_and_variant_and_is_json(report: dict[str, Any]) -> None:
    assert json.loads(json.dumps(report)) == report
    assert report["variants"] == ["step-only", "baseline-30", "baseline-30-guard-0.5"]
    assert len(report["cells"]) == 2 * len(what_if.SCENARIOS)
    for cell in report["cells"]:
        assert cell["stableConnectionsPerStep"] == 4 * cell["canaryConnections"]
        for result in cell["results"].values():
            assert sum(result["counts"].values()) == SMALL.trials
            low, high = result["wrongCi95"]
            assert low <= result["wrongRate"] <= high
        assert cell["results"]["step-only"]["fellBackRate"] == 0.0
    assert set(report["goals"]["20"]["step-only"]["met"]) >= {"driftFalseRollback@300", "missed1pp@1000"}


def test_a_drifted_stable_makes_the_guard_fall_back_and_a_healthy_one_seldom(report: dict[str, Any]) -> None:
    cells = {(c["scenario"], c["canaryConnections"]): c for c in report["cells"]}
    drifted = cells[("drift-2x", 1000)]["results"]["baseline-30-guard-0.5"]["fellBackRate"]
    healthy = cells[("healthy", 1000)]["results"]["baseline-30-guard-0.5"]["fellBackRate"]
    assert drifted > healthy


def test_the_guard_pools_the_baseline_unless_the_window_is_worse_than_it() -> None:
    assert what_if.pooled(1, 1000, 30, 30_000, 0.05) == (31, 31_000, False)
    assert what_if.pooled(9, 1000, 30, 30_000, 0.05) == (9, 1000, True)
    assert what_if.pooled(9, 1000, 30, 30_000, 0.0) == (39, 31_000, False)
    assert what_if.pooled(9, 1000, 0, 0, 0.05) == (9, 1000, False)


def test_the_floor_at_the_undrifted_rate_is_the_size_of_the_most_powerful_test() -> None:
    # Neyman-Pearson both ways: the least size at 0.1 % of a test missing what the best 1 % test misses is 1 %.
    for n in (300, 1000):
        missed = 1.0 - best_power(n, 0.001, 0.011, 0.01)
        assert what_if.drift_floor(n, drifted=0.001, regressed=0.011, max_missed=missed) == pytest.approx(0.01)


def test_a_doubled_stable_rate_costs_more_than_one_percent_false_rollbacks_at_the_goals() -> None:
    for n in (300, 1000):
        floor = what_if.drift_floor(
            n, drifted=0.002, regressed=0.011, max_missed=what_if.known_rate_bound(n) + ISSUE15_SLACK[n]
        )
        assert floor > 0.01
