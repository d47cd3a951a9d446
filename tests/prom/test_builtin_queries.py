"""The built-in count queries (``controller.core.promql``) on a real Prometheus.

Three kinds of data:

- the real Istio scrapes of the shared data (``metrics-01`` .. ``-04``), served unchanged: which series the
  built-ins select, and which they cannot;
- counters the tests drive, shaped as Istio's sidecars and Envoy expose them: the window counts exactly,
  new failure series included, and never reaches before the step;
- replayed history (``promtool``), for exact timestamps: the count against ``increase()``'s extrapolation.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import pytest

from controller.adapters.kubernetes.secrets import SecretReader
from controller.adapters.prometheus import PrometheusMetricsSource
from controller.core.promql import (
    ISTIO_OPENED,
    CountQueries,
    Side,
    Variables,
    counts_from_groups,
    envoy_counts,
    group_key,
    grouped_queries,
    istio_counts,
)
from tests.prom.servers import (
    SCRAPE_INTERVAL,
    DrivenExporter,
    Point,
    PrometheusServer,
    history_start,
    wait_until,
)

ISTIO_CLOSED = "istio_tcp_connections_closed_total"


def unique(prefix: str) -> str:
    """A label value no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def counts(
    metrics: PrometheusMetricsSource, queries: CountQueries, at: datetime, *, metric: str = ISTIO_OPENED
) -> tuple[float | None, float | None]:
    """(errors, total) as the adapter reads them; ``metric`` swaps the counter the selectors apply to."""
    errors = metrics.query(query=queries.errors.replace(ISTIO_OPENED, metric), at=at)
    total = metrics.query(query=queries.total.replace(ISTIO_OPENED, metric), at=at)
    assert errors.error is None, errors.error
    assert total.error is None, total.error
    return errors.value, total.value


def grouped(
    metrics: PrometheusMetricsSource, template: str, variables: Variables, side: Side, at: datetime
) -> tuple[float | None, float | None]:
    """(errors, total) of one side read from the grouped queries that every rollout shares."""
    queries = grouped_queries(
        template,
        variables.window_seconds,
        cluster_label=variables.cluster_label,
        scrape_interval_seconds=variables.scrape_interval_seconds,
    )
    key = group_key(template, variables, side)
    assert queries is not None
    assert key is not None
    # As the controller fetches them: every counter in one query, split by the part label; the real Prometheus
    # must give each part exactly what the part's own query gives.
    split = queries.split(metrics.query_vector(query=queries.combined, at=at, labels=queries.combined_labels))
    alone = {
        name: metrics.query_vector(query=query, at=at, labels=queries.labels) for name, query in queries.parts.items()
    }
    assert {name: dict(part.values) for name, part in split.items()} == {
        name: dict(part.values) for name, part in alone.items()
    }
    parts = {name: split[name].outcome_for(key, query=query) for name, query in queries.parts.items()}
    shown = envoy_counts(variables, side) if template.startswith("envoy") else istio_counts(variables, side)
    errors, total = counts_from_groups(template, parts, shown)
    assert errors.error is None, errors.error
    return errors.value, total.value


def now() -> datetime:
    """The current time, timezone-aware."""
    return datetime.now(UTC)


# ------------------------------------------------------------------------------------- the real Istio scrapes


