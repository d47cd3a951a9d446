"""The dashboard's check series (``GET /api/rollouts/NS/NAME/series``) from a real Prometheus.

The driven exporter's Envoy counters are what the check ``connect-errors`` (template
``envoy-tcp-connect-error-ratio``) counts; the series must count the same connections and errors.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from kubernetes import client

from canary_sandbox.kubeapi import KubeApiEmulator
from controller.adapters.kubernetes.api import KubeApi
from controller.adapters.kubernetes.status import CrdStatusStore
from controller.core.status import HistoryEntry, Phase, RolloutStatus
from controller.dashboard.data import DashboardData
from controller.dashboard.server import DashboardConfig, DashboardServer
from controller.ports import PolicyRef
from tests.prom.servers import DrivenExporter, PrometheusServer
from tests.sandbox.conftest import close_api_client
from tests.support.paths import REPO
from tests.support.policies import policy_doc

CRD_FILE = REPO / "helm" / "crds" / "canarypolicies.canaryctl.dev.yaml"


@pytest.fixture(scope="module")
def cluster() -> Iterator[KubeApiEmulator]:
    """An emulator of its own serving the CanaryPolicy CRD."""
    with KubeApiEmulator(crds=[CRD_FILE]) as emulator:
        yield emulator


@pytest.fixture
def kube(cluster: KubeApiEmulator) -> Iterator[KubeApi]:
    """The project's API wrapper on it."""
    api_client = client.ApiClient(cluster.client_configuration())
    yield KubeApi(api_client, timeout_seconds=5.0)
    close_api_client(api_client)


def _policy(cluster: KubeApiEmulator, kube: KubeApi, *, namespace: str, prometheus_url: str, ns_tag: str) -> None:
    cluster.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    doc: dict[str, Any] = policy_doc(name="tcp-echo", namespace=namespace)
    doc["spec"]["analysis"] = {
        "interval": "2s",
        "prometheus": {"url": prometheus_url},
        "selector": {"canaryCluster": f"canary-{ns_tag}", "stableCluster": f"stable-{ns_tag}"},
        "metrics": [{"name": "connect-errors", "template": "envoy-tcp-connect-error-ratio", "max": 0.05}],
    }
    cluster.put(doc)
    started = datetime.now(UTC) - timedelta(minutes=1)
    status = RolloutStatus(
        phase=Phase.PROGRESSING,
        run_id="run-1",
        step_index=1,
        weight=20,
        schedule=[0, 20, 50, 100],
        step_started_at=started,
        history=[HistoryEntry(time=started, from_phase=None, to_phase=Phase.PROGRESSING, reason="Started")],
    )
    store = CrdStatusStore(kube)
    ref = PolicyRef(namespace=namespace, name="tcp-echo", source="crd")
    store.save(policy=ref, status=status, version=store.load(policy=ref).version)


@pytest.fixture
def dashboard(kube: KubeApi) -> Iterator[httpx.Client]:
    """A local dashboard (each policy's own Prometheus URL) and a client for it."""
    data = DashboardData(
        api=kube, controller_namespace="canary-system", namespaces=None, prometheus_url=None, http=httpx.Client()
    )
    server = DashboardServer(("127.0.0.1", 0), data=data, config=DashboardConfig()).start()
    http = httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=30.0)
    yield http
    http.close()
    server.stop()
    data.http.close()


def test_series_count_the_connections_and_errors_the_check_counts(
    cluster: KubeApiEmulator,
    kube: KubeApi,
    prometheus: PrometheusServer,
    exporter: DrivenExporter,
    dashboard: httpx.Client,
) -> None:
    tag = uuid.uuid4().hex[:8]
    namespace = f"series-{tag}"
    _policy(cluster, kube, namespace=namespace, prometheus_url=prometheus.url, ns_tag=tag)
    canary, stable = {"envoy_cluster_name": f"canary-{tag}"}, {"envoy_cluster_name": f"stable-{tag}"}
    for labels in (canary, stable):
        exporter.set("envoy_cluster_upstream_cx_total", labels, 0)
        exporter.set("envoy_cluster_upstream_cx_connect_fail", labels, 0)
    prometheus.wait_for_value(f'count({{envoy_cluster_name=~".*-{tag}"}})', 4)
    time.sleep(2.5)  # two scrapes of the zeros, so the increments below are counted from them
    began = datetime.now(UTC)
    exporter.inc("envoy_cluster_upstream_cx_total", canary, 40)
    exporter.inc("envoy_cluster_upstream_cx_connect_fail", canary, 4)
    exporter.inc("envoy_cluster_upstream_cx_total", stable, 160)
    prometheus.wait_for_value(f'sum(envoy_cluster_upstream_cx_total{{envoy_cluster_name="stable-{tag}"}})', 160)
    time.sleep(3)
    end = datetime.now(UTC)

    answer = dashboard.get(
        f"/api/rollouts/{namespace}/tcp-echo/series",
        params={
            "check": "connect-errors",
            "start": (began - timedelta(seconds=20)).isoformat(),
            "end": end.isoformat(),
        },
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["step"] == 2.0
    assert body["threshold"] == 0.05
    assert sum(n for _, n in body["canaryConnections"]) == 40
    assert sum(n for _, n in body["canaryErrors"]) == 4
    assert sum(n for _, n in body["stableConnections"]) == 160
    canary_ratios = [ratio for _, ratio in body["canary"] if ratio is not None]
    assert canary_ratios == [pytest.approx(0.1)]
    assert [ratio for _, ratio in body["stable"] if ratio is not None] == [0.0]
    assert f'envoy_cluster_upstream_cx_total{{envoy_cluster_name="canary-{tag}"}}' in body["canaryQueries"]


def test_series_from_a_prometheus_that_does_not_answer_is_503(
    cluster: KubeApiEmulator, kube: KubeApi, dashboard: httpx.Client
) -> None:
    tag = uuid.uuid4().hex[:8]
    namespace = f"series-{tag}"
    _policy(cluster, kube, namespace=namespace, prometheus_url="http://127.0.0.1:9", ns_tag=tag)
    answer = dashboard.get(f"/api/rollouts/{namespace}/tcp-echo/series", params={"check": "connect-errors"})
    assert answer.status_code == 503
    assert "Prometheus" in answer.json()["error"]
