"""The emulator's direct Python API: preloading objects, reading them, and the history of writes."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from canary_sandbox.kubeapi import ApiError, KubeApiEmulator, UnknownKindError
from tests.sandbox.conftest import ISTIO, ISTIO_DATA, document, make_api


def test_every_successful_write_is_recorded_with_a_copy_of_the_object(
    emulator: KubeApiEmulator, custom: Any, namespace: str
) -> None:
    body = copy.deepcopy(document("tcp-echo-20-v2.yaml", "VirtualService"))
    body["metadata"]["namespace"] = namespace
    started = time.monotonic()

    created = custom.create_namespaced_custom_object(*ISTIO, namespace, "virtualservices", body)
    patched = custom.patch_namespaced_custom_object(
        *ISTIO, namespace, "virtualservices", "tcp-echo", {"spec": {"exportTo": ["."]}}
    )
    replaced = custom.replace_namespaced_custom_object(*ISTIO, namespace, "virtualservices", "tcp-echo", patched)
    custom.patch_namespaced_custom_object_status(*ISTIO, namespace, "virtualservices", "tcp-echo", {"status": {"a": 1}})
    deleted = custom.delete_namespaced_custom_object(*ISTIO, namespace, "virtualservices", "tcp-echo")

    records = emulator.history(resource="VirtualService", namespace=namespace)
    assert [(r.verb, r.subresource, r.changed) for r in records] == [
        ("POST", None, True),
        ("PATCH", None, True),
        ("PUT", None, False),
        ("PATCH", "status", True),
        ("DELETE", None, True),
    ]
    assert all(r.resource == "virtualservices.networking.istio.io" and r.name == "tcp-echo" for r in records)
    assert [r.resource_version for r in records[:3]] == [
        created["metadata"]["resourceVersion"],
        patched["metadata"]["resourceVersion"],
        replaced["metadata"]["resourceVersion"],
    ]
    assert records[0].object["spec"] == created["spec"]
    assert records[1].object["spec"]["exportTo"] == ["."]
    assert records[3].patch_type == "application/merge-patch+json"
    assert (deleted["kind"], deleted["status"]) == ("VirtualService", {"a": 1})
    assert int(records[4].resource_version) > int(records[3].resource_version)
    times = [r.time for r in records]
    assert started <= times[0]
    assert times == sorted(times)


def test_failed_writes_are_not_recorded(emulator: KubeApiEmulator, core: Any, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "once"}})

    with pytest.raises(ApiException):
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "once"}})

    assert [r.verb for r in emulator.history(resource="configmaps", namespace=namespace)] == ["POST"]


def test_history_is_filtered_by_resource_spelling_source_and_time(emulator: KubeApiEmulator, namespace: str) -> None:
    emulator.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "early", "namespace": namespace}})
    middle = time.monotonic()
    emulator.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late", "namespace": namespace}})

    late = emulator.history(resource="cm", namespace=namespace, since=middle)
    python_writes = emulator.history(resource="configmaps", namespace=namespace, source="python")
    over_http = emulator.history(resource="ConfigMap", namespace=namespace, source="http")

    assert [r.name for r in late] == ["late"]
    assert [r.name for r in python_writes] == ["early", "late"]
    assert over_http == []


def test_a_yaml_file_is_preloaded_into_the_given_namespace(
    emulator: KubeApiEmulator, api_client: client.ApiClient, namespace: str
) -> None:
    stored = emulator.load_yaml(ISTIO_DATA / "tcp-echo-services.yaml", namespace=namespace)

    deployments = make_api(client.AppsV1Api, api_client).list_namespaced_deployment(namespace)
    service = make_api(client.CoreV1Api, api_client).read_namespaced_service("tcp-echo", namespace)
    assert sorted(obj["kind"] for obj in stored) == ["Deployment", "Deployment", "Service"]
    assert sorted(d.metadata.name for d in deployments.items) == ["tcp-echo-v1", "tcp-echo-v2"]
    assert [p.port for p in service.spec.ports] == [9000, 9001]


def test_unknown_kinds_stop_a_load_unless_skipped(emulator: KubeApiEmulator, namespace: str) -> None:
    with pytest.raises(UnknownKindError):
        emulator.load_yaml(ISTIO_DATA / "tcp-echo-all-v1.yaml", namespace=namespace)

    stored = emulator.load_yaml(ISTIO_DATA / "tcp-echo-all-v1.yaml", namespace=namespace, skip_unknown=True)

    assert [obj["kind"] for obj in stored] == ["DestinationRule", "VirtualService"]


def test_objects_default_to_the_default_namespace_and_missing_namespaces_are_created(
    emulator: KubeApiEmulator, core: Any
) -> None:
    emulator.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "defaulted-namespace-probe"}})
    emulator.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "made-on-demand"}})

    assert core.read_namespaced_config_map("defaulted-namespace-probe", "default").metadata.namespace == "default"
    assert core.read_namespace("made-on-demand").status.phase == "Active"
    assert emulator.delete("configmaps", "defaulted-namespace-probe", namespace="default")


def test_put_replaces_unconditionally_and_keeps_the_given_status(
    emulator: KubeApiEmulator, custom: Any, namespace: str
) -> None:
    body = copy.deepcopy(document("tcp-echo-20-v2.yaml", "VirtualService"))
    body["metadata"]["namespace"] = namespace
    first = emulator.put(body)
    body["spec"]["exportTo"] = ["."]
    body["status"] = {"observedGeneration": 2}

    second = emulator.put(body)
    served = custom.get_namespaced_custom_object(*ISTIO, namespace, "virtualservices", "tcp-echo")

    assert served == second
    assert served["status"] == {"observedGeneration": 2}
    assert served["metadata"]["generation"] == first["metadata"]["generation"] + 1


def test_the_python_api_validates_like_the_http_api(emulator: KubeApiEmulator, namespace: str) -> None:
    body = copy.deepcopy(document("tcp-echo-20-v2.yaml", "VirtualService"))
    body["metadata"]["namespace"] = namespace
    body["spec"]["tcp"][0]["route"][0]["weight"] = "abc"

    with pytest.raises(ApiError) as caught:
        emulator.create(body)

    assert caught.value.code == 422
    assert [c.field for c in caught.value.causes] == ["spec.tcp[0].route[0].weight"]


def test_get_and_list_return_copies(emulator: KubeApiEmulator, namespace: str) -> None:
    emulator.put(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": namespace}, "data": {"k": "v"}}
    )

    fetched = emulator.get("configmaps", "c", namespace=namespace)
    assert fetched is not None
    fetched["data"]["k"] = "changed"
    listed = emulator.list("configmaps", namespace=namespace)
    listed[0]["data"]["k"] = "changed too"

    again = emulator.get("configmaps", "c", namespace=namespace)
    assert again is not None
    assert again["data"] == {"k": "v"}
    assert emulator.get("configmaps", "absent", namespace=namespace) is None