def test_every_real_scrape_is_ingested_with_the_labels_a_real_scrape_adds(prometheus: PrometheusServer) -> None:
    """Each file is its own job: its series carry ``job``, ``instance`` and ``pod`` as in a cluster.

    The ztunnel scrape (``metrics-03``, istio/istio#50076) announces ``# TYPE istio_tcp_connections_opened
    counter`` but its samples are named ``istio_tcp_connections_opened_total``: Prometheus 2.42 stores the
    samples under the ``_total`` name (so the built-ins find them) and the metadata under the bare name.
    """
    found = {
        (item["metric"]["job"], item["metric"]["__name__"]): float(item["value"][1])
        for item in prometheus.series('{__name__=~"istio_tcp_connections_.*"}')
        if item["metric"]["pod"] == f"{item['metric']['job']}-pod" and item["metric"]["instance"]
    }
    assert found == {
        ("istio-scrape-01", ISTIO_OPENED): 1.0,
        ("istio-scrape-02", ISTIO_CLOSED): 125.0,
        ("istio-scrape-03", ISTIO_OPENED): 1.0,
        ("istio-scrape-04", ISTIO_CLOSED): 88.0,
    }
    # The ztunnel scrape's own metadata, read per target (the driven exporter declares the _total name).
    ztunnel = prometheus.api("targets/metadata", match_target='{job="istio-scrape-03"}')
    declared = {entry["metric"]: entry["type"] for entry in ztunnel}
    assert declared.get("istio_tcp_connections_opened") == "counter"
    assert "istio_tcp_connections_opened_total" not in declared


def test_a_ztunnel_reported_connection_is_not_a_client_side_record(
    prometheus: PrometheusServer, metrics: PrometheusMetricsSource
) -> None:
    """Ambient mode: the ztunnel scrape has ``reporter="destination"``, so the built-ins do not count it.

    ``metrics-03`` is the server node's ztunnel: ``reporter="destination"`` with a full destination label set
    (workload ``tcpserver`` in ``ambient``, ``destination_service`` the FQDN). The built-ins select
    ``reporter="source"`` on purpose (only the client sees a failed connect); the client node's ztunnel
    reports ``reporter="source"`` with the same label names (istio/ztunnel#404), so an ambient canary is
    measured from there. From this scrape alone the canary has no data (not zero), and the same selectors
    with ``reporter="destination"`` find exactly this one series.
    """
    variables = Variables(namespace="ambient", window_seconds=3600, step_start=0, canary_workload="tcpserver")
    queries = istio_counts(variables, "canary")
    assert counts(metrics, queries, now()) == (0.0, None)
    server_side = CountQueries(
        errors=queries.errors.replace('reporter="source"', 'reporter="destination"'),
        total=queries.total.replace('reporter="source"', 'reporter="destination"'),
    )
    # A series born inside the window counts whole: the one connection of the scrape.
    assert counts(metrics, server_side, now()) == (0.0, 1.0)


def test_uh_failures_are_attributed_to_the_canary_by_destination_service_only(
    metrics: PrometheusMetricsSource,
) -> None:
    """No healthy upstream (``UH``, istio/istio#52221): the client knows only the Service.

    On ``metrics-04`` every destination attribute is ``unknown`` (workload, workload namespace, app,
    version, principal, cluster), ``destination_canonical_revision`` is the default ``latest``, and only
    ``destination_service`` (the FQDN) and ``destination_service_name`` name where the connection went. So
    neither the workload nor the revision selects these failures; ``canary_service`` does, without a
    namespace matcher (the namespace is ``unknown`` too). The scrape holds the ``closed`` counter; the
    selectors are the same for every ``istio_tcp_*`` counter, so they are applied to it here.
    """
    service = "redis-sessman-master.example-test-dev.svc.cluster.local"
    by_workload = Variables(
        namespace="example-test-dev", window_seconds=3600, step_start=0, canary_workload="redis-sessman-master"
    )
    by_service = Variables(
        namespace="example-test-dev",
        window_seconds=3600,
        step_start=0,
        canary_workload="redis-sessman-master",
        canary_service=service,
    )
    other_service = Variables(
        namespace="example-test-dev",
        window_seconds=3600,
        step_start=0,
        canary_workload="redis-sessman-master",
        canary_service="redis-sessman-replica.example-test-dev.svc.cluster.local",
    )
    errors_by_workload, _ = counts(metrics, istio_counts(by_workload, "canary"), now(), metric=ISTIO_CLOSED)
    errors_by_service, _ = counts(metrics, istio_counts(by_service, "canary"), now(), metric=ISTIO_CLOSED)
    errors_elsewhere, _ = counts(metrics, istio_counts(other_service, "canary"), now(), metric=ISTIO_CLOSED)
    assert (errors_by_workload, errors_by_service, errors_elsewhere) == (0.0, 88.0, 0.0)
    assert counts(metrics, istio_counts(by_service, "canary"), now()) == (0.0, None)  # nothing on ``opened``


