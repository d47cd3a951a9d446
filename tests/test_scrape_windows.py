"""Windows that respect the scrape interval (issue 15 §1), without Prometheus: the interval learned from the
samples, the "not yet" hold and what the state machine does with it, and the weight-0 step that observed
nothing. The counting itself runs on a real Prometheus in ``tests/prom/test_scrape_intervals.py``."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import pytest

from controller.core.judgement import SideData, judge
from controller.core.measurement import QueryOutcome, VectorOutcome
from controller.core.policy import CanaryPolicy, MetricCheck
from controller.core.promql import Variables, istio_counts, window_series
from controller.core.rollout import decide
from controller.core.scrape_windows import (
    not_yet_reason,
    slowest,
    weight_zero_without_baseline,
    window_seconds,
)
from controller.core.status import AnalysisResult, Phase, RolloutStatus, Verdict
from controller.service.prometheus_analysis import PrometheusAnalysis
from tests.rollout_sim import T0, Sim
from tests.test_rollout import seed_policy, seed_target


class SpacedMetrics:
    """Answers count queries with fixed numbers, and the grouped scrape-interval query with ``spacing`` for
    the stable group and a faster one for the canary's (None: no group)."""

    def __init__(self, spacing: float | None, counts: dict[str, tuple[float | None, float | None]]) -> None:
        self.spacing = spacing
        self.counts = counts
        self.queries: list[str] = []
        self.learned: list[str] = []

    def query(self, *, query: str, at: datetime, connection: CanaryPolicy | None = None) -> QueryOutcome:
        self.queries.append(query)
        workload = re.search(r'destination_workload="([^"]+)"', query)
        assert workload is not None
        errors, total = self.counts[workload.group(1)]
        return QueryOutcome(query=query, value=errors if 'response_flags!="-"' in query else total)

    def query_vector(
        self, *, query: str, at: datetime, labels: tuple[str, ...], connection: CanaryPolicy | None = None
    ) -> VectorOutcome:
        self.learned.append(query)
        assert "count_over_time" in query, "only the scrape interval is queried grouped here"
        if self.spacing is None:
            return VectorOutcome(query=query)
        namespace = "istio-io-tcp-traffic-shifting"
        values: dict[tuple[str, ...], float] = {
            ("tcp-echo-v1", namespace): self.spacing,
            ("tcp-echo-v2", namespace): self.spacing / 3,
            ("tcp-echo-v2", "elsewhere"): 10 * self.spacing,
        }
        return VectorOutcome(query=query, values=values)


def _policy(*, step: str = "2m", **analysis: Any) -> CanaryPolicy:
    doc = seed_policy(stepDuration=step).model_dump(mode="json")
    doc["spec"]["analysis"] = {
        "interval": "10s",
        "selector": {"canaryWorkload": "tcp-echo-v2", "stableWorkload": "tcp-echo-v1"},
        "metrics": [
            {"name": "errors", "template": "istio-tcp-connect-error-ratio", "countTest": {}, "onNoData": "fail"}
        ],
        **analysis,
    }
    return CanaryPolicy.model_validate(doc)


def _status(weight: int = 20) -> RolloutStatus:
    return RolloutStatus(run_id="r-1", step_index=1, weight=weight, step_started_at=T0)


HEALTHY: dict[str, tuple[float | None, float | None]] = {"tcp-echo-v2": (0.0, 500.0), "tcp-echo-v1": (1.0, 2000.0)}


# ----------------------------------------------------------------------------------- learning the interval


def test_the_interval_is_the_slowest_known_one() -> None:
    assert slowest([15.0, 30.0004, 5.0]) == 30.0
    assert slowest([float("inf"), float("nan"), 0.0]) is None
    assert slowest([]) is None


