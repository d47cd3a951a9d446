"""When and over which window the analysis queries, with a scripted metrics source."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from controller.core.measurement import QueryOutcome, VectorOutcome
from controller.core.policy import CanaryPolicy
from controller.core.promql import PART_LABEL
from controller.core.status import RolloutStatus, Verdict
from controller.service.prometheus_analysis import PrometheusAnalysis
from tests.rollout_sim import T0
from tests.test_rollout import seed_policy


class ScriptedMetrics:
    """Answers built-in count queries from per-side (errors, total) numbers; records every query."""

    def __init__(self) -> None:
        self.counts: dict[str, tuple[float | None, float | None]] = {
            "tcp-echo-v2": (0, 500),
            "tcp-echo-v1": (1, 2000),
        }
        self.queries: list[tuple[str, datetime]] = []

    def query(self, *, query: str, at: datetime, connection: CanaryPolicy | None = None) -> QueryOutcome:
        self.queries.append((query, at))
        workload = re.search(r'destination_workload="([^"]+)"', query)
        assert workload is not None
        errors, total = self.counts[workload.group(1)]
        value = errors if 'response_flags!="-"' in query else total
        return QueryOutcome(query=query, value=value)

    def windows(self) -> list[int]:
        return sorted({int(w) for q, _ in self.queries for w in re.findall(r"offset (\d+)s", q)})


def _policy(**analysis: Any) -> CanaryPolicy:
    doc = seed_policy(stepDuration="2m").model_dump(mode="json")
    doc["spec"]["analysis"] = {
        "interval": "30s",
        "selector": {"canaryWorkload": "tcp-echo-v2", "stableWorkload": "tcp-echo-v1"},
        "metrics": [{"name": "errors", "template": "istio-tcp-connect-error-ratio", "countTest": {}}],
        **analysis,
    }
    return CanaryPolicy.model_validate(doc)


def _status(weight: int = 20, index: int = 1) -> RolloutStatus:
    return RolloutStatus(run_id="r-1", step_index=index, weight=weight, step_started_at=T0)


def test_checks_run_every_interval_and_reuse_the_last_evaluation_in_between() -> None:
    metrics = ScriptedMetrics()
    analysis = PrometheusAnalysis(metrics)
    policy = _policy()
    first = analysis.verdict(policy=policy, status=_status(), now=T0 + timedelta(seconds=10))
    again = analysis.verdict(policy=policy, status=_status(), now=T0 + timedelta(seconds=20))
    assert first is again
    later = analysis.verdict(policy=policy, status=_status(), now=T0 + timedelta(seconds=41))
    assert later is not None
    assert later is not first
    assert later.verdict == Verdict.PASS
    assert later.checks[0].canary_connections == 500


def test_the_window_never_reaches_back_before_the_step_and_the_gate_covers_the_whole_step() -> None:
    metrics = ScriptedMetrics()
    analysis = PrometheusAnalysis(metrics)
    policy = _policy()
    analysis.verdict(policy=policy, status=_status(), now=T0 + timedelta(seconds=12))
    assert metrics.windows() == [12]
    metrics.queries.clear()
    analysis.verdict(policy=policy, status=_status(), now=T0 + timedelta(seconds=95))
    assert metrics.windows() == [30]
    metrics.queries.clear()
    gate = analysis.verdict(policy=policy, status=_status(), now=T0 + timedelta(seconds=121))
    assert metrics.windows() == [121]
    assert gate is not None
    assert gate.evaluated_at == T0 + timedelta(seconds=121)


def test_a_regressed_canary_fails_and_a_thin_one_is_inconclusive() -> None:
    metrics = ScriptedMetrics()
    metrics.counts["tcp-echo-v2"] = (12, 40)
    result = PrometheusAnalysis(metrics).verdict(policy=_policy(), status=_status(), now=T0 + timedelta(seconds=31))
    assert result is not None
    assert result.verdict == Verdict.FAIL
    # A 2m step checked every 30s: each of 3 in-step looks (a quarter of the information) spends what a
    # Hwang-Shih-DeCani function (gamma -4) allows, 3.2 % of the 1 % budget (p < 3.2e-4); the gate the rest.
    assert result.checks[0].threshold == "binomial test at 99.968%"
    final = PrometheusAnalysis(metrics).verdict(policy=_policy(), status=_status(), now=T0 + timedelta(minutes=2))
    assert final is not None
    assert final.checks[0].threshold == "binomial test at 99.1%"  # what the in-step looks left: p < 0.0090
    metrics.counts["tcp-echo-v2"] = (0, 20)
    thin = PrometheusAnalysis(metrics).verdict(policy=_policy(), status=_status(), now=T0 + timedelta(seconds=31))
    assert thin is not None
    assert thin.verdict == Verdict.INCONCLUSIVE


def test_step_zero_observes_the_stable_baseline() -> None:
    metrics = ScriptedMetrics()
    metrics.counts["tcp-echo-v2"] = (None, None)
    result = PrometheusAnalysis(metrics).verdict(
        policy=_policy(), status=_status(weight=0, index=0), now=T0 + timedelta(seconds=31)
    )
    assert result is not None
    assert result.verdict == Verdict.PASS
    assert "stable baseline observed" in result.reason


class WeightHundredMetrics(ScriptedMetrics):
    """Stable had traffic before the last step started and none since (all of it goes to the canary)."""

    def __init__(self, canary: tuple[float, float], stable_before: tuple[float, float]) -> None:
        super().__init__()
        self.canary = canary
        self.stable_before = stable_before

    def query(self, *, query: str, at: datetime, connection: CanaryPolicy | None = None) -> QueryOutcome:
        self.queries.append((query, at))
        errors_query = 'response_flags!="-"' in query
        if 'destination_workload="tcp-echo-v2"' in query:
            return QueryOutcome(query=query, value=self.canary[0] if errors_query else self.canary[1])
        counts = self.stable_before if at <= T0 else (0, 0)
        return QueryOutcome(query=query, value=counts[0] if errors_query else counts[1])


def test_at_weight_100_the_canary_is_compared_with_the_stable_baseline_of_the_step_before() -> None:
    final = T0 + timedelta(minutes=2, seconds=1)
    healthy = WeightHundredMetrics(canary=(0, 2000), stable_before=(1, 1000))
    result = PrometheusAnalysis(healthy).verdict(policy=_policy(), status=_status(weight=100, index=3), now=final)
    assert result is not None
    assert result.verdict == Verdict.PASS, result.reason
    assert "stable baseline: the 120 s before this step" in result.reason
    stable_queries = [(q, at) for q, at in healthy.queries if "tcp-echo-v1" in q]
    assert stable_queries
    assert all(at == T0 for _, at in stable_queries), "the baseline is read at the step's start"
    assert all("offset 120s" in q for q, _ in stable_queries), "over one step duration"
    regressed = WeightHundredMetrics(canary=(60, 2000), stable_before=(1, 1000))
    failed = PrometheusAnalysis(regressed).verdict(policy=_policy(), status=_status(weight=100, index=3), now=final)
    assert failed is not None
    assert failed.verdict == Verdict.FAIL, failed.reason


def test_a_new_step_is_evaluated_afresh() -> None:
    metrics = ScriptedMetrics()
    analysis = PrometheusAnalysis(metrics)
    policy = _policy()
    first = analysis.verdict(policy=policy, status=_status(index=1), now=T0 + timedelta(seconds=10))
    second = analysis.verdict(policy=policy, status=_status(weight=50, index=2), now=T0 + timedelta(seconds=11))
    assert second is not first
    assert second is not None
    assert second.step_index == 2


def test_without_spec_analysis_every_step_is_inconclusive_and_says_why() -> None:
    result = PrometheusAnalysis(ScriptedMetrics()).verdict(
        policy=seed_policy(), status=_status(), now=T0 + timedelta(seconds=31)
    )
    assert result is not None
    assert result.verdict == Verdict.INCONCLUSIVE
    assert "no analysis configured" in result.reason


class GroupedMetrics(ScriptedMetrics):
    """Also answers grouped queries, from the same per-workload counts; records them apart."""

    def __init__(self) -> None:
        super().__init__()
        self.counts["shop-v2"] = (3, 300)
        self.vector_queries: list[tuple[str, datetime]] = []
        self.interval_queries: list[str] = []

    def query_vector(
        self, *, query: str, at: datetime, labels: tuple[str, ...], connection: CanaryPolicy | None = None
    ) -> VectorOutcome:
        if "count_over_time" in query:  # the scrape interval (tests/test_scrape_windows.py): unknown here
            self.interval_queries.append(query)
            return VectorOutcome(query=query)
        self.vector_queries.append((query, at))
        # Both counters in one query, told apart by the part label (GroupedQueries.combined).
        assert labels == (PART_LABEL, "destination_workload", "destination_workload_namespace")
        assert f'"{PART_LABEL}", "errors"' in query
        assert 'response_flags!="-"' in query
        assert f'"{PART_LABEL}", "total"' in query
        namespace = connection.metadata.namespace if connection is not None else ""
        values: dict[tuple[str, ...], float] = {}
        for workload, (failed, total) in self.counts.items():
            for part, value in (("errors", failed), ("total", total)):
                if value is not None:
                    values[(part, workload, namespace)] = float(value)
        return VectorOutcome(query=query, values=values)


def _named(name: str, canary: str) -> CanaryPolicy:
    doc = _policy().model_dump(mode="json", exclude_none=True)
    doc["metadata"]["name"] = name
    doc["spec"]["analysis"]["selector"]["canaryWorkload"] = canary
    return CanaryPolicy.model_validate(doc)


def test_rollouts_checking_the_same_template_and_window_share_one_grouped_query() -> None:
    metrics = GroupedMetrics()
    analysis = PrometheusAnalysis(metrics, group_seconds=1.0)
    now = T0 + timedelta(seconds=31)
    first = analysis.verdict(policy=_named("a", "tcp-echo-v2"), status=_status(), now=now)
    second = analysis.verdict(policy=_named("b", "shop-v2"), status=_status(), now=now + timedelta(seconds=0.5))
    assert first is not None
    assert second is not None
    assert metrics.queries == [], "no rollout queried alone"
    assert len(metrics.vector_queries) == 1, "one grouped query (both counters) for both rollouts"
    assert first.checks[0].canary_connections == 500
    assert first.checks[0].stable_connections == 2000
    assert second.checks[0].canary_errors == 3
    assert second.checks[0].canary_connections == 300
    shown = second.checks[0].queries
    assert isinstance(shown, list)
    assert 'destination_workload="shop-v2"' in shown[0], "status shows the rollout's own query"
    # Past twice the reuse time, or for a step that started inside the grouped window: a fresh grouped query.
    analysis.verdict(policy=_named("c", "tcp-echo-v2"), status=_status(), now=now + timedelta(seconds=2.1))
    assert len(metrics.vector_queries) == 2
    young = RolloutStatus(run_id="r-2", step_index=1, weight=20, step_started_at=T0 + timedelta(seconds=5))
    analysis.verdict(policy=_named("d", "tcp-echo-v2"), status=young, now=now + timedelta(seconds=2.2))
    assert len(metrics.vector_queries) == 3


def test_past_its_fresh_time_an_answer_serves_while_one_refresh_is_fetched_in_the_background() -> None:
    # 10,000 rollouts share one grouped answer: none of them may wait while it is refreshed (issue 18).
    metrics = GroupedMetrics()
    jobs: list[Callable[[], None]] = []
    analysis = PrometheusAnalysis(metrics, group_seconds=1.0, in_background=jobs.append)
    now = T0 + timedelta(seconds=31)
    analysis.verdict(policy=_named("a", "tcp-echo-v2"), status=_status(), now=now)
    assert len(metrics.vector_queries) == 1
    metrics.counts["shop-v2"] = (7, 700)  # what the next answer will say
    stale = analysis.verdict(policy=_named("b", "shop-v2"), status=_status(), now=now + timedelta(seconds=1.5))
    assert stale is not None
    assert stale.checks[0].canary_connections == 300, "served the last answer, without waiting"
    assert len(metrics.vector_queries) == 1, "no pass waited for Prometheus"
    assert len(jobs) == 1, "its refresh is left to the background"
    analysis.verdict(policy=_named("c", "shop-v2"), status=_status(), now=now + timedelta(seconds=1.7))
    assert len(jobs) == 1, "one refresh at a time"
    jobs.pop()()
    assert [at for _, at in metrics.vector_queries[1:]] == [now + timedelta(seconds=1.5)]
    fresh = analysis.verdict(policy=_named("d", "shop-v2"), status=_status(), now=now + timedelta(seconds=1.8))
    assert fresh is not None
    assert fresh.checks[0].canary_connections == 700
    assert len(metrics.vector_queries) == 2
    assert jobs == []


class LoadedGroupedMetrics(GroupedMetrics):
    """Prometheus under load: grouped answers wait for ``gate`` while ``slow`` is set, and time out while
    ``failing`` is set (the scrape-interval query is never affected)."""

    def __init__(self) -> None:
        super().__init__()
        self.slow = False
        self.failing = False
        self.gate = threading.Event()
        self.asked = threading.Semaphore(0)

    def query_vector(
        self, *, query: str, at: datetime, labels: tuple[str, ...], connection: CanaryPolicy | None = None
    ) -> VectorOutcome:
        if "count_over_time" not in query:
            if self.slow:
                self.asked.release()
                assert self.gate.wait(10)
            if self.failing:
                self.vector_queries.append((query, at))
                return VectorOutcome(query=query, error="query timed out after 10s")
        return super().query_vector(query=query, at=at, labels=labels, connection=connection)


def test_a_slow_prometheus_gets_one_grouped_fetch_per_serving_time_not_one_per_pass() -> None:
    metrics = LoadedGroupedMetrics()
    jobs: list[Callable[[], None]] = []
    analysis = PrometheusAnalysis(metrics, group_seconds=1.0, in_background=jobs.append)
    now = T0 + timedelta(seconds=31)
    analysis.verdict(policy=_named("a", "tcp-echo-v2"), status=_status(), now=now)
    analysis.verdict(policy=_named("b", "shop-v2"), status=_status(), now=now + timedelta(seconds=1.5))
    assert len(jobs) == 1, "a refresh is under way (never finishing here)"
    # Past twice the fresh time: the answer is too old, the refresh under way too. One pass fetches anew;
    # the passes after it wait for that fetch instead of asking Prometheus again.
    metrics.slow = True
    later = now + timedelta(seconds=4)
    results: dict[str, Any] = {}

    def look(name: str, at: datetime) -> None:
        results[name] = analysis.verdict(policy=_named(name, "shop-v2"), status=_status(), now=at)

    first = threading.Thread(target=look, args=("c", later))
    first.start()
    assert metrics.asked.acquire(timeout=5), "the first pass asked"
    others = [threading.Thread(target=look, args=(name, later + timedelta(seconds=0.2))) for name in ("d", "e", "f")]
    for thread in others:
        thread.start()
    time.sleep(0.2)
    metrics.gate.set()
    for thread in (first, *others):
        thread.join(10)
    assert [at for _, at in metrics.vector_queries[1:]] == [later], "one grouped fetch for the four passes"
    assert all(results[name] is not None for name in "cdef")
    jobs.pop()()  # the old refresh ends at last: it never replaces the newer answer
    analysis.verdict(policy=_named("g", "shop-v2"), status=_status(), now=later + timedelta(seconds=0.5))
    assert len(metrics.vector_queries) == 3


def test_a_failed_refresh_never_replaces_a_good_answer_and_the_next_waits_a_fresh_time() -> None:
    # One failed grouped query must not make thousands of looks inconclusive while a good answer still serves.
    metrics = LoadedGroupedMetrics()
    jobs: list[Callable[[], None]] = []
    analysis = PrometheusAnalysis(metrics, group_seconds=1.0, in_background=jobs.append)
    now = T0 + timedelta(seconds=31)
    analysis.verdict(policy=_named("a", "tcp-echo-v2"), status=_status(), now=now)
    metrics.failing = True
    analysis.verdict(policy=_named("b", "shop-v2"), status=_status(), now=now + timedelta(seconds=1.2))
    jobs.pop()()  # the refresh fails
    assert len(metrics.vector_queries) == 2
    good = analysis.verdict(policy=_named("c", "shop-v2"), status=_status(), now=now + timedelta(seconds=1.5))
    assert good is not None
    assert good.verdict == Verdict.PASS, good.reason
    assert good.checks[0].canary_connections == 300
    assert jobs == [], "no new refresh within a fresh time of the failure"
    metrics.failing = False
    analysis.verdict(policy=_named("d", "shop-v2"), status=_status(), now=now + timedelta(seconds=1.9))
    assert jobs == [], "still within a fresh time of the failure"
    analysis.verdict(policy=_named("e", "shop-v2"), status=_status(), now=now + timedelta(seconds=2.3))
    # Past twice the fresh time the good answer no longer serves: a fetch now, which succeeds.
    assert len(metrics.vector_queries) == 3
    assert metrics.vector_queries[-1][1] == now + timedelta(seconds=2.3)


def test_a_rollouts_next_look_never_judges_the_grouped_answer_its_last_look_used() -> None:
    # group_seconds 60 over a 30 s window: an answer is fresh for 15 s and serves for 30 s, one interval.
    metrics = GroupedMetrics()
    jobs: list[Callable[[], None]] = []
    analysis = PrometheusAnalysis(metrics, group_seconds=60.0, in_background=jobs.append)
    policy = _named("a", "tcp-echo-v2")
    now = T0 + timedelta(seconds=31)
    first = analysis.verdict(policy=policy, status=_status(), now=now)
    # Another rollout could still use that answer 30 s on; this one's next look needs newer counts.
    later = now + timedelta(seconds=30)
    second = analysis.verdict(policy=policy, status=_status(), now=later)
    assert first is not None
    assert second is not None
    assert second is not first
    assert [at for _, at in metrics.vector_queries] == [now, later]
    assert jobs == []
    other = analysis.verdict(policy=_named("b", "shop-v2"), status=_status(), now=later + timedelta(seconds=1))
    assert other is not None
    assert len(metrics.vector_queries) == 2, "the newer answer serves the other rollout"


def test_a_pass_that_began_just_before_a_grouped_answer_uses_it_and_never_replaces_it() -> None:
    # Passes run in parallel: a worker whose pass began a moment earlier asks after another fetched.
    metrics = GroupedMetrics()
    analysis = PrometheusAnalysis(metrics, group_seconds=1.0)
    now = T0 + timedelta(seconds=31)
    analysis.verdict(policy=_named("a", "tcp-echo-v2"), status=_status(), now=now)
    earlier = analysis.verdict(policy=_named("b", "shop-v2"), status=_status(), now=now - timedelta(seconds=0.3))
    assert earlier is not None
    assert earlier.checks[0].canary_connections == 300
    assert len(metrics.vector_queries) == 1, "the earlier pass reused the answer"
    # Too far before it: that pass fetches its own answer, and the newer one stays for the others.
    analysis.verdict(policy=_named("c", "shop-v2"), status=_status(), now=now - timedelta(seconds=1.5))
    assert len(metrics.vector_queries) == 2
    analysis.verdict(policy=_named("d", "tcp-echo-v2"), status=_status(), now=now + timedelta(seconds=0.9))
    assert len(metrics.vector_queries) == 2, "the newer answer was kept"
    before = now - timedelta(seconds=1.5)
    assert [at for _, at in metrics.vector_queries] == [now, before]


def test_without_grouping_every_rollout_queries_alone() -> None:
    metrics = GroupedMetrics()
    PrometheusAnalysis(metrics).verdict(
        policy=_named("a", "tcp-echo-v2"), status=_status(), now=T0 + timedelta(seconds=31)
    )
    assert metrics.vector_queries == []
    assert len(metrics.queries) == 4