def test_a_canary_whose_every_connect_fails_uh_has_a_total(metrics: PrometheusMetricsSource) -> None:
    """All 88 connections failed with UH and none succeeded: the ratio should be 88 of 88, not no data.

    ``_sum_all(first_required=True)`` makes the workload-selected part of the total required; the UH part is
    ``or vector(0)``. With no workload series at all (the canary never accepted a connection), the total
    is empty however many UH failures there are. A total that is empty only when *every* part is empty
    (``sum(part_1 or part_2 ...)``, the parts have different label sets) would give 88.
    """
    variables = Variables(
        namespace="example-test-dev",
        window_seconds=3600,
        step_start=0,
        canary_workload="redis-sessman-master",
        canary_service="redis-sessman-master.example-test-dev.svc.cluster.local",
    )
    assert counts(metrics, istio_counts(variables, "canary"), now(), metric=ISTIO_CLOSED) == (88.0, 88.0)


def test_connections_without_metadata_exchange_carry_no_destination_workload(
    metrics: PrometheusMetricsSource,
) -> None:
    """``zookeeper-news`` (istio/istio#23991): plain-text TCP, so the peers never exchanged metadata.

    ``metrics-01`` is the client side (``reporter="source"``) of *successful* connections (``"-"``) to the
    headless Service ``zookeeper-news-headless``: ``destination_workload`` and its namespace are
    ``unknown``. ``metrics-02`` is the server side (``reporter="destination"``, closed counter) where the
    workload is known. The built-ins select neither: a canary reached this way has no data, and a
    ``canary_service`` only adds failed connects (``response_flags!="-"``), never these successes.
    """
    namespace = "2269-search-clusters"
    plain = Variables(namespace=namespace, window_seconds=3600, step_start=0, canary_workload="zookeeper-news")
    with_service = Variables(
        namespace=namespace,
        window_seconds=3600,
        step_start=0,
        canary_workload="zookeeper-news",
        canary_service=f"zookeeper-news-headless.{namespace}.svc.cluster.local",
    )
    assert counts(metrics, istio_counts(plain, "canary"), now()) == (0.0, None)
    assert counts(metrics, istio_counts(with_service, "canary"), now()) == (0.0, None)
    assert counts(metrics, istio_counts(plain, "canary"), now(), metric=ISTIO_CLOSED) == (0.0, None)


# ------------------------------------------------------------------------------------------ driven counters


