"""Smoke test of the judgement-accuracy benchmark: a few trials, the JSON's shape and the obvious answers."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import judgement_accuracy as bench
from controller.core.judgement import DEFAULT_MIN_CONNECTIONS
from controller.core.status import Verdict

SMALL = bench.Config(
    trials=25,
    seed=7,
    connections=(50, 300),
    weights=(20,),
    scenarios=(("healthy", 0.001), ("broken", 1.0)),
    jobs=1,
)


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return bench.run(SMALL)


def _cell(report: dict[str, Any], scenario: str, connections: int) -> dict[str, Any]:
    cells: list[dict[str, Any]] = [
        c for c in report["cells"] if c["scenario"] == scenario and c["canaryConnections"] == connections
    ]
    assert len(cells) == 1
    return cells[0]


def test_the_report_has_every_part_and_is_json(report: dict[str, Any]) -> None:
    assert json.loads(json.dumps(report)) == report
    for key in ("config", "check", "goals", "models", "rules", "anchors", "cells", "powerBound", "goalCheck"):
        assert key in report
    assert report["config"]["seed"] == 7
    assert report["config"]["trials"] == 25
    assert len(report["cells"]) == 4
    rule_keys = {rule["key"] for rule in report["rules"]}
    assert {"ours", "ours-max", "ours-ctl", "thr-1-step", "thr-5-step"} <= rule_keys
    for cell in report["cells"]:
        assert cell["stableConnections"] == 4 * cell["canaryConnections"]
        assert set(cell["results"]) == rule_keys
        for result in cell["results"].values():
            assert sum(result["counts"].values()) == SMALL.trials
            for verdict in Verdict:
                low, high = result[f"{verdict}Ci95"]
                assert 0.0 <= low <= result[f"{verdict}Rate"] <= high <= 1.0


def test_the_checked_policy_is_the_seed_one_with_the_model_default() -> None:
    check = bench.policy_check("ours")
    assert check.count_test is not None
    assert (check.count_test.method, check.count_test.confidence) == ("binomial", 0.99)
    assert check.max is None
    assert check.min_connections is None
    assert bench.effective_min_connections("ours") == DEFAULT_MIN_CONNECTIONS
    assert bench.policy_check("ours-max").max == 0.01


def test_a_canary_failing_every_connection_is_rolled_back_every_time(report: dict[str, Any]) -> None:
    cell = _cell(report, "broken", 300)
    assert cell["canary"] == "regressed"
    for key, result in cell["results"].items():
        assert result["counts"][str(Verdict.FAIL)] == SMALL.trials, key


def test_below_min_connections_ours_never_passes(report: dict[str, Any]) -> None:
    for scenario in ("healthy", "broken"):
        results = _cell(report, scenario, 50)["results"]
        for key in ("ours", "ours-max", "ours-readme", "ours-ctl"):
            assert results[key]["counts"][str(Verdict.PASS)] == 0, (scenario, key)
    assert _cell(report, "healthy", 50)["results"]["ours"]["counts"][str(Verdict.INCONCLUSIVE)] == SMALL.trials
    for weight, goals in report["goalCheck"].items():
        assert goals["ours"]["belowMinConnectionsNeverPass"]["met"], weight


def test_threshold_rules_have_their_exact_rates(report: dict[str, Any]) -> None:
    result = _cell(report, "broken", 50)["results"]["thr-1-step"]
    assert result["exactFailRate"] == pytest.approx(1.0)
    healthy = _cell(report, "healthy", 300)["results"]["thr-1-step"]
    assert 0.0 <= healthy["exactFailRate"] < 0.01  # 4 or more errors in 300 at 0.1 %


def test_same_seed_same_figures_and_envoy_judged_like_istio(report: dict[str, Any]) -> None:
    assert bench.run(SMALL)["cells"] == report["cells"]
    envoy = dataclasses.replace(SMALL, template="envoy-tcp-connect-error-ratio")
    assert bench.run(envoy)["cells"] == report["cells"]


def test_power_bound_and_sampler() -> None:
    # Knowing the stable rate exactly, a 1 % test cannot catch +1 pp on 300 connections 95 % of the time.
    assert bench.best_power(300, 0.001, 0.011, 0.01) < 0.95
    assert bench.best_power(5000, 0.001, 0.011, 0.01) > 0.99
    assert bench.best_power(100, 0.001, 0.001, 0.01) == pytest.approx(0.01)
    assert bench.Binomial(10, 1.0).cdf[-1] == 1.0
    assert bench.split(302, 5) == [61, 61, 60, 60, 60]


def test_command_line_writes_json_and_prints_markdown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = bench.main(
        ["--out", str(tmp_path), "--trials", "10", "--connections", "50,100", "--weights", "50", "--jobs", "1"]
    )
    assert code == 0
    written = json.loads((tmp_path / "judgement.json").read_text(encoding="utf-8"))
    assert written["config"]["weights"] == [50]
    assert len(written["cells"]) == 2 * len(bench.SCENARIOS)
    out = capsys.readouterr().out
    assert "| canary conns |" in out
    assert "Power bound" in out


@pytest.mark.parametrize(("n_c", "n_s"), [(300, 1200), (100, 100), (1000, 4000)])
@pytest.mark.parametrize("rate", [0.0005, 0.001, 0.01, 0.2])
def test_the_unknown_stable_bound_rolls_back_exactly_the_budget_of_healthy_canaries(
    n_c: int, n_s: int, rate: float
) -> None:
    assert bench.umpu_power(n_c, n_s, rate, rate, 0.01) == pytest.approx(0.01, abs=1e-9)


@pytest.mark.parametrize(("n", "canary_rate"), [(100, 0.011), (300, 0.011), (1000, 0.011), (300, 0.051)])
def test_not_knowing_the_stable_rate_costs_power(n: int, canary_rate: float) -> None:
    known = bench.best_power(n, 0.001, canary_rate, 0.01)
    unknown = bench.umpu_power(n, 4 * n, canary_rate, 0.001, 0.01)
    assert 0.01 < unknown < known


def test_issue_15s_table_has_now_before_bounds_and_connections_to_rollback(report: dict[str, Any]) -> None:
    section = report["issue15"]
    assert section["rule"] == "ours-ctl"
    rows = {row["canaryConnections"]: row for row in section["weights"]["20"]["rows"]}
    broken = rows[300]["broken"]
    # A canary refusing every connection is rolled back by the first in-step look, after one interval's traffic.
    assert broken["wrongRate"] == 0.0
    assert broken["meanConnectionsToRollback"] == 300 / SMALL.intervals
    assert broken["rolledBackInStepRate"] == 1.0
    assert broken["boundUnknownStable"] == pytest.approx(0.0, abs=1e-9)
    assert rows[300]["healthy"]["meanConnectionsToRollback"] is None or rows[300]["healthy"]["wrongRate"] > 0
    markdown = bench.markdown(report)
    assert "**Issue 15:" in markdown
    assert "| 300 | " in markdown.split("**Issue 15:")[1]
