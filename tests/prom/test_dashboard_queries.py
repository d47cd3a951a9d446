"""The Grafana dashboard's queries on a real Prometheus scraping the daemon's own ``/metrics`` endpoint.

Two replicas are scraped, as the chart runs them: the leader, and a standby whose per-policy gauges are stale
(another weight, step and phase). Every panel query must be valid PromQL for Prometheus (a parse error is an
HTTP 400), return series with finite values, and the per-policy panels must show the leader's values only.
Grafana's variables are replaced by concrete values first.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from controller.adapters.kubernetes.informer import InformerStats
from controller.core.status import Phase
from controller.runtime.http import HealthServer
from controller.runtime.metrics import ControllerMetrics
from tests.prom.conftest import Binaries
from tests.prom.servers import PrometheusServer, prometheus_config
from tests.test_dashboard import LABEL_VALUES, VARIABLE, analyse, load_dashboard, panel_targets

NAMESPACE = "istio-io-tcp-traffic-shifting"
POLICY = "tcp-echo"
JOB = "canary-controller"
PODS = ("canary-controller-0", "canary-controller-1")
GRAFANA_VALUES = {
    "namespace": NAMESPACE,
    "policy": POLICY,
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "5m",
}
TARGETS = [
    pytest.param(target["expr"], id=f"{panel['title']}-{target['refId']}")
    for panel, target in panel_targets(load_dashboard())
]


def substitute(text: str) -> str:
    """``text`` with Grafana's ``$var`` / ``${var}`` / ``[[var]]`` replaced by this test's values."""

    def value(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        return GRAFANA_VALUES[name]

    return VARIABLE.sub(value, text)


@dataclass(frozen=True)
class Scraped:
    """The Prometheus scraping both replicas."""

    prometheus: PrometheusServer
    leader: ControllerMetrics
    standby: ControllerMetrics


def record(metrics: ControllerMetrics, *, leader: bool, weight: float, step: int, phase: Phase) -> None:
    """Set every metric the way a pass and the alert and API paths would."""
    metrics.leader.set(1 if leader else 0)
    metrics.weight.labels(NAMESPACE, POLICY).set(weight)
    metrics.step.labels(NAMESPACE, POLICY).set(step)
    for each in Phase:
        metrics.phase.labels(NAMESPACE, POLICY, each.value).set(1 if each == phase else 0)
    metrics.verdicts.labels(metric="connect-failures", verdict="pass").inc()
    metrics.rollbacks.labels(reason="AnalysisFailed").inc()
    metrics.promotions.inc()
    metrics.pass_duration.observe(0.03)
    metrics.alert_outcome("slack", "sent")
    metrics.alert_outcome("webhook", "failed")
    metrics.api_error(409)
    metrics.policy_errors.labels("file").set(1)
    metrics.conflicting_writers.labels(NAMESPACE, POLICY).set(1)
    metrics.stalled.labels(NAMESPACE, POLICY, "AwaitingAnalysis").set(1)
    metrics.queue_depth.set(3)
    metrics.queue_seconds.labels("timer").observe(0.02)
    metrics.pass_lag.observe(0.05)
    metrics.resyncs.inc()
    metrics.observe_caches([WatchCache("virtualservices.networking.istio.io", objects=12, events=5, lists=1)])


class WatchCache:
    """A watch cache as ``ControllerMetrics.observe_caches`` reads one: its name, size and counts since start."""

    def __init__(self, name: str, *, objects: int, events: int, lists: int) -> None:
        self.name = name
        self.objects = objects
        self.stats = InformerStats(lists=lists, events={"MODIFIED": events, "BOOKMARK": 1})

    def __len__(self) -> int:
        return self.objects


@pytest.fixture(scope="module")
def scraped(binaries: Binaries, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    """Both replicas' ``/metrics`` scraped every second; counters have moved between two scrapes."""
    leader, standby = ControllerMetrics(), ControllerMetrics()
    record(leader, leader=True, weight=20, step=1, phase=Phase.PROGRESSING)
    record(standby, leader=False, weight=50, step=2, phase=Phase.PAUSED)
    servers = [
        HealthServer(metrics=metrics, heartbeat=lambda: None, checks={}, max_heartbeat_age=60.0)
        for metrics in (leader, standby)
    ]
    for server in servers:
        server.start()
    config = prometheus_config()
    config["scrape_configs"] = [
        {
            "job_name": JOB,
            "static_configs": [
                {"targets": [f"127.0.0.1:{server.port}"], "labels": {"pod": pod}}
                for server, pod in zip(servers, PODS, strict=True)
            ],
        }
    ]
    prometheus = PrometheusServer(
        binary=binaries.prometheus, workdir=tmp_path_factory.mktemp("dashboard-prometheus"), config=config
    )
    try:
        prometheus.start()
        prometheus.wait_for_targets()
        prometheus.wait_for_value(f'count(canary_leader{{job="{JOB}"}})', 2.0)
        # Move the leader's counters and histogram after that first scrape, so rates and quantiles have two
        # different samples to work on.
        leader.verdicts.labels(metric="connect-failures", verdict="fail").inc()
        leader.rollbacks.labels(reason="AnalysisFailed").inc()
        leader.promotions.inc()
        for seconds in (0.02, 0.2, 4.0):
            leader.pass_duration.observe(seconds)
        leader.alert_outcome("slack", "sent")
        leader.alert_outcome("webhook", "failed")
        leader.api_error(0)
        for seconds in (0.01, 0.3, 2.0):
            leader.queue_seconds.labels("timer").observe(seconds)
            leader.pass_lag.observe(seconds)
        leader.resyncs.inc()
        grown = WatchCache("virtualservices.networking.istio.io", objects=13, events=9, lists=2)
        leader.observe_caches([grown])
        prometheus.wait_for_value(f'canary_promotions_total{{pod="{PODS[0]}"}}', 2.0)
        yield Scraped(prometheus=prometheus, leader=leader, standby=standby)
    finally:
        prometheus.stop()
        for server in servers:
            server.stop()