class Mesh:
    """Istio sidecars as Prometheus sees them: every connection counted by the client (``reporter="source"``)
    and, when it reached the server, by the server (``reporter="destination"``), with the full label set.

    A failed connect never reaches the server; its client-side series has ``destination_version`` and
    ``destination_app`` ``unknown`` and is born at its first failure.
    """

    def __init__(self, exporter: DrivenExporter, prometheus: PrometheusServer) -> None:
        self.exporter = exporter
        self.prometheus = prometheus
        self.namespace = unique("ns")
        self.client = unique("client")
        self.values: dict[tuple[tuple[str, str], ...], float] = {}

    def service(self, workload: str) -> str:
        """The FQDN of a workload's Service (``tcp-echo-v2`` -> ``tcp-echo.<ns>.svc.cluster.local``)."""
        return f"{workload.rsplit('-', 1)[0]}.{self.namespace}.svc.cluster.local"

    def labels(self, workload: str, *, reporter: str, flags: str) -> dict[str, str]:
        """The label set Istio's telemetry gives one series (as in the shared scrapes)."""
        app, version = workload.rsplit("-", 1)
        failed = flags != "-"
        return {
            "reporter": reporter,
            "source_workload": self.client,
            "source_canonical_service": self.client,
            "source_canonical_revision": "latest",
            "source_workload_namespace": self.namespace,
            "source_principal": f"spiffe://cluster.local/ns/{self.namespace}/sa/default",
            "source_app": self.client,
            "source_version": "unknown",
            "source_cluster": "Kubernetes",
            "destination_workload": workload,
            "destination_workload_namespace": self.namespace,
            "destination_principal": "unknown" if failed else f"spiffe://cluster.local/ns/{self.namespace}/sa/default",
            "destination_app": "unknown" if failed else app,
            "destination_version": "unknown" if failed else version,
            "destination_service": self.service(workload),
            "destination_service_name": app,
            "destination_service_namespace": self.namespace,
            "destination_canonical_service": app,
            "destination_canonical_revision": version,
            "destination_cluster": "Kubernetes",
            "request_protocol": "tcp",
            "response_flags": flags,
            "connection_security_policy": "mutual_tls" if reporter == "destination" else "unknown",
        }

    def _set(self, labels: dict[str, str], value: float) -> None:
        self.values[tuple(labels.items())] = value
        self.exporter.set(ISTIO_OPENED, labels, value)

    def connect(self, workload: str, count: int, *, flags: str = "-") -> None:
        """``count`` more connections to ``workload`` (failed with ``flags`` unless ``-``)."""
        reporters = ["source"] if flags != "-" else ["source", "destination"]
        for reporter in reporters:
            labels = self.labels(workload, reporter=reporter, flags=flags)
            self._set(labels, self.values.get(tuple(labels.items()), 0.0) + count)

    def restart(self, workload: str, *, count: int) -> None:
        """The client's proxy restarted: its counters for ``workload`` start again, now at ``count``."""
        labels = self.labels(workload, reporter="source", flags="-")
        self._set(labels, float(count))

    def leave(self) -> None:
        """The client pod goes away: its series are no longer exposed (Prometheus marks them stale)."""
        for key in self.values:
            self.exporter.remove(ISTIO_OPENED, dict(key))
        self.values.clear()

    def settle(self) -> None:
        """Wait until Prometheus shows every value set so far (no series at all after ``leave``)."""
        self.prometheus.wait_for_value(
            f'sum({ISTIO_OPENED}{{source_workload="{self.client}"}})', sum(self.values.values()) or None
        )

    def variables(self, window_seconds: float, step_start: float) -> Variables:
        """Selector values for the canary ``tcp-echo-v2`` and the stable ``tcp-echo-v1``."""
        return Variables(
            namespace=self.namespace,
            window_seconds=window_seconds,
            step_start=step_start,
            canary_workload="tcp-echo-v2",
            stable_workload="tcp-echo-v1",
            scrape_interval_seconds=SCRAPE_INTERVAL,
        )


@pytest.fixture
def mesh(exporter: DrivenExporter, prometheus: PrometheusServer) -> Mesh:
    """A namespace of the driven mesh, for one test."""
    return Mesh(exporter, prometheus)


def step(exporter: DrivenExporter, before: Callable[[], None], during: Callable[[], None]) -> tuple[datetime, int]:
    """Run ``before``, start a step once Prometheus has it, run ``during``; return (now, window).

    ``before`` and ``during`` must each end by waiting for Prometheus to show their changes. The window is
    whole seconds, exactly from the step start to the returned evaluation time.
    """
    before()
    start = exporter.step_start()
    during()
    window = math.ceil(time.time() - start)
    return datetime.fromtimestamp(start + window, UTC), window


def test_a_healthy_canary_counts_zero_errors_of_exactly_its_connections(
    mesh: Mesh, exporter: DrivenExporter, metrics: PrometheusMetricsSource
) -> None:
    """25 connections to the canary and 100 to stable in the step; server-side records are not counted twice."""

    def before() -> None:
        mesh.connect("tcp-echo-v2", 7)
        mesh.connect("tcp-echo-v1", 40)
        mesh.settle()

    def during() -> None:
        mesh.connect("tcp-echo-v2", 25)
        mesh.connect("tcp-echo-v1", 100)
        mesh.settle()

    at, window = step(exporter, before, during)
    variables = mesh.variables(window, at.timestamp() - window)
    assert counts(metrics, istio_counts(variables, "canary"), at) == (0.0, 25.0)
    assert counts(metrics, istio_counts(variables, "stable"), at) == (0.0, 100.0)
    # The grouped queries many rollouts share give each rollout the same counts.
    assert grouped(metrics, "istio-tcp-connect-error-ratio", variables, "canary", at) == (0.0, 25.0)
    assert grouped(metrics, "istio-tcp-connect-error-ratio", variables, "stable", at) == (0.0, 100.0)


