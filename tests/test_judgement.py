"""Judgement of measurements: exact statistics, thresholds, sample size, no data, errors."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.core.judgement import (
    SideData,
    betainc,
    binomial_upper_tail,
    clopper_pearson,
    combine,
    fisher_one_sided,
    judge,
    poisson_conditional_one_sided,
)
from controller.core.measurement import QueryOutcome
from controller.core.policy import MetricCheck
from controller.core.rollout import Verdict


def _exact_tail(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, x) * p**x * (1 - p) ** (n - x) for x in range(k, n + 1))


@given(st.integers(0, 60), st.integers(1, 60), st.floats(0.001, 0.999))
def test_the_binomial_tail_matches_the_exact_sum(k: int, n: int, p: float) -> None:
    assert binomial_upper_tail(k, n, p) == pytest.approx(_exact_tail(k, n, p), abs=1e-9)


def test_incomplete_beta_edges() -> None:
    assert betainc(2, 3, 0.0) == 0.0
    assert betainc(2, 3, 1.0) == 1.0
    assert betainc(1, 1, 0.3) == pytest.approx(0.3)


@pytest.mark.parametrize(
    ("k", "n", "confidence", "lower", "upper"),
    [
        (0, 300, 0.95, 0.0, 0.009936),  # the rule of three: about 3/n
        (10, 10, 0.99, 0.630957, 1.0),
    ],
)
def test_clopper_pearson_bounds_match_reference_values(
    k: int, n: int, confidence: float, lower: float, upper: float
) -> None:
    got = clopper_pearson(k, n, confidence)
    assert got[0] == pytest.approx(lower, abs=2e-5)
    assert got[1] == pytest.approx(upper, abs=2e-5)


@given(st.integers(1, 40), st.integers(41, 120), st.sampled_from([0.9, 0.95, 0.99]))
def test_clopper_pearson_bounds_satisfy_their_definition(k: int, n: int, confidence: float) -> None:
    lower, upper = clopper_pearson(k, n, confidence)
    assert _exact_tail(k, n, lower) == pytest.approx(1 - confidence, abs=1e-6)
    assert 1 - _exact_tail(k + 1, n, upper) == pytest.approx(1 - confidence, abs=1e-6)


def test_fisher_one_sided_matches_a_hand_computed_table() -> None:
    # Canary 3/10 errors vs stable 0/10: P(X >= 3) with 3 errors among 20, 10 drawn = C(10,3)/C(20,3).
    assert fisher_one_sided(3, 10, 0, 10) == pytest.approx(math.comb(10, 3) / math.comb(20, 3))
    assert fisher_one_sided(0, 10, 5, 10) == pytest.approx(1.0)


def test_poisson_conditional_test_uses_the_share_of_connections() -> None:
    assert poisson_conditional_one_sided(2, 100, 0, 100) == pytest.approx(0.25)
    assert poisson_conditional_one_sided(0, 100, 0, 100) == 1.0


def _ratio(**extra: Any) -> MetricCheck:
    return MetricCheck.model_validate({"name": "errors", "template": "envoy-tcp-connect-error-ratio", **extra})


def _side(errors: float | None, total: float | None) -> SideData:
    return SideData(errors=QueryOutcome("e", value=errors), total=QueryOutcome("t", value=total))


def test_a_canary_refusing_every_connection_fails_within_a_handful_of_connections() -> None:
    result = judge(_ratio(countTest={}), _side(8, 8), _side(0, 32), weight=20)
    assert result.verdict == Verdict.FAIL
    assert "worse than stable 0/32" in result.reason


def test_a_healthy_canary_with_enough_connections_passes() -> None:
    result = judge(_ratio(countTest={}, max=0.01), _side(1, 400), _side(3, 1600), weight=20)
    assert result.verdict == Verdict.PASS
    assert (result.canary_errors, result.canary_connections) == (1, 400)


def test_below_the_sample_size_a_clean_canary_is_inconclusive_never_pass() -> None:
    result = judge(_ratio(countTest={}, minConnections=300), _side(0, 299), _side(0, 1200), weight=20)
    assert result.verdict == Verdict.INCONCLUSIVE
    assert "fewer than minConnections 300" in result.reason


def test_a_ratio_above_max_fails_only_with_significant_evidence() -> None:
    # 2 errors in 100 is above a 1 % max, but the 99 % lower bound (0.15 %) is not: inconclusive.
    weak = judge(_ratio(max=0.01), _side(2, 100), None, weight=20)
    assert weak.verdict == Verdict.INCONCLUSIVE
    strong = judge(_ratio(max=0.01), _side(20, 100), None, weight=20)
    assert strong.verdict == Verdict.FAIL
    assert "lower bound" in strong.reason


def test_compare_to_stable_uses_factor_and_margin() -> None:
    check = _ratio(compareToStable={"factor": 2, "margin": 0.001})
    assert judge(check, _side(60, 1000), _side(10, 1000), weight=50).verdict == Verdict.FAIL
    assert judge(check, _side(30, 1000), _side(10, 1000), weight=50).verdict == Verdict.INCONCLUSIVE
    assert judge(check, _side(2, 1000), _side(10, 1000), weight=50).verdict == Verdict.PASS


@pytest.mark.parametrize(
    ("policy", "verdict"), [("hold", Verdict.INCONCLUSIVE), ("fail", Verdict.FAIL), ("pass", Verdict.PASS)]
)
def test_no_data_follows_on_no_data(policy: str, verdict: Verdict) -> None:
    result = judge(_ratio(onNoData=policy), _side(None, None), None, weight=20)
    assert result.verdict == verdict
    assert result.reason.startswith("no data")


def test_a_query_error_is_inconclusive_with_its_cause_whatever_on_no_data_says() -> None:
    broken = SideData(
        errors=QueryOutcome("e", error="Prometheus at http://p:9090 unreachable"), total=QueryOutcome("t", value=10)
    )
    result = judge(_ratio(onNoData="pass"), broken, None, weight=20)
    assert result.verdict == Verdict.INCONCLUSIVE
    assert "unreachable" in result.reason


def test_at_weight_0_the_stable_baseline_is_observed() -> None:
    result = judge(_ratio(countTest={}), _side(None, None), _side(1, 500), weight=0)
    assert result.verdict == Verdict.PASS
    assert "stable baseline observed (1 errors in 500 connections)" in result.reason
    missing = judge(_ratio(countTest={}), _side(None, None), _side(None, None), weight=0)
    assert missing.verdict == Verdict.INCONCLUSIVE


def test_value_checks_use_plain_thresholds() -> None:
    check = MetricCheck.model_validate({"name": "conns", "template": "istio-tcp-connections", "min": 50})
    assert judge(check, SideData(value=QueryOutcome("q", value=10)), None, weight=20).verdict == Verdict.FAIL
    assert judge(check, SideData(value=QueryOutcome("q", value=80)), None, weight=20).verdict == Verdict.PASS


def test_combine_fails_on_any_failure_and_never_passes_on_inconclusive() -> None:
    passed = judge(_ratio(), _side(0, 500), None, weight=20)
    unsure = judge(_ratio(), _side(0, 5), None, weight=20)
    failed = judge(_ratio(max=0.01), _side(50, 100), None, weight=20)
    assert combine([passed, unsure])[0] == Verdict.INCONCLUSIVE
    assert combine([passed, unsure, failed])[0] == Verdict.FAIL
    assert combine([passed])[0] == Verdict.PASS


def test_each_look_spends_only_its_share_of_the_steps_error_budget() -> None:
    check = MetricCheck.model_validate({"name": "e", "template": "istio-tcp-connect-error-ratio", "countTest": {}})
    canary, stable = _side(4, 300), _side(1, 1200)  # one-sided Fisher p = 0.0066
    alone = judge(check, canary, stable, weight=20)
    assert alone.verdict == Verdict.FAIL
    assert alone.threshold == "binomial test at 99%"
    in_step = judge(check, canary, stable, weight=20, alpha_share=1 / 6)
    assert in_step.verdict == Verdict.PASS, in_step.reason
    clear = judge(check, _side(9, 300), stable, weight=20, alpha_share=1 / 6)  # p = 3.8e-06
    assert clear.verdict == Verdict.FAIL
    assert clear.threshold == "binomial test at 99.8333%"
    with pytest.raises(ValueError, match="alpha_share"):
        judge(check, canary, stable, weight=20, alpha_share=0)