def instant(scraped: Scraped, expr: str) -> list[dict[str, Any]]:
    """An instant query's series (Prometheus rejects invalid PromQL with HTTP 400, which fails here)."""
    return scraped.prometheus.series(substitute(expr))


@pytest.mark.parametrize("expr", TARGETS)
def test_panel_query_is_valid_promql_and_returns_finite_values(scraped: Scraped, expr: str) -> None:
    result = instant(scraped, expr)
    assert result, f"{substitute(expr)}: no series"
    for item in result:
        value = float(item["value"][1])
        assert math.isfinite(value), f"{substitute(expr)}: {item}"


def test_per_policy_panels_show_the_leaders_values_not_the_standbys(scraped: Scraped) -> None:
    expected = {"canary_weight": 20.0, "canary_step": 1.0}
    seen: set[str] = set()
    for _, target in panel_targets(load_dashboard()):
        metrics = analyse(target["expr"]).metrics
        for name, value in expected.items():
            if name in metrics:
                result = instant(scraped, target["expr"])
                assert [(item["metric"], float(item["value"][1])) for item in result] == [
                    ({"namespace": NAMESPACE, "policy": POLICY}, value)
                ], target["expr"]
                seen.add(name)
        if "canary_phase" in metrics:
            result = instant(scraped, target["expr"])
            assert [item["metric"] for item in result] == [
                {"namespace": NAMESPACE, "policy": POLICY, "phase": Phase.PROGRESSING.value}
            ], target["expr"]
            seen.add("canary_phase")
    assert seen == {"canary_weight", "canary_step", "canary_phase"}


def test_leader_panels_count_one_leader_and_name_each_pod(scraped: Scraped) -> None:
    leader_queries = [
        target["expr"]
        for _, target in panel_targets(load_dashboard())
        if analyse(target["expr"]).metrics == {"canary_leader"}
    ]
    assert leader_queries
    shapes: dict[str, list[tuple[str, float]]] = {}
    for expr in leader_queries:
        result = instant(scraped, expr)
        shapes[expr] = sorted((item["metric"].get("pod", ""), float(item["value"][1])) for item in result)
    assert [("", 1.0)] in shapes.values(), f"no panel counts the leaders: {shapes}"
    assert [(PODS[0], 1.0), (PODS[1], 0.0)] in shapes.values(), f"no panel shows each pod's role: {shapes}"


def test_template_variables_list_the_scraped_namespace_and_policy(scraped: Scraped) -> None:
    variables = {item["name"]: item for item in load_dashboard()["templating"]["list"] if item["type"] == "query"}
    expected = {"namespace": [NAMESPACE], "policy": [POLICY]}
    assert set(variables) == set(expected)
    for name, variable in variables.items():
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = LABEL_VALUES.match(query)
        assert match is not None, query
        values = scraped.prometheus.api(f"label/{match['label']}/values", **{"match[]": substitute(match["selector"])})
        assert values == expected[name], f"${name}: {query} -> {values}"
