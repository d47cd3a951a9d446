"""Fixtures for tests against a real Prometheus (Debian's ``prometheus`` 2.42 and ``promtool``).

One Prometheus serves the session, scraping every second:

- job ``driven``: the ``DrivenExporter`` whose Istio- and Envoy-shaped counters the tests set;
- jobs ``istio-scrape-01`` .. ``-04``: the real Istio scrape files of the shared data, served unchanged,
  each with a ``pod`` label as real scrapes carry (``job`` and ``instance`` come from Prometheus).

Tests use label values of their own, so they never see each other's series. ``replay`` starts a second,
short-lived Prometheus on history written with ``promtool tsdb create-blocks-from openmetrics``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client

from controller.adapters.kubernetes.api import KubeApi
from controller.adapters.kubernetes.secrets import SecretReader
from controller.adapters.prometheus import PrometheusMetricsSource
from tests.prom.servers import (
    DrivenExporter,
    Point,
    PrometheusServer,
    StaticFiles,
    create_blocks,
    prometheus_config,
)
from tests.sandbox.conftest import api_client, emulator, namespace
from tests.support.paths import SHARED_ISTIO

__all__ = ["api_client", "emulator", "kube", "namespace"]

SCRAPE_FILES = tuple(sorted(SHARED_ISTIO.glob("metrics-*.prom")))


def scrape_job(path: Path) -> str:
    """The job scraping one shared file: ``metrics-03-...prom`` -> ``istio-scrape-03``."""
    return "istio-scrape-" + path.name.split("-")[1]


@dataclass(frozen=True)
class Binaries:
    """Where Debian's Prometheus executables are."""

    prometheus: str
    promtool: str


@dataclass(frozen=True)
class PromStack:
    """The session's Prometheus and what it scrapes."""

    prometheus: PrometheusServer
    exporter: DrivenExporter
    jobs: dict[str, str]  # scrape file name -> job


@pytest.fixture(scope="session")
def binaries() -> Binaries:
    """The ``prometheus`` and ``promtool`` executables; the tests fail (not skip) without them."""
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if prometheus is None or promtool is None:
        pytest.fail(
            "Debian's prometheus/promtool are not installed (tests/prom runs a real Prometheus): run make deps",
            pytrace=False,
        )
    return Binaries(prometheus=prometheus, promtool=promtool)


@pytest.fixture(scope="session")
def prom_stack(binaries: Binaries, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromStack]:
    """Prometheus scraping the driven exporter and the real scrape files, every target scraped once."""
    assert len(SCRAPE_FILES) == 4, f"expected the four metrics-*.prom files in {SHARED_ISTIO}"
    exporter = DrivenExporter()
    files = StaticFiles(SCRAPE_FILES)
    jobs = {path.name: scrape_job(path) for path in SCRAPE_FILES}
    config = prometheus_config(
        {
            "driven": {"target": exporter.address, "labels": {"pod": "driven-exporter-0"}},
            **{
                job: {"target": files.address, "path": f"/{name}", "labels": {"pod": f"{job}-pod"}}
                for name, job in jobs.items()
            },
        }
    )
    server = PrometheusServer(binary=binaries.prometheus, workdir=tmp_path_factory.mktemp("prometheus"), config=config)
    try:
        server.start()
        server.wait_for_targets()
        yield PromStack(prometheus=server, exporter=exporter, jobs=jobs)
    finally:
        server.stop()
        files.close()
        exporter.close()


@pytest.fixture
def prometheus(prom_stack: PromStack) -> PrometheusServer:
    """The session's Prometheus."""
    return prom_stack.prometheus


@pytest.fixture
def exporter(prom_stack: PromStack) -> DrivenExporter:
    """The exporter the session's Prometheus scrapes every second."""
    return prom_stack.exporter


@pytest.fixture
def metrics(prometheus: PrometheusServer) -> Iterator[PrometheusMetricsSource]:
    """The adapter on the session's Prometheus (no credentials)."""
    source = PrometheusMetricsSource(default_url=prometheus.url, secrets=SecretReader(environ={}))
    yield source
    source.close()


@pytest.fixture
def replay(binaries: Binaries, tmp_path: Path) -> Iterator[Callable[[Iterable[Point]], PrometheusServer]]:
    """Start a Prometheus serving exactly the given history (no scraping), stopped after the test.

    Points must lie in the recent past (``history_start``); retention is 100 years so nothing is dropped.
    """
    started: list[PrometheusServer] = []

    def start(points: Iterable[Point]) -> PrometheusServer:
        workdir = tmp_path / f"replay-{len(started)}"
        data_dir = create_blocks(binaries.promtool, points, workdir)
        server = PrometheusServer(
            binary=binaries.prometheus,
            workdir=workdir,
            config=prometheus_config(),
            data_dir=data_dir,
            retention="100y",
        )
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def kube(emulator: object, api_client: client.ApiClient) -> KubeApi:
    """The project's KubeApi wrapper on the session's Kubernetes API emulator."""
    del emulator
    return KubeApi(api_client, timeout_seconds=2.0)