def test_the_window_is_at_least_two_scrape_intervals_but_never_reaches_before_the_step() -> None:
    assert window_seconds(wanted=10, age=100, scrape_interval_seconds=15) == 30
    assert window_seconds(wanted=60, age=100, scrape_interval_seconds=15) == 60
    assert window_seconds(wanted=60, age=40, scrape_interval_seconds=15) == 40
    assert window_seconds(wanted=10, age=100, scrape_interval_seconds=0) == 10


def test_not_yet_holds_until_the_step_is_two_scrape_intervals_old_with_a_reason_that_does_not_count_down() -> None:
    reasons = {
        not_yet_reason(step_started_at=T0, now=T0 + timedelta(seconds=s), scrape_interval_seconds=15, source="x")
        for s in (0, 5, 29.9)
    }
    assert len(reasons) == 1
    (reason,) = reasons
    assert reason is not None
    assert reason.startswith("not yet: the window since the step started holds fewer than two scrapes (every 15 s")
    assert (
        not_yet_reason(step_started_at=T0, now=T0 + timedelta(seconds=30), scrape_interval_seconds=15, source="x")
        is None
    )
    assert not_yet_reason(step_started_at=T0, now=T0, scrape_interval_seconds=0, source="unknown") is None


# --------------------------------------------------------------------------------------- the analysis service


@pytest.mark.parametrize("scrape", [15.0, 30.0])
def test_the_first_check_of_a_step_waits_for_two_learned_scrapes_and_queries_nothing_before(scrape: float) -> None:
    metrics = SpacedMetrics(scrape, dict(HEALTHY))
    analysis = PrometheusAnalysis(metrics)
    policy = _policy()
    early = analysis.verdict(policy=policy, status=_status(), now=T0 + timedelta(seconds=5))
    assert early is not None
    assert early.verdict == Verdict.NOT_YET
    assert f"every {scrape:g} s, learned from the samples" in early.reason
    assert early.evaluated_at is None
    assert metrics.queries == []
    ready = analysis.verdict(policy=policy, status=_status(), now=T0 + timedelta(seconds=2 * scrape + 1))
    assert ready is not None
    assert ready.verdict == Verdict.PASS, ready.reason
    window = f"[{round(2 * scrape)}s]"  # the 10 s interval widened to two scrapes
    assert all(window in query for query in metrics.queries), metrics.queries[0]
    assert len(metrics.learned) == 1, "learned once, then reused"


def test_the_interval_is_learned_once_for_every_rollout_of_a_template_and_its_own_groups_are_used() -> None:
    metrics = SpacedMetrics(15.0, HEALTHY)
    analysis = PrometheusAnalysis(metrics)
    for name in ("a", "b", "c"):
        doc = _policy().model_dump(mode="json", exclude_none=True)
        doc["metadata"]["name"] = name
        policy = CanaryPolicy.model_validate(doc)
        seconds, source = analysis.scrape_interval(policy, T0)
        assert (seconds, source) == (15.0, "learned from the samples"), "the slowest of its canary and stable"
    assert len(metrics.learned) == 1


def test_a_window_shorter_than_two_scrapes_is_widened_in_step_and_the_interval_is_relearned_later() -> None:
    metrics = SpacedMetrics(15.0, HEALTHY)
    analysis = PrometheusAnalysis(metrics)
    policy = _policy()
    result = analysis.verdict(policy=policy, status=_status(), now=T0 + timedelta(seconds=100))
    assert result is not None
    assert result.verdict == Verdict.PASS
    assert all("[30s]" in q for q in metrics.queries), "interval 10s widened to two 15 s scrapes"
    analysis.verdict(policy=policy, status=_status(), now=T0 + timedelta(seconds=100 + 301))
    assert len(metrics.learned) == 2


