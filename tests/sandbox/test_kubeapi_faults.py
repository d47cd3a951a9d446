"""Fault injection: realistic error Statuses, delays, cut connections, dropped and expired watches."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest
import urllib3
from kubernetes import client
from kubernetes.client import ApiException

from canary_sandbox.kubeapi import FaultInjector, KubeApiEmulator
from tests.sandbox.conftest import ISTIO, BackgroundWatch, document, make_api, new_watch, status_of, summary

FORBIDDEN_MESSAGE = (
    'virtualservices.networking.istio.io "tcp-echo" is forbidden: User '
    '"system:serviceaccount:canary:canary-controller" cannot patch resource "virtualservices" in API group '
    '"networking.istio.io" in the namespace "{namespace}"'
)


def create_tcp_echo(custom: Any, namespace: str) -> dict[str, Any]:
    body = copy.deepcopy(document("tcp-echo-20-v2.yaml", "VirtualService"))
    body["metadata"]["namespace"] = namespace
    created: dict[str, Any] = custom.create_namespaced_custom_object(*ISTIO, namespace, "virtualservices", body)
    return created


def patch_labels(custom: Any, namespace: str, **kwargs: Any) -> dict[str, Any]:
    patched: dict[str, Any] = custom.patch_namespaced_custom_object(
        *ISTIO, namespace, "virtualservices", "tcp-echo", {"metadata": {"labels": {"step": "1"}}}, **kwargs
    )
    return patched


def test_an_injected_conflict_fails_the_write_once_then_it_succeeds(
    custom: Any, faults: FaultInjector, emulator: KubeApiEmulator, namespace: str
) -> None:
    create_tcp_echo(custom, namespace)
    fault = faults.add(verb="PATCH", resource="virtualservices", name="tcp-echo", status=409, times=1)

    with pytest.raises(ApiException) as caught:
        patch_labels(custom, namespace)
    patched = patch_labels(custom, namespace)

    assert caught.value.status == 409
    assert status_of(caught.value)["reason"] == "Conflict"
    assert "the object has been modified" in status_of(caught.value)["message"]
    assert patched["metadata"]["labels"] == {"step": "1"}
    assert (fault.hits, fault.remaining) == (1, 0)
    assert len(emulator.history(resource="virtualservices", namespace=namespace, verb="PATCH")) == 1


def test_an_injected_internal_error_is_a_500_status(custom: Any, faults: FaultInjector, namespace: str) -> None:
    create_tcp_echo(custom, namespace)
    faults.add(verb="PUT", status=500, times=1)
    current = custom.get_namespaced_custom_object(*ISTIO, namespace, "virtualservices", "tcp-echo")

    with pytest.raises(ApiException) as caught:
        custom.replace_namespaced_custom_object(*ISTIO, namespace, "virtualservices", "tcp-echo", current)

    assert caught.value.status == 500
    status = status_of(caught.value)
    assert (status["reason"], status["message"]) == (
        "InternalError",
        "Internal error occurred: etcdserver: request timed out",
    )


def test_an_injected_forbidden_reads_like_an_rbac_denial(custom: Any, faults: FaultInjector, namespace: str) -> None:
    create_tcp_echo(custom, namespace)
    faults.add(verb="PATCH", resource="virtualservices.networking.istio.io", status=403)

    with pytest.raises(ApiException) as caught:
        patch_labels(custom, namespace)
    readable = custom.get_namespaced_custom_object(*ISTIO, namespace, "virtualservices", "tcp-echo")

    assert caught.value.status == 403
    status = status_of(caught.value)
    assert status["reason"] == "Forbidden"
    assert status["message"] == FORBIDDEN_MESSAGE.format(namespace=namespace)
    assert status["details"] == {"name": "tcp-echo", "group": "networking.istio.io", "kind": "virtualservices"}
    assert "labels" not in readable["metadata"]


def test_a_custom_message_and_reason_replace_the_defaults(core: Any, faults: FaultInjector, namespace: str) -> None:
    faults.add(verb="POST", namespace=namespace, status=422, reason="Invalid", message="admission webhook denied it")

    with pytest.raises(ApiException) as caught:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "x"}})

    assert (status_of(caught.value)["reason"], status_of(caught.value)["message"]) == (
        "Invalid",
        "admission webhook denied it",
    )


def test_an_injected_delay_makes_a_client_time_out(
    custom: Any, faults: FaultInjector, emulator: KubeApiEmulator, namespace: str
) -> None:
    create_tcp_echo(custom, namespace)
    faults.add(verb="PATCH", name="tcp-echo", delay_seconds=1, times=1)

    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        patch_labels(custom, namespace, _request_timeout=0.2)

    deadline = time.monotonic() + 5
    while not emulator.history(resource="virtualservices", namespace=namespace, verb="PATCH"):
        assert time.monotonic() < deadline, "the delayed patch was never applied"
        time.sleep(0.05)


def test_a_delay_only_fault_slows_the_answer_without_failing_it(
    core: Any, faults: FaultInjector, namespace: str
) -> None:
    faults.add(verb="LIST", path_regex=rf"/namespaces/{namespace}/configmaps$", delay_seconds=0.3)
    started = time.monotonic()

    listed = core.list_namespaced_config_map(namespace)

    assert listed.items == []
    assert time.monotonic() - started >= 0.3


def test_faults_only_hit_matching_requests_and_stop_once_cleared(
    core: Any, faults: FaultInjector, namespace: str
) -> None:
    fault = faults.add(verb="GET", resource="configmaps", name="blocked", status=503)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "blocked"}})
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "open"}})

    with pytest.raises(ApiException) as caught:
        core.read_namespaced_config_map("blocked", namespace)
    core.read_namespaced_config_map("open", namespace)
    faults.clear()
    read = core.read_namespaced_config_map("blocked", namespace)

    assert caught.value.status == 503
    assert fault.hits == 1
    assert read.metadata.name == "blocked"


def test_too_many_requests_carries_retry_after(core: Any, faults: FaultInjector, namespace: str) -> None:
    faults.add(verb="POST", status=429, retry_after_seconds=3, times=1)

    with pytest.raises(ApiException) as caught:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "throttled"}})

    assert caught.value.status == 429
    assert (caught.value.headers or {}).get("Retry-After") == "3"
    assert status_of(caught.value)["details"]["retryAfterSeconds"] == 3


def test_a_dropped_connection_fails_a_create_without_an_answer(
    core: Any, faults: FaultInjector, emulator: KubeApiEmulator, namespace: str
) -> None:
    faults.add(verb="POST", namespace=namespace, drop_connection=True, times=1)

    with pytest.raises(urllib3.exceptions.ProtocolError):
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "lost"}})

    assert emulator.get("configmaps", "lost", namespace=namespace) is None


def test_dropping_watches_cuts_open_streams(emulator: KubeApiEmulator, faults: FaultInjector, namespace: str) -> None:
    stream = BackgroundWatch(
        emulator, lambda api: make_api(client.CoreV1Api, api).list_namespaced_config_map, namespace
    )
    emulator.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "seen", "namespace": namespace}})
    stream.take(1)

    faults.drop_watches()
    ended = stream.finished.wait(5)
    stream.close()

    assert ended
    assert isinstance(stream.error, urllib3.exceptions.ProtocolError)


def test_dropping_watches_gracefully_ends_streams_like_a_server_timeout(
    emulator: KubeApiEmulator, core: Any, faults: FaultInjector, namespace: str
) -> None:
    stream = BackgroundWatch(
        emulator, lambda api: make_api(client.CoreV1Api, api).list_namespaced_config_map, namespace, timeout_seconds=30
    )
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "seen"}})
    stream.take(1)

    faults.drop_watches(graceful=True)
    ended = stream.finished.wait(5)
    stream.close()

    assert ended
    assert stream.error is None


def test_a_forced_expiry_makes_the_next_watch_answer_410(
    emulator: KubeApiEmulator, core: Any, faults: FaultInjector, namespace: str
) -> None:
    start = core.create_namespaced_config_map(namespace, {"metadata": {"name": "x"}}).metadata.resource_version
    faults.expire_next_watch()

    with pytest.raises(ApiException) as expired:
        list(new_watch().stream(core.list_namespaced_config_map, namespace, resource_version=start, timeout_seconds=5))
    stream = BackgroundWatch(
        emulator,
        lambda api: make_api(client.CoreV1Api, api).list_namespaced_config_map,
        namespace,
        resource_version=start,
    )
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "y"}})
    events = stream.take(1)
    stream.close()

    assert expired.value.status == 410
    assert summary(events) == [("ADDED", "y")]
