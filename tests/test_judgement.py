"""Judgement of measurements: exact statistics, thresholds, sample size, no data, errors."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.judgement import (
    SideData,
    betainc,
    binomial_upper_tail,
    clopper_pearson,
    clopper_pearson_alpha,
    combine,
    fisher_one_sided,
    hwang_shih_decani_spent,
    judge,
    look_alpha,
    obrien_fleming_spent,
    poisson_conditional_one_sided,
    step_alpha_share,
)
from controller.core.measurement import QueryOutcome
from controller.core.policy import MetricCheck
from controller.core.status import Verdict


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


def _bisected_bound(k: int, n: int, alpha: float, *, lower: bool, steps: int) -> float:
    """The bound by plain bisection over the same tails (the search before issue 18): the reference."""
    lo, hi = 0.0, 1.0
    for _ in range(steps):
        mid = (lo + hi) / 2
        if lower:
            lo, hi = (mid, hi) if binomial_upper_tail(k, n, mid) < alpha else (lo, mid)
        else:
            lo, hi = (mid, hi) if betainc(n - k, k + 1, 1.0 - mid) > alpha else (lo, mid)
    return (lo + hi) / 2


@settings(max_examples=400)
@given(
    st.sampled_from([1, 2, 5, 40, 300, 1250, 5000, 100_000]),
    st.floats(0.0, 1.0),
    st.floats(-35.0, -0.31),
    st.sampled_from([24, 30, 60]),
)
def test_the_bounds_search_lands_where_a_bisection_does(n: int, share: float, log10_alpha: float, steps: int) -> None:
    # Newton's steps from the Wilson bound, certified by a bracket: the same bound a bisection finds, with a
    # fraction of its tail evaluations (the traffic share's two bounds cost 0.59 ms by bisection, 0.13 now).
    k = round(share * n)
    alpha = 10.0**log10_alpha
    lower, upper = clopper_pearson_alpha(k, n, alpha, steps=steps)
    for got, is_lower in ((lower, True), (upper, False)):
        if (is_lower and k == 0) or (not is_lower and k == n):
            assert got == (0.0 if is_lower else 1.0)
            continue
        if k in (0, n):  # closed form: exact where the bisection carries the tail's rounding
            expected = alpha ** (1 / n) if is_lower else 1 - alpha ** (1 / n)
            assert got == pytest.approx(expected, rel=1e-12), (k, n, alpha, is_lower)
            continue
        expected = _bisected_bound(k, n, alpha, lower=is_lower, steps=steps)
        assert got == pytest.approx(expected, abs=2.0**-steps + 1e-12 * expected), (k, n, alpha, is_lower)


def test_with_no_or_every_trial_failed_the_bounds_are_in_closed_form() -> None:
    # (1 - p)**n = alpha at the upper bound with no failure; p**n = alpha at the lower one with all failed.
    assert clopper_pearson_alpha(0, 300, 0.05)[1] == pytest.approx(1 - 0.05 ** (1 / 300), rel=1e-12)
    assert clopper_pearson_alpha(300, 300, 1e-30)[0] == pytest.approx((1e-30) ** (1 / 300), rel=1e-12)
    assert clopper_pearson_alpha(0, 300, 0.05)[1] == pytest.approx(
        _bisected_bound(0, 300, 0.05, lower=False, steps=60), rel=1e-12
    )


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
    assert clear.threshold == "binomial test at 99.83%"
    with pytest.raises(ValueError, match="alpha_share"):
        judge(check, canary, stable, weight=20, alpha_share=0)


# -- the step's sequential design: O'Brien-Fleming-like alpha spending -------------------------------------


@given(st.integers(1, 40), st.sampled_from([0.1, 0.05, 0.01, 0.005, 0.001]))
def test_a_steps_looks_spend_exactly_its_budget_by_the_final_gate(in_step_looks: int, alpha: float) -> None:
    information = 1 / (in_step_looks + 1)
    per_look = step_alpha_share(final=False, in_step_looks=in_step_looks, information=information, alpha=alpha)
    final = step_alpha_share(final=True, in_step_looks=in_step_looks, information=information, alpha=alpha)
    assert 0 < per_look <= 0.5 / in_step_looks
    assert final >= 0.5
    assert in_step_looks * per_look + final == pytest.approx(1.0, abs=1e-12)


@given(st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.sampled_from([0.1, 0.05, 0.01, 0.001]))
def test_the_spending_function_grows_with_information_and_ends_at_the_budget(a: float, b: float, alpha: float) -> None:
    low, high = sorted((a, b))
    assert 0.0 <= obrien_fleming_spent(low, alpha=alpha) <= obrien_fleming_spent(high, alpha=alpha) <= alpha
    assert obrien_fleming_spent(0.0, alpha=alpha) == 0.0
    assert obrien_fleming_spent(1.0, alpha=alpha) == alpha


def test_the_spending_function_matches_lan_demets_obrien_fleming() -> None:
    # A textbook value: one-sided 2.5 %, half the information: 2 - 2 Phi(1.95996 / sqrt(0.5)) = 0.001525.
    assert obrien_fleming_spent(0.5, alpha=0.025) == pytest.approx(0.0015255, rel=1e-3)
    # Just below the final gate nearly everything is still unspent.
    assert obrien_fleming_spent(0.99, alpha=0.01) < 0.0097


def test_early_looks_spend_little_and_the_final_gate_keeps_most_of_the_budget() -> None:
    # Five intervals a step (the README's shape): four in-step looks, each one fifth of the information.
    per_look = step_alpha_share(final=False, in_step_looks=4, information=0.2, alpha=0.01)
    final = step_alpha_share(final=True, in_step_looks=4, information=0.2, alpha=0.01)
    assert per_look < 0.025
    assert final > 0.9
    # The old design spent half of the budget on in-step looks; the gate now tests at about 99 %.
    check = _ratio(countTest={})
    at_gate = judge(check, _side(4, 300), _side(1, 1200), weight=20, alpha_share=final)  # Fisher p = 0.0066
    assert at_gate.verdict == Verdict.FAIL
    assert at_gate.threshold == "binomial test at 99.09%"


def test_the_spending_function_is_hwang_shih_decani_with_gamma_minus_4() -> None:
    # alpha (1 - e^(4 t)) / (1 - e^4): at half the information 11.9 % of the budget, at a tenth 0.92 %.
    assert hwang_shih_decani_spent(0.5, alpha=0.01) == pytest.approx(0.01 * 0.11920, rel=1e-4)
    assert hwang_shih_decani_spent(0.1, alpha=0.01) == pytest.approx(0.01 * 0.0091762, rel=1e-4)
    assert hwang_shih_decani_spent(0.3, alpha=0.05, gamma=0) == pytest.approx(0.015)
    assert hwang_shih_decani_spent(1.0, alpha=0.01) == 0.01


@given(st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.floats(-8, 2), st.sampled_from([0.1, 0.01, 0.001]))
def test_hwang_shih_decani_grows_with_information_and_ends_at_the_budget(
    a: float, b: float, gamma: float, alpha: float
) -> None:
    low, high = sorted((a, b))
    spent = [hwang_shih_decani_spent(t, alpha=alpha, gamma=gamma) for t in (low, high)]
    assert 0.0 <= spent[0] <= spent[1] <= alpha


@settings(max_examples=200)
@given(st.floats(1e-300, 1.0), st.sampled_from([0.1, 0.05, 0.01, 0.001, 1e-6]))
def test_a_looks_alpha_never_rounds_to_zero_or_to_a_confidence_of_one(share: float, alpha: float) -> None:
    check = _ratio(countTest={"confidence": 1 - alpha})
    spent = look_alpha(check, share)
    assert spent > 0.0
    assert spent == pytest.approx((1 - (1 - alpha)) * share, rel=1e-9)
    # The bounds a look computes from that alpha are bounds: the lower one of 150 failures in 150 is
    # alpha ** (1 / 150), strictly between 0 and 1, however small alpha is.
    lower, upper = clopper_pearson_alpha(150, 150, spent)
    assert 0.0 < lower < 1.0
    assert lower == pytest.approx(spent ** (1 / 150), rel=1e-6)
    assert upper == 1.0


def test_a_canary_refusing_every_connection_fails_an_in_step_look_with_a_tiny_share() -> None:
    # A 10 s interval in a 3 min step under O'Brien-Fleming's spending: 8.4e-26 of the budget. The look
    # used to test at confidence 1 - 8.4e-28, which is 1.0 in floating point, and passed this canary.
    share = obrien_fleming_spent(10 / 180, alpha=0.01) / 0.01
    assert 0 < share < 1e-20
    check = _ratio(countTest={}, max=0.05)
    result = judge(check, _side(150, 150), _side(0, 600), weight=20, alpha_share=share)
    assert result.verdict == Verdict.FAIL, result.reason
    assert "p=2.8e-162 < 8.4e-28" in result.reason
    assert result.threshold == "binomial test at alpha 8.4e-28"
    # Without a count test the threshold's lower bound, computed from the same alpha, fails it too.
    by_max = judge(_ratio(max=0.05), _side(150, 150), None, weight=20, alpha_share=share)
    assert by_max.verdict == Verdict.FAIL, by_max.reason
    assert "its lower bound at alpha 8.4e-28 is 65." in by_max.reason


@pytest.mark.parametrize(
    ("information", "canary", "stable"),
    [
        (0.1, 24, 16),  # weight 60 %-ish: the demo's fault step, a tenth of the way in
        (0.1, 12, 12),  # weight 50 %, a dozen connections
        (10 / 180, 20, 80),  # weight 20 %, 10 s into a 3 min step
        (0.2, 10, 40),  # weight 20 %, ten connections
    ],
)
def test_a_canary_failing_every_connection_fails_an_early_look_with_a_few_dozen_connections(
    information: float, canary: int, stable: int
) -> None:
    share = step_alpha_share(final=False, in_step_looks=round(1 / information) - 1, information=information, alpha=0.01)
    result = judge(_ratio(countTest={}), _side(canary, canary), _side(0, stable), weight=20, alpha_share=share)
    assert result.verdict == Verdict.FAIL, result.reason


def test_a_gross_regression_fails_at_the_first_in_step_look() -> None:
    per_look = step_alpha_share(final=False, in_step_looks=4, information=0.2, alpha=0.01)
    check = _ratio(countTest={})
    # The first interval of a 300-connection step at weight 20: half the canary's connections refused.
    refusing = judge(check, _side(30, 60), _side(0, 240), weight=20, alpha_share=per_look)
    assert refusing.verdict == Verdict.FAIL, refusing.reason
    # Every one of 10 connections refused, a minute into a slow step.
    dead = judge(check, _side(10, 10), _side(0, 40), weight=20, alpha_share=per_look)
    assert dead.verdict == Verdict.FAIL, dead.reason
    # A +5 pp regression in that first interval is left to later looks and to the gate.
    mild = judge(check, _side(3, 60), _side(0, 240), weight=20, alpha_share=per_look)
    assert mild.verdict != Verdict.FAIL


def _binomial_pmf(n: int, p: float) -> list[float]:
    """P(X = k) for X ~ Binomial(n, p), for k up to where the tail is negligible."""
    out, k = [], 0
    while k <= n:
        out.append(math.comb(n, k) * p**k * (1 - p) ** (n - k))
        if k > n * p and sum(out) > 1 - 1e-12:
            break
        k += 1
    return out


def _fail_probability(check: MetricCheck, n_c: int, n_s: int, rate: float, share: float) -> float:
    """Exact probability that one look at a healthy stream (both versions failing at ``rate``) FAILs."""
    canary, stable = _binomial_pmf(n_c, rate), _binomial_pmf(n_s, rate)
    total = 0.0
    for k_c, p_c in enumerate(canary):
        for k_s, p_s in enumerate(stable):
            result = judge(check, _side(k_c, n_c), _side(k_s, n_s), weight=20, alpha_share=share)
            if result.verdict == Verdict.FAIL:
                total += p_c * p_s
    return total


@settings(max_examples=15, deadline=None)
@given(
    st.integers(100, 400),
    st.sampled_from([20, 50]),
    st.integers(2, 6),
    st.sampled_from([0.0005, 0.001, 0.003, 0.01]),
)
def test_a_healthy_stream_is_rolled_back_at_most_the_budget_of_a_step_at_the_chosen_bounds(
    n_c: int, weight: int, intervals: int, rate: float
) -> None:
    # Exact, not sampled: the in-step looks (one interval each) and the final gate (the whole step) of a
    # step whose canary and stable fail at the same rate; their summed FAIL probabilities bound the step's.
    check = _ratio(countTest={"confidence": 0.99})
    n_s = n_c * (100 - weight) // weight
    looks = intervals - 1
    per_look = step_alpha_share(final=False, in_step_looks=looks, information=1 / intervals, alpha=0.01)
    final = step_alpha_share(final=True, in_step_looks=looks, information=1 / intervals, alpha=0.01)
    in_step = _fail_probability(check, n_c // intervals, n_s // intervals, rate, per_look)
    at_gate = _fail_probability(check, n_c, n_s, rate, final)
    assert looks * in_step + at_gate <= 0.01