def test_a_failed_learning_query_is_asked_again_soon_and_until_then_the_interval_is_unknown() -> None:
    metrics = SpacedMetrics(15.0, HEALTHY)
    failing = metrics.query_vector
    answers = iter([VectorOutcome(query="q", error="Prometheus unreachable")])

    def flaky(**kwargs: Any) -> VectorOutcome:
        return next(answers, None) or failing(**kwargs)

    metrics.query_vector = flaky  # type: ignore[method-assign]
    analysis = PrometheusAnalysis(metrics)
    assert analysis.scrape_interval(_policy(), T0) == (0.0, "unknown")
    assert analysis.scrape_interval(_policy(), T0 + timedelta(seconds=10)) == (0.0, "unknown"), "not asked again yet"
    assert analysis.scrape_interval(_policy(), T0 + timedelta(seconds=31)) == (15.0, "learned from the samples")


def test_the_policy_field_overrides_the_setting_which_overrides_what_is_learned() -> None:
    metrics = SpacedMetrics(15.0, HEALTHY)
    at = T0 + timedelta(seconds=45)
    by_setting = PrometheusAnalysis(metrics, scrape_interval_seconds=30).verdict(
        policy=_policy(), status=_status(), now=at
    )
    assert by_setting is not None
    assert by_setting.verdict == Verdict.NOT_YET
    assert "every 30 s, the controller's setting" in by_setting.reason
    by_policy = PrometheusAnalysis(metrics, scrape_interval_seconds=30).verdict(
        policy=_policy(scrapeInterval="20s"), status=_status(), now=at
    )
    assert by_policy is not None
    assert by_policy.verdict == Verdict.PASS
    assert metrics.learned == []


def test_with_no_sample_to_learn_from_there_is_no_minimum_and_no_data_stays_no_data() -> None:
    metrics = SpacedMetrics(None, {"tcp-echo-v2": (None, None), "tcp-echo-v1": (None, None)})
    result = PrometheusAnalysis(metrics).verdict(policy=_policy(), status=_status(), now=T0 + timedelta(seconds=5))
    assert result is not None
    assert result.verdict == Verdict.FAIL
    assert "no data" in result.reason


def test_the_stable_baseline_at_weight_100_spans_at_least_two_scrapes() -> None:
    metrics = SpacedMetrics(30.0, HEALTHY)
    policy = _policy(step="40s")
    result = PrometheusAnalysis(metrics).verdict(policy=policy, status=_status(100), now=T0 + timedelta(seconds=61))
    assert result is not None
    stable = [q for q in metrics.queries if "tcp-echo-v1" in q]
    assert stable
    assert all("[60s]" in q for q in stable), stable[0]
    assert "stable baseline: the 60 s before this step" in result.reason


# ------------------------------------------------------------------------------------------ the state machine


def _sim_with(**analysis: Any) -> Sim:
    doc = seed_policy(stepDuration="1m").model_dump(mode="json")
    doc["spec"]["analysis"] = {
        "selector": {"canaryWorkload": "tcp-echo-v2"},
        "metrics": [{"name": "conns", "template": "istio-tcp-connections"}],
        **analysis,
    }
    sim = Sim(CanaryPolicy.model_validate(doc), seed_target())
    sim.verdict = None
    sim.run_until({Phase.PROGRESSING})
    sim.tick(1)
    assert sim.status.run_id is not None
    return sim


def _pass(sim: Sim, result: AnalysisResult) -> None:
    sim.status = decide(
        sim.policy, sim.status, sim.observations().model_copy(update={"analysis": result}), sim.now
    ).status


def test_not_yet_holds_the_step_counts_as_neither_inconclusive_nor_failure_and_says_why() -> None:
    sim = _sim_with(maxInconclusive=1, onInconclusive="rollback")
    assert sim.status.run_id is not None
    waiting = AnalysisResult(
        run_id=sim.status.run_id, step_index=0, verdict=Verdict.NOT_YET, reason="not yet: two scrapes (every 30 s)"
    )
    for _ in range(5):
        sim.now += timedelta(seconds=5)
        _pass(sim, waiting)
    assert sim.status.phase == Phase.PROGRESSING
    assert sim.status.consecutive_inconclusive == 0
    assert sim.status.consecutive_failures == 0
    assert sim.status.last_verdict is None
    assert sim.status.message.endswith("; not yet: two scrapes (every 30 s)")
    sim.now += timedelta(seconds=60)  # the step's time is up, still no look possible (a step shorter than 2 scrapes)
    _pass(sim, waiting)
    assert sim.status.step_index == 0
    assert sim.status.message == "step 1/4 held at weight 0: not yet: two scrapes (every 30 s)"
    gate = AnalysisResult(run_id=sim.status.run_id, step_index=0, verdict=Verdict.PASS, evaluated_at=sim.now)
    _pass(sim, gate)
    assert sim.status.step_index == 1