def test_a_failure_series_born_in_the_window_counts_from_its_first_increment(
    mesh: Mesh, exporter: DrivenExporter, prometheus: PrometheusServer, metrics: PrometheusMetricsSource
) -> None:
    """The canary's first refused connect creates ``response_flags="UF,URX"``: it counts 1, where
    ``increase()`` finds nothing to increase (its first sample is already 1)."""

    def before() -> None:
        mesh.connect("tcp-echo-v2", 10)
        mesh.settle()

    def during() -> None:
        mesh.connect("tcp-echo-v2", 20)
        mesh.connect("tcp-echo-v2", 1, flags="UF,URX")
        mesh.settle()
        failed = f'{ISTIO_OPENED}{{source_workload="{mesh.client}",response_flags="UF,URX"}}'
        wait_until(  # two samples, so that increase() has something to compare
            lambda: (prometheus.value(f"count_over_time({failed}[1m])") or 0) >= 2,
            timeout=10,
            message="a second sample of the failure series",
        )

    at, window = step(exporter, before, during)
    queries = istio_counts(mesh.variables(window, at.timestamp() - window), "canary")
    assert counts(metrics, queries, at) == (1.0, 21.0)
    variables = mesh.variables(window, at.timestamp() - window)
    assert grouped(metrics, "istio-tcp-connect-error-ratio", variables, "canary", at) == (1.0, 21.0)
    failed = f'{ISTIO_OPENED}{{reporter="source",destination_workload="tcp-echo-v2",response_flags!="-"}}'
    plain = metrics.query(query=f'sum(increase({failed[:-1]},source_workload="{mesh.client}"}}[{window}s]))', at=at)
    assert plain.value == 0.0


def test_a_counter_reset_is_never_counted_negative(
    mesh: Mesh, exporter: DrivenExporter, metrics: PrometheusMetricsSource
) -> None:
    """The client proxy restarts mid-step: its opened counter drops from 50 to 3 (3 new connections)."""

    def before() -> None:
        mesh.connect("tcp-echo-v2", 50)
        mesh.connect("tcp-echo-v2", 5, flags="UF,URX")
        mesh.settle()

    def during() -> None:
        mesh.restart("tcp-echo-v2", count=3)
        mesh.settle()

    at, window = step(exporter, before, during)
    assert counts(metrics, istio_counts(mesh.variables(window, at.timestamp() - window), "canary"), at) == (0.0, 3.0)


def test_increments_before_the_step_started_are_never_in_the_window(
    mesh: Mesh, exporter: DrivenExporter, metrics: PrometheusMetricsSource
) -> None:
    """Failures (refused, overflow) from before the step are not the canary's errors in this step."""

    def before() -> None:
        mesh.connect("tcp-echo-v2", 30)
        mesh.connect("tcp-echo-v2", 4, flags="UF,URX")
        mesh.connect("tcp-echo-v2", 2, flags="UO")
        mesh.settle()

    def during() -> None:
        mesh.connect("tcp-echo-v2", 10)
        mesh.settle()

    at, window = step(exporter, before, during)
    step_start = at.timestamp() - window
    assert counts(metrics, istio_counts(mesh.variables(window, step_start), "canary"), at) == (0.0, 10.0)
    # Contrast: a window reaching back before the series existed takes in everything, old failures too.
    assert counts(metrics, istio_counts(mesh.variables(window + 3600, step_start), "canary"), at) == (6.0, 46.0)


