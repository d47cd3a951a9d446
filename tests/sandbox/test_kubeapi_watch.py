"""Watches: ordered events, resuming from a resourceVersion, 410 for a version older than the history."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from canary_sandbox.kubeapi import KubeApiEmulator
from tests.sandbox.conftest import ISTIO, BackgroundWatch, close_api_client, document, make_api, new_watch, summary


def configmap(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}, "data": {}}


def configmaps(api: client.ApiClient) -> Any:
    return make_api(client.CoreV1Api, api).list_namespaced_config_map


@pytest.fixture
def small_history() -> Iterator[KubeApiEmulator]:
    """An emulator whose watch history keeps only five events."""
    with KubeApiEmulator(watch_history=5) as api:
        yield api


def test_watch_delivers_added_modified_and_deleted_in_order(
    emulator: KubeApiEmulator, core: Any, namespace: str
) -> None:
    start = core.list_namespaced_config_map(namespace).metadata.resource_version
    stream = BackgroundWatch(emulator, configmaps, namespace, resource_version=start)
    try:
        core.create_namespaced_config_map(namespace, configmap("weights"))
        core.patch_namespaced_config_map("weights", namespace, {"data": {"canary": "20"}})
        core.create_namespaced_config_map(namespace, configmap("other"))
        core.delete_namespaced_config_map("weights", namespace)

        events = stream.take(4)
    finally:
        stream.close()

    assert summary(events) == [
        ("ADDED", "weights"),
        ("MODIFIED", "weights"),
        ("ADDED", "other"),
        ("DELETED", "weights"),
    ]
    assert events[1]["object"].data == {"canary": "20"}
    versions = [int(e["raw_object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions)


def test_watch_resumes_after_a_resource_version(emulator: KubeApiEmulator, core: Any, namespace: str) -> None:
    first = core.create_namespaced_config_map(namespace, configmap("first"))
    core.create_namespaced_config_map(namespace, configmap("second"))
    core.patch_namespaced_config_map("first", namespace, {"data": {"k": "v"}})

    stream = BackgroundWatch(emulator, configmaps, namespace, resource_version=first.metadata.resource_version)
    try:
        replayed = stream.take(2)
        core.create_namespaced_config_map(namespace, configmap("third"))
        live = stream.take(1)
    finally:
        stream.close()

    assert summary(replayed) == [("ADDED", "second"), ("MODIFIED", "first")]
    assert summary(live) == [("ADDED", "third")]


def test_a_watch_without_a_resource_version_starts_with_the_current_objects(
    emulator: KubeApiEmulator, core: Any, namespace: str
) -> None:
    core.create_namespaced_config_map(namespace, configmap("b"))
    core.create_namespaced_config_map(namespace, configmap("a"))

    stream = BackgroundWatch(emulator, configmaps, namespace)
    try:
        initial = stream.take(2)
        core.delete_namespaced_config_map("a", namespace)
        later = stream.take(1)
    finally:
        stream.close()

    assert summary(initial) == [("ADDED", "a"), ("ADDED", "b")]
    assert summary(later) == [("DELETED", "a")]


def test_a_watch_from_a_version_older_than_the_history_gets_410_gone(small_history: KubeApiEmulator) -> None:
    api = client.ApiClient(small_history.client_configuration())
    core = make_api(client.CoreV1Api, api)
    try:
        first = core.create_namespaced_config_map("default", configmap("c-0"))
        for index in range(1, 8):
            core.create_namespaced_config_map("default", configmap(f"c-{index}"))
        old = first.metadata.resource_version

        raw = core.list_namespaced_config_map("default", watch=True, resource_version=old, _preload_content=False)
        lines = raw.read().decode().splitlines()
        raw.release_conn()
        with pytest.raises(ApiException) as caught:
            list(new_watch().stream(core.list_namespaced_config_map, "default", resource_version=old))
    finally:
        close_api_client(api)

    assert raw.status == 200
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert event["type"] == "ERROR"
    assert event["object"]["code"] == 410
    assert event["object"]["reason"] == "Expired"
    assert event["object"]["message"].startswith(f"too old resource version: {old} (")
    assert caught.value.status == 410


def test_compaction_expires_every_older_resource_version(small_history: KubeApiEmulator) -> None:
    api = client.ApiClient(small_history.client_configuration())
    core = make_api(client.CoreV1Api, api)
    try:
        before = core.create_namespaced_config_map("default", configmap("before")).metadata.resource_version
        core.patch_namespaced_config_map("before", "default", {"data": {"k": "v"}})
        compacted = small_history.compact()

        with pytest.raises(ApiException) as caught:
            list(
                new_watch().stream(
                    core.list_namespaced_config_map, "default", resource_version=before, timeout_seconds=5
                )
            )
        stream = BackgroundWatch(small_history, configmaps, "default", resource_version=compacted)
        core.create_namespaced_config_map("default", configmap("after"))
        events = stream.take(1)
        stream.close()
    finally:
        close_api_client(api)

    assert caught.value.status == 410
    assert summary(events) == [("ADDED", "after")]


def test_a_watch_ends_after_its_timeout_seconds(core: Any, namespace: str) -> None:
    started = time.monotonic()

    events = list(new_watch().stream(core.list_namespaced_config_map, namespace, timeout_seconds=1))

    assert events == []
    assert 0.9 <= time.monotonic() - started < 5


def test_a_field_selector_watch_sees_only_that_object(emulator: KubeApiEmulator, core: Any, namespace: str) -> None:
    start = core.list_namespaced_config_map(namespace).metadata.resource_version
    stream = BackgroundWatch(
        emulator, configmaps, namespace, resource_version=start, field_selector="metadata.name=wanted"
    )
    try:
        core.create_namespaced_config_map(namespace, configmap("unwanted"))
        core.create_namespaced_config_map(namespace, configmap("wanted"))
        core.patch_namespaced_config_map("unwanted", namespace, {"data": {"k": "v"}})
        core.patch_namespaced_config_map("wanted", namespace, {"data": {"k": "v"}})
        events = stream.take(2)
    finally:
        stream.close()

    assert summary(events) == [("ADDED", "wanted"), ("MODIFIED", "wanted")]


def test_objects_moving_across_a_label_selector_appear_as_added_and_deleted(
    emulator: KubeApiEmulator, core: Any, namespace: str
) -> None:
    core.create_namespaced_config_map(namespace, configmap("mover", track="stable"))
    start = core.list_namespaced_config_map(namespace).metadata.resource_version
    stream = BackgroundWatch(emulator, configmaps, namespace, resource_version=start, label_selector="track=canary")
    try:
        core.patch_namespaced_config_map("mover", namespace, {"metadata": {"labels": {"track": "canary"}}})
        core.patch_namespaced_config_map("mover", namespace, {"data": {"k": "v"}})
        core.patch_namespaced_config_map("mover", namespace, {"metadata": {"labels": {"track": "stable"}}})
        events = stream.take(3)
    finally:
        stream.close()

    assert summary(events) == [("ADDED", "mover"), ("MODIFIED", "mover"), ("DELETED", "mover")]


def test_custom_resources_are_watched_in_the_requested_version(
    emulator: KubeApiEmulator, custom: Any, namespace: str
) -> None:
    body = copy.deepcopy(document("tcp-echo-20-v2.yaml", "VirtualService"))
    body["metadata"]["namespace"] = namespace
    start = custom.list_namespaced_custom_object(*ISTIO, namespace, "virtualservices")["metadata"]["resourceVersion"]
    stream = BackgroundWatch(
        emulator,
        lambda api: make_api(client.CustomObjectsApi, api).list_namespaced_custom_object,
        "networking.istio.io",
        "v1beta1",
        namespace,
        "virtualservices",
        resource_version=start,
    )
    try:
        custom.create_namespaced_custom_object(*ISTIO, namespace, "virtualservices", body)
        custom.patch_namespaced_custom_object_status(
            *ISTIO, namespace, "virtualservices", "tcp-echo", {"status": {"observedGeneration": 1}}
        )
        events = stream.take(2)
    finally:
        stream.close()

    assert summary(events) == [("ADDED", "tcp-echo"), ("MODIFIED", "tcp-echo")]
    assert {e["raw_object"]["apiVersion"] for e in events} == {"networking.istio.io/v1beta1"}
    assert events[1]["raw_object"]["status"] == {"observedGeneration": 1}