# ---------------------------------------------------------------------------------------------- weight 0


def _check(**fields: Any) -> MetricCheck:
    return MetricCheck.model_validate({"name": "errors", "template": "istio-tcp-connect-error-ratio", **fields})


def _side(errors: float | None, total: float | None) -> SideData:
    return SideData(errors=QueryOutcome("e", value=errors), total=QueryOutcome("t", value=total))


@pytest.mark.parametrize(("on_no_data", "verdict"), [("hold", Verdict.INCONCLUSIVE), ("fail", Verdict.FAIL)])
def test_a_weight_0_step_that_observed_nothing_at_all_does_not_pass(on_no_data: str, verdict: Verdict) -> None:
    check = _check(onNoData=on_no_data)
    nothing = _side(None, None)
    for stable in (nothing, None, _side(0, 0)):
        judged = judge(check, nothing, stable, weight=0)
        result = weight_zero_without_baseline(check, nothing, stable, weight=0, result=judged)
        assert result.verdict == verdict, (stable, result.reason)
        assert result.reason.startswith("no data: weight 0 and no stable")


def test_a_weight_0_step_that_observed_the_stable_baseline_passes() -> None:
    check = _check()
    canary, stable = _side(None, None), _side(0, 400)
    judged = judge(check, canary, stable, weight=0)
    assert weight_zero_without_baseline(check, canary, stable, weight=0, result=judged) == judged
    assert judged.verdict == Verdict.PASS


def test_the_analysis_at_weight_0_with_no_series_anywhere_holds_instead_of_passing() -> None:
    metrics = SpacedMetrics(None, {"tcp-echo-v2": (None, None), "tcp-echo-v1": (None, None)})
    doc = _policy().model_dump(mode="json", exclude_none=True)
    doc["spec"]["analysis"]["metrics"] = [{"name": "errors", "template": "istio-tcp-connect-error-ratio"}]
    status = RolloutStatus(run_id="r-1", step_index=0, weight=0, step_started_at=T0)
    result = PrometheusAnalysis(metrics).evaluate(
        CanaryPolicy.model_validate(doc), status, now=T0 + timedelta(seconds=130), final=True
    )
    assert result.verdict == Verdict.INCONCLUSIVE
    assert "no data: weight 0 and no stable connections either" in result.reason
    metrics.counts["tcp-echo-v1"] = (0.0, 800.0)
    result = PrometheusAnalysis(metrics).evaluate(
        CanaryPolicy.model_validate(doc), status, now=T0 + timedelta(seconds=130), final=True
    )
    assert result.verdict == Verdict.PASS, result.reason


# ----------------------------------------------------------------------------------------- the query's shape


def test_the_count_starts_from_the_first_sample_inside_the_window_and_proves_a_new_series_born_inside() -> None:
    series = window_series('m{a="b"}', 60, 15)
    assert 'min_over_time(m{a="b"}[60s])' in series, "first sample inside the window, not the one before it"
    assert 'm{a="b"} offset 45001ms' in series, "seen in the first scrape interval: only later increases count"
    assert 'resets(m{a="b"}[60s]) > 0' in series
    queries = istio_counts(
        Variables(namespace="shop", window_seconds=60, step_start=0, canary_workload="v2", scrape_interval_seconds=15),
        "canary",
    )
    assert "offset 45001ms" in queries.total
    assert "offset 60s" not in queries.total, "never the sample before the window"