def test_a_client_that_goes_away_mid_step_keeps_its_connections_and_failures(
    mesh: Mesh, exporter: DrivenExporter, metrics: PrometheusMetricsSource
) -> None:
    """A client opens 3 connections and fails 2 connects to the canary, then its pod is deleted.

    ``window_count`` takes ``S`` at the evaluation time; once the client's series are stale they are absent
    there, so their increments in the window vanish (here the whole count becomes no data). Reading
    ``last_over_time(S[W])`` instead of ``S`` keeps the last value each series had in the window (checked
    by hand on this Prometheus: 5 connections, 2 errors).
    """

    def before() -> None:
        mesh.connect("tcp-echo-v2", 10)
        mesh.settle()

    def during() -> None:
        mesh.connect("tcp-echo-v2", 3)
        mesh.connect("tcp-echo-v2", 2, flags="UF,URX")
        mesh.settle()
        mesh.leave()
        mesh.settle()

    at, window = step(exporter, before, during)
    assert counts(metrics, istio_counts(mesh.variables(window, at.timestamp() - window), "canary"), at) == (2.0, 5.0)


def test_envoy_counts_connect_failures_overflow_and_no_healthy_host_of_one_cluster(
    exporter: DrivenExporter, prometheus: PrometheusServer, metrics: PrometheusMetricsSource
) -> None:
    """Envoy's per-cluster counters (no ``_total``): failures are connect_fail + overflow + none_healthy,
    attempts are cx_total + overflow + none_healthy (an overflowed or host-less attempt never opens a
    connection). Missing overflow/none_healthy series count 0; a cluster without cx_total has no data."""
    ns = unique("ns")
    canary = f"outbound|9000|v2|tcp-echo.{ns}.svc.cluster.local"
    stable = f"outbound|9000|v1|tcp-echo.{ns}.svc.cluster.local"
    unused = f"outbound|9000|v3|tcp-echo.{ns}.svc.cluster.local"

    def settle(expected: float) -> None:
        prometheus.wait_for_value(f'sum({{__name__=~"envoy_cluster_.*",envoy_cluster_name=~".*{ns}.*"}})', expected)

    def before() -> None:
        exporter.set("envoy_cluster_upstream_cx_total", {"envoy_cluster_name": canary}, 12)
        exporter.set("envoy_cluster_upstream_cx_connect_fail", {"envoy_cluster_name": canary}, 1)
        exporter.set("envoy_cluster_upstream_cx_total", {"envoy_cluster_name": stable}, 50)
        exporter.set("envoy_cluster_upstream_cx_connect_fail", {"envoy_cluster_name": stable}, 0)
        settle(63)

    def during() -> None:
        exporter.inc("envoy_cluster_upstream_cx_total", {"envoy_cluster_name": canary}, 30)
        exporter.inc("envoy_cluster_upstream_cx_connect_fail", {"envoy_cluster_name": canary}, 2)
        exporter.inc("envoy_cluster_upstream_cx_overflow", {"envoy_cluster_name": canary}, 4)  # born now
        exporter.inc("envoy_cluster_upstream_cx_total", {"envoy_cluster_name": stable}, 80)
        settle(63 + 30 + 2 + 4 + 80)

    at, window = step(exporter, before, during)
    variables = Variables(
        namespace=ns,
        window_seconds=window,
        step_start=at.timestamp() - window,
        canary_cluster=canary,
        stable_cluster=stable,
        scrape_interval_seconds=SCRAPE_INTERVAL,
    )
    assert counts(metrics, envoy_counts(variables, "canary"), at) == (6.0, 34.0)
    assert counts(metrics, envoy_counts(variables, "stable"), at) == (0.0, 80.0)
    nothing = Variables(namespace=ns, window_seconds=window, step_start=0, canary_cluster=unused)
    assert counts(metrics, envoy_counts(nothing, "canary"), at) == (0.0, None)
    template = "envoy-tcp-connect-error-ratio"
    assert grouped(metrics, template, variables, "canary", at) == (6.0, 34.0)
    assert grouped(metrics, template, variables, "stable", at) == (0.0, 80.0)
    assert grouped(metrics, template, nothing, "canary", at) == (0.0, None)


