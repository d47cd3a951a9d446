"""The analysis at real scrape intervals (15 s and 30 s), on history written with ``promtool``.

A mesh shaped like a real one: two ingress-gateway pods (the client side, ``reporter="source"``) scraped at
different offsets, the workloads' own pods reporting the server side, counters in the millions, and a
neighbour namespace whose same-named ``tcp-echo-v2`` refuses half its connections. Every gateway pod opens
10 connections a second, split by the written weight exactly (20 %: 2 to the canary, 8 to stable), so a
count that mixes in another weight's connections shows as a share other than the weight.

The weight changes 3 s before the step's clock starts (the data plane confirms it after the fact); the
analysis runs as the daemon calls it, every 5 s from the step start, with a fixed ``now``.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from controller.adapters.kubernetes.secrets import SecretReader
from controller.adapters.prometheus import PrometheusMetricsSource
from controller.core.measurement import QueryOutcome, VectorOutcome
from controller.core.policy import CanaryPolicy
from controller.core.promql import ISTIO_OPENED
from controller.core.status import AnalysisResult, RolloutStatus, Verdict
from controller.service.prometheus_analysis import PrometheusAnalysis
from tests.prom.conftest import Binaries
from tests.prom.servers import Point, PrometheusServer, create_blocks, history_start, prometheus_config
from tests.test_rollout import seed_policy

NS = "shop"
NEIGHBOUR = "neighbour"
BROKEN = "broken"  # the same gateways, a canary that refuses every connection from BROKEN_AT on
THIN = "thin"  # the same gateways, a canary that gets one connection every 20 s from each
GATEWAYS = ("istio-ingressgateway-7d9f-abcde", "istio-ingressgateway-7d9f-fghij")
PER_SECOND = 10  # connections each gateway pod opens every second
HISTORY = 2100  # seconds of history
# Weight changes (seconds after the start of history); each step's clock starts CONFIRMED later.
WEIGHTS = ((0, 0), (897, 20), (1257, 50), (1617, 100))
CONFIRMED = 3.4
RESTART_AT = 1350  # gateway pod 0 restarts (its counters start again from 0) during the 50 % step
BROKEN_AT = 1300  # during the 50 % step
TICK = 5.0
STEP = 180.0
INTERVAL = 10.0


def weight_at(second: float) -> int:
    """The weight the data plane applies at ``second`` (after the start of history)."""
    return [w for at, w in WEIGHTS if at <= second][-1]


def step_start(weight: int) -> float:
    """When the step of ``weight`` started: the weight confirmed live."""
    return next(at for at, w in WEIGHTS if w == weight) + CONFIRMED


def split(second: int) -> tuple[int, int]:
    """(canary, stable) connections one gateway pod opens in ``second``."""
    canary = PER_SECOND * weight_at(second) // 100
    return canary, PER_SECOND - canary


def opened(side: str, start: float, end: float) -> int:
    """Connections all gateway pods opened to one side of ``shop`` in (start, end] (seconds of history)."""
    index = 0 if side == "canary" else 1
    seconds = range(max(0, int(start) + 1), int(end) + 1)
    return len(GATEWAYS) * sum(split(second)[index] for second in seconds)


def source_labels(pod: str, namespace: str, workload: str, flags: str = "-") -> dict[str, str]:
    app, version = workload.rsplit("-", 1)
    failed = flags != "-"
    return {
        "job": "gateways",
        "instance": f"{pod}:15090",
        "pod": pod,
        "reporter": "source",
        "source_workload": "istio-ingressgateway",
        "source_workload_namespace": "istio-system",
        "destination_workload": workload,
        "destination_workload_namespace": namespace,
        "destination_service": f"{app}.{namespace}.svc.cluster.local",
        "destination_version": "unknown" if failed else version,
        "request_protocol": "tcp",
        "response_flags": flags,
    }


def history(scrape: int) -> list[Point]:
    """The whole history at one scrape interval: gateway pods at offsets 3 s and 3 s + 40 % of an interval."""
    phases = (3, 3 + (2 * scrape) // 5)
    points: list[Point] = []
    base = BASE
    for index, pod in enumerate(GATEWAYS):
        values: dict[tuple[str, str, str], float] = {
            (NS, "tcp-echo-v1", "-"): 4_123_456.0 + 1_000_000 * index,
            (NEIGHBOUR, "tcp-echo-v1", "-"): 2_345_678.0 + index,
            (NEIGHBOUR, "tcp-echo-v2", "-"): 1_234_567.0 + index,
            (NEIGHBOUR, "tcp-echo-v2", "UF,URX"): 1_111_111.0 + index,
            (BROKEN, "tcp-echo-v1", "-"): 3_000_000.0 + index,
            (THIN, "tcp-echo-v1", "-"): 5_000_000.0 + index,
        }
        born: set[tuple[str, str, str]] = set(values)
        scrapes = set(range(phases[index], HISTORY, scrape))
        for second in range(HISTORY):
            if index == 0 and second == RESTART_AT:
                values = dict.fromkeys(values, 0.0)  # a container restart: same labels, counters from 0
            canary, stable = split(second)
            increments = {
                (NS, "tcp-echo-v2", "-"): canary,
                (NS, "tcp-echo-v1", "-"): stable,
                (NEIGHBOUR, "tcp-echo-v2", "-"): 3,
                (NEIGHBOUR, "tcp-echo-v2", "UF,URX"): 3,
                (NEIGHBOUR, "tcp-echo-v1", "-"): 4,
                (BROKEN, "tcp-echo-v2", "UF,URX" if second >= BROKEN_AT else "-"): canary,
                (BROKEN, "tcp-echo-v1", "-"): stable,
                (THIN, "tcp-echo-v2", "-"): 1 if canary and second % 20 == 0 else 0,
                (THIN, "tcp-echo-v1", "-"): PER_SECOND,
            }
            for key, amount in increments.items():
                if amount:
                    values[key] = values.get(key, 0.0) + amount
                    born.add(key)
            if second in scrapes:
                for key in sorted(born):
                    namespace, workload, flags = key
                    labels = source_labels(pod, namespace, workload, flags)
                    points.append(Point(ISTIO_OPENED, labels, base + second, values[key]))
    # The server side, from the workloads' own pods (not counted: the built-ins read the client side).
    for workload, side in (("tcp-echo-v2", "canary"), ("tcp-echo-v1", "stable")):
        labels = {**source_labels(f"{workload}-5c8d-k2x9q", NS, workload), "reporter": "destination"}
        labels["job"], labels["instance"] = "workloads", f"{workload}-5c8d-k2x9q:15090"
        for second in range(7, HISTORY, scrape):
            points.append(Point(ISTIO_OPENED, labels, base + second, 10_000_000 + opened(side, 0, second)))
    return points


BASE = history_start(hours_back=2)


@dataclass(frozen=True)
class History:
    scrape: int
    metrics: PrometheusMetricsSource


@pytest.fixture(scope="module", params=[15, 30], ids=["scrape-15s", "scrape-30s"])
def mesh(
    request: pytest.FixtureRequest, binaries: Binaries, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[History]:
    """One Prometheus per scrape interval, serving the whole history."""
    scrape = int(request.param)
    workdir = tmp_path_factory.mktemp(f"scrape-{scrape}")
    data_dir = create_blocks(binaries.promtool, history(scrape), workdir)
    server = PrometheusServer(
        binary=binaries.prometheus, workdir=workdir, config=prometheus_config(), data_dir=data_dir, retention="100y"
    )
    server.start()
    metrics = PrometheusMetricsSource(default_url=server.url, secrets=SecretReader(environ={}))
    try:
        yield History(scrape=scrape, metrics=metrics)
    finally:
        metrics.close()
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def policy(namespace: str = NS, *, compare: bool = True, interval: float = INTERVAL) -> CanaryPolicy:
    """Error ratios with ``onNoData: fail``, compared with stable (``countTest``) unless ``compare`` is False."""
    check: dict[str, Any] = {"countTest": {}} if compare else {}
    doc = seed_policy(stepDuration=f"{STEP:g}s").model_dump(mode="json")
    doc["metadata"] = {"name": "tcp-echo", "namespace": namespace}
    doc["spec"]["analysis"] = {
        "interval": f"{interval:g}s",
        "selector": {"canaryWorkload": "tcp-echo-v2", "stableWorkload": "tcp-echo-v1", "namespace": namespace},
        "metrics": [{"name": "errors", "template": "istio-tcp-connect-error-ratio", "onNoData": "fail", **check}],
    }
    return CanaryPolicy.model_validate(doc)


def at(second: float) -> datetime:
    return datetime.fromtimestamp(BASE + second, UTC)


@dataclass(frozen=True)
class Look:
    second: float  # when, in seconds of history
    result: AnalysisResult


def looks(
    mesh: History,
    weight: int,
    *,
    start: float | None = None,
    until: float,
    namespace: str = NS,
    run: str = "r",
    compare: bool = True,
    interval: float = INTERVAL,
) -> list[Look]:
    """Every verdict the daemon would see for a step of ``weight`` started at ``start`` (default: the
    weight's real step start), one pass every 5 s up to ``until`` seconds after the step started; an
    evaluation reused by later passes is listed once."""
    began = step_start(weight) if start is None else start
    status = RolloutStatus(
        run_id=f"{run}-{weight}-{began}",
        step_index=[w for _, w in WEIGHTS].index(weight),
        weight=weight,
        step_started_at=at(began),
    )
    analysis = PrometheusAnalysis(mesh.metrics)
    checked = policy(namespace, compare=compare, interval=interval)
    seen: list[Look] = []
    for tick in itertools.count(1):
        second = began + tick * TICK
        if second > began + until:
            break
        result = analysis.verdict(policy=checked, status=status, now=at(second))
        assert result is not None
        if result.verdict == Verdict.NOT_YET or not seen or seen[-1].result is not result:
            seen.append(Look(second, result))
    return seen


def counts(result: AnalysisResult) -> tuple[float, float, float]:
    check = result.checks[0]
    errors, connections, stable = check.canary_errors, check.canary_connections, check.stable_connections
    assert errors is not None
    assert connections is not None
    assert stable is not None
    return errors, connections, stable


# ------------------------------------------------------------------------------------------------ the tests


@pytest.mark.parametrize("offset", [k * 2.3 for k in range(13)])
def test_the_first_check_of_a_step_waits_for_two_scrapes_and_never_reads_no_data(mesh: History, offset: float) -> None:
    """13 step starts spread over a scrape interval and more: with onNoData fail, a healthy canary is never
    failed; before two scrape intervals the analysis says "not yet", then counts both sides."""
    start = step_start(20) + 40 + offset
    seen = looks(mesh, 20, start=start, until=2 * mesh.scrape + 2 * TICK)
    waiting = [look for look in seen if look.result.verdict == Verdict.NOT_YET]
    evaluated = [look for look in seen if look.result.verdict != Verdict.NOT_YET]
    assert waiting, "a look before two scrapes would have been evaluated"
    assert all(look.second - start < 2 * mesh.scrape for look in waiting)
    assert all(f"every {mesh.scrape} s, learned from the samples" in look.result.reason for look in waiting)
    assert evaluated, [look.result.reason for look in seen]
    first = evaluated[0]
    assert first.second - start < 2 * mesh.scrape + TICK, "the first check runs at the first pass after two scrapes"
    for look in evaluated:
        assert look.result.verdict != Verdict.FAIL, look.result.reason
        assert "no data" not in look.result.reason
        errors, canary, stable = counts(look.result)
        assert errors == 0
        assert canary > 0
        assert canary / (canary + stable) == 0.2, "only the 20 % weight's connections"


@pytest.mark.parametrize(("weight", "before"), [(20, 0), (50, 20), (100, 50)])
def test_a_step_counts_nothing_of_the_step_before(mesh: History, weight: int, before: int) -> None:
    """Every look of the step counts only connections opened after the step started, at its own weight."""
    began = step_start(weight)
    seen = [look for look in looks(mesh, weight, until=STEP + TICK) if look.result.verdict != Verdict.NOT_YET]
    assert len(seen) >= 10
    for look in seen:
        assert look.result.verdict != Verdict.FAIL, look.result.reason
        errors, canary, stable = counts(look.result)
        assert errors == 0, "a neighbour's refused connections were counted"
        assert canary <= opened("canary", began, look.second), "counted connections from before the step"
        if weight < 100:
            assert stable <= opened("stable", began, look.second)
            assert canary / (canary + stable) == weight / 100, f"a share of {before} % mixed in"
        if not (began < RESTART_AT <= look.second):
            window = max(INTERVAL, 2 * mesh.scrape) if look.second < began + STEP else look.second - began
            window = min(window, look.second - began)
            inner = opened("canary", look.second - window + mesh.scrape, look.second - mesh.scrape)
            assert canary >= inner, "lost connections between two samples inside the window"
    gate = seen[-1]
    assert gate.second >= began + STEP
    assert gate.result.verdict == Verdict.PASS, gate.result.reason


def test_a_gateway_restart_mid_step_is_never_counted_negative_nor_fails_the_canary(mesh: History) -> None:
    began = step_start(50)
    seen = looks(mesh, 50, until=STEP + TICK)
    around = [look for look in seen if RESTART_AT - 10 <= look.second <= RESTART_AT + 3 * mesh.scrape + INTERVAL]
    assert around
    for look in around:
        assert look.result.verdict in {Verdict.PASS, Verdict.INCONCLUSIVE, Verdict.NOT_YET}, look.result.reason
        if look.result.verdict == Verdict.NOT_YET:
            continue
        _, canary, stable = counts(look.result)
        assert 0 < canary <= opened("canary", began, look.second)
        assert canary / (canary + stable) == 0.5


def test_the_neighbour_namespace_with_the_same_workload_names_is_never_counted(mesh: History) -> None:
    seen = [look for look in looks(mesh, 20, until=STEP + TICK) if look.result.verdict != Verdict.NOT_YET]
    assert all(counts(look.result)[0] == 0 for look in seen), "the neighbour's refused connections were counted"
    assert seen[-1].result.verdict == Verdict.PASS


# The detection tests check every 40 s: an in-step look then holds 2/9 of the step's information, and the
# error budget it may spend is large enough for a gross failure to fail it at once (judgement.py).
DETECTING = 40.0


def test_a_canary_that_starts_refusing_mid_step_fails_within_a_scrape_and_an_interval(mesh: History) -> None:
    seen = looks(mesh, 50, until=STEP, namespace=BROKEN, interval=DETECTING)
    failed = next(look for look in seen if look.result.verdict == Verdict.FAIL)
    assert all(look.result.verdict != Verdict.FAIL for look in seen if look.second < BROKEN_AT)
    delay = failed.second - BROKEN_AT
    # The first refused connections show at the gateways' next scrape (within one interval), and the next
    # check (every INTERVAL, at a 5 s pass) counts them.
    assert 0 < delay <= mesh.scrape + DETECTING + TICK, (delay, failed.result.reason)
    print(
        f"scrape {mesh.scrape} s: refusing from {BROKEN_AT - step_start(50):.1f} s into the step, "
        f"failed {delay:.1f} s later"
    )


def test_a_canary_refusing_from_the_step_start_fails_at_the_first_check(mesh: History) -> None:
    """The minimum detection time: a step's first check runs two scrape intervals after it started."""
    start = BROKEN_AT + 1.7
    seen = looks(mesh, 50, start=start, until=2 * mesh.scrape + 3 * TICK, namespace=BROKEN, run="b", interval=DETECTING)
    first = next(look for look in seen if look.result.verdict != Verdict.NOT_YET)
    assert first.result.verdict == Verdict.FAIL, first.result.reason
    assert first.second - start < 2 * mesh.scrape + TICK
    print(f"scrape {mesh.scrape} s: refusing from the step start, failed {first.second - start:.1f} s into it")


def test_a_weight_0_step_observes_the_stable_baseline_and_with_no_series_at_all_does_not_pass(mesh: History) -> None:
    seen = [look for look in looks(mesh, 0, start=300.0, until=STEP + TICK) if look.result.verdict != Verdict.NOT_YET]
    assert seen[-1].result.verdict == Verdict.PASS, seen[-1].result.reason
    assert str(seen[-1].result.checks[0].reason).startswith("weight 0: stable baseline observed (0 errors in ")
    for compare in (True, False):
        nothing = [
            look
            for look in looks(mesh, 0, start=300.0, until=STEP + TICK, namespace="no-such-namespace", compare=compare)
            if look.result.verdict != Verdict.NOT_YET
        ]
        assert nothing
        assert all(look.result.verdict == Verdict.FAIL for look in nothing), nothing[-1].result.reason  # onNoData
        assert "no data" in str(nothing[-1].result.checks[0].reason)


class Recording:
    """The adapter, recording which queries went alone and which grouped."""

    def __init__(self, metrics: PrometheusMetricsSource) -> None:
        self.metrics = metrics
        self.alone: list[str] = []
        self.grouped: list[str] = []

    def query(self, *, query: str, at: datetime, connection: CanaryPolicy | None = None) -> QueryOutcome:
        self.alone.append(query)
        return self.metrics.query(query=query, at=at, connection=connection)

    def query_vector(
        self, *, query: str, at: datetime, labels: tuple[str, ...], connection: CanaryPolicy | None = None
    ) -> VectorOutcome:
        self.grouped.append(query)
        return self.metrics.query_vector(query=query, at=at, labels=labels, connection=connection)


def test_grouped_queries_shared_by_rollouts_count_exactly_what_each_rollout_counts_alone(mesh: History) -> None:
    """The grouped path (``CANARY_PROMETHEUS_GROUP_SECONDS``) over the same windows: the same counts."""
    began = step_start(50)
    status = RolloutStatus(run_id="g", step_index=2, weight=50, step_started_at=at(began))
    recorded = Recording(mesh.metrics)
    alone, grouped = PrometheusAnalysis(mesh.metrics), PrometheusAnalysis(recorded, group_seconds=5)
    for second in (began + 2 * mesh.scrape + 1, began + 97.5, began + STEP + 1):
        final = second >= began + STEP
        one = alone.evaluate(policy(), status, now=at(second), final=final)
        shared = grouped.evaluate(policy(), status, now=at(second), final=final)
        assert counts(one) == counts(shared), second - began
        assert counts(one)[1] > 0
    assert recorded.alone == [], "every count came from the grouped queries"
    assert len(recorded.grouped) == 1 + 3, "the scrape interval once, then one query per look (errors and totals)"


def test_a_canary_with_too_few_connections_never_passes_a_step(mesh: History) -> None:
    """About 18 canary connections in a 3-minute step, below minConnections (100): held, never passed."""
    seen = [
        look for look in looks(mesh, 20, until=STEP + TICK, namespace=THIN) if look.result.verdict != Verdict.NOT_YET
    ]
    assert seen
    assert all(look.result.verdict == Verdict.INCONCLUSIVE for look in seen), [look.result.reason for look in seen]
    gate = seen[-1].result.checks[0]
    assert gate.canary_connections is not None
    assert 0 < gate.canary_connections < 100
    assert "fewer than minConnections 100" in str(gate.reason)


@pytest.mark.parametrize("scrape", [1, 15, 30])
def test_the_scrape_interval_of_a_workload_deployed_seconds_ago_is_known_from_its_second_scrape(
    replay: Any, scrape: int
) -> None:
    """Counters scraped twice (a new service, or a Prometheus that just started) have their interval learned,
    wherever the look falls before the third scrape; with one sample it is unknown, never guessed."""
    base = history_start(hours_back=1)
    pod = GATEWAYS[0]
    points = [
        Point(ISTIO_OPENED, source_labels(pod, "fresh", workload), base + index * scrape, 1.0 + index)
        for workload in ("tcp-echo-v1", "tcp-echo-v2")
        for index in range(2)
    ]
    server = replay(points)
    metrics = PrometheusMetricsSource(default_url=server.url, secrets=SecretReader(environ={}))
    try:
        fresh = policy("fresh")
        for after in (0.0, 0.4 * scrape, 0.95 * scrape):
            learned = PrometheusAnalysis(metrics).scrape_interval(
                fresh, datetime.fromtimestamp(base + scrape + after, UTC)
            )
            assert learned == (scrape, "learned from the samples"), after
        single = PrometheusAnalysis(metrics).scrape_interval(fresh, datetime.fromtimestamp(base + 0.95 * scrape, UTC))
        assert single == (0.0, "unknown")
    finally:
        metrics.close()
