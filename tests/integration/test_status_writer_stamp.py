"""Status writes carry their writer's stamp through the API server, in both stores (two-writers detection)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client

from canary_sandbox.kubeapi import KubeApiEmulator
from controller.adapters.kubernetes.api import KubeApi
from controller.adapters.kubernetes.status import ConfigMapStatusStore, CrdStatusStore, configmap_name
from controller.core.status import Phase, RolloutStatus
from controller.core.writers import WriterStamp
from controller.ports import PolicyRef
from tests.sandbox.conftest import close_api_client
from tests.support.paths import REPO

CRD = REPO / "helm" / "crds" / "canarypolicies.canaryctl.dev.yaml"
NS = "shop"
STAMP = WriterStamp(identity="replica-a", instance="3f2a", serial=4, elected=False)


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[KubeApiEmulator, KubeApi]]:
    with KubeApiEmulator(crds=[CRD]) as emulator:
        for name in (NS, "canary-system"):
            emulator.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        api_client = client.ApiClient(emulator.client_configuration())
        try:
            yield emulator, KubeApi(api_client, timeout_seconds=2.0)
        finally:
            close_api_client(api_client)


def _policy(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((REPO / "policies" / "tcp-echo.yaml").read_text())
    doc["metadata"] = {"name": name, "namespace": NS}
    return doc


def test_the_api_server_keeps_the_stamp_of_a_canarypolicy_status_write(
    cluster: tuple[KubeApiEmulator, KubeApi],
) -> None:
    emulator, kube = cluster
    emulator.create(_policy("stamped"))
    store = CrdStatusStore(kube)
    ref = PolicyRef(namespace=NS, name="stamped", source="crd")
    version = store.load(policy=ref).version
    store.save(policy=ref, status=RolloutStatus(phase=Phase.PROGRESSING), version=version, writer=STAMP)

    stored = emulator.get("canarypolicies.canaryctl.dev", "stamped", namespace=NS)
    assert stored is not None
    assert stored["status"]["writer"] == {"identity": "replica-a", "instance": "3f2a", "serial": 4, "elected": False}
    loaded = store.load(policy=ref)
    assert loaded.writer == STAMP
    assert loaded.status.phase == Phase.PROGRESSING


def test_a_configmap_status_write_keeps_its_stamp_and_an_unstamped_one_reads_as_no_writer(
    cluster: tuple[KubeApiEmulator, KubeApi],
) -> None:
    _, kube = cluster
    store = ConfigMapStatusStore(kube, namespace="canary-system")
    ref = PolicyRef(namespace=NS, name="filed", source="file")
    first = store.save(policy=ref, status=RolloutStatus(phase=Phase.PROGRESSING), version=None, writer=STAMP)
    assert store.load(policy=ref).writer == STAMP
    store.save(policy=ref, status=RolloutStatus(phase=Phase.PAUSED), version=first)
    loaded = store.load(policy=ref)
    assert loaded.writer is None
    assert loaded.status.phase == Phase.PAUSED


def test_an_unreadable_stamp_reads_as_no_writer_and_the_status_still_loads(
    cluster: tuple[KubeApiEmulator, KubeApi],
) -> None:
    emulator, kube = cluster
    ref = PolicyRef(namespace=NS, name="garbled", source="file")
    emulator.put(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": configmap_name(ref), "namespace": "canary-system"},
            "data": {"status": '{"phase": "Paused", "writer": {"identity": 7}}'},
        }
    )
    loaded = ConfigMapStatusStore(kube, namespace="canary-system").load(policy=ref)
    assert loaded.writer is None
    assert loaded.status.phase == Phase.PAUSED