def test_envoy_counts_read_istio_proxies_cluster_name_label(
    exporter: DrivenExporter, prometheus: PrometheusServer, metrics: PrometheusMetricsSource
) -> None:
    """Istio's proxies tag the cluster as ``cluster_name``: ``selector.clusterLabel`` reads it, grouped or not."""
    ns = unique("ns")
    canary = f"outbound|9000|v2|tcp-echo.{ns}.svc.cluster.local"

    def settle(expected: float) -> None:
        prometheus.wait_for_value(f'sum({{__name__=~"envoy_cluster_.*",cluster_name=~".*{ns}.*"}})', expected)

    def before() -> None:
        exporter.set("envoy_cluster_upstream_cx_total", {"cluster_name": canary}, 5)
        settle(5)

    def during() -> None:
        exporter.inc("envoy_cluster_upstream_cx_total", {"cluster_name": canary}, 20)
        exporter.inc("envoy_cluster_upstream_cx_connect_fail", {"cluster_name": canary}, 3)  # born now
        settle(28)

    at, window = step(exporter, before, during)
    variables = Variables(
        namespace=ns,
        window_seconds=window,
        step_start=at.timestamp() - window,
        canary_cluster=canary,
        cluster_label="cluster_name",
        scrape_interval_seconds=SCRAPE_INTERVAL,
    )
    assert counts(metrics, envoy_counts(variables, "canary"), at) == (3.0, 20.0)
    assert grouped(metrics, "envoy-tcp-connect-error-ratio", variables, "canary", at) == (3.0, 20.0)


# ------------------------------------------------------------------------------------------ replayed history


def scrapes(name: str, labels: dict[str, str], values: Iterable[tuple[float, float]]) -> list[Point]:
    """Points of one series from (timestamp, value) pairs."""
    return [Point(name=name, labels=labels, timestamp=ts, value=value) for ts, value in values]


def test_replayed_history_counts_exactly_where_increase_extrapolates(
    replay: Callable[[Iterable[Point]], PrometheusServer],
) -> None:
    """Twenty minutes scraped every 15 s (Istio's add-on), the step starting at minute 10, checked at 15.

    The canary opens 4 connections per scrape; a refused-connect series is born 15 s into the step at 1
    and grows every fourth scrape to 5; an overflow series from before the step stays at 3. Exactly: 5
    errors of 85 connections. ``increase()`` over the same window misses the first failure and
    extrapolates the rest to 4 x 300 / 285 = 4.21.
    """
    base = history_start()
    canary = {"reporter": "source", "destination_workload": "tcp-echo-v2", "destination_workload_namespace": "demo"}
    points = scrapes(ISTIO_OPENED, {**canary, "response_flags": "-"}, ((base + 15 * i, 4 * i) for i in range(81)))
    points += scrapes(
        ISTIO_OPENED,
        {**canary, "response_flags": "UF,URX"},
        ((base + 15 * i, 1 + (i - 41) // 4) for i in range(41, 81)),
    )
    points += scrapes(ISTIO_OPENED, {**canary, "response_flags": "UO"}, ((base + 15 * i, 3) for i in range(20, 81)))
    server = replay(points)
    at = datetime.fromtimestamp(base + 900, UTC)
    variables = Variables(namespace="demo", window_seconds=300, step_start=base + 600, canary_workload="tcp-echo-v2")
    source = PrometheusMetricsSource(default_url=server.url, secrets=SecretReader(environ={}))
    try:
        queries = istio_counts(variables, "canary")
        assert counts(source, queries, at) == (5.0, 85.0)
        failed = 'istio_tcp_connections_opened_total{response_flags="UF,URX"}'
        plain = source.query(query=f"sum(increase({failed}[5m]))", at=at)
    finally:
        source.close()
    assert plain.value == pytest.approx(4 * 300 / 285)
