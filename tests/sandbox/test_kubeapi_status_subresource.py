"""The status subresource: the main resource and ``/status`` each change only their own part."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kubernetes.client import ApiException

from tests.sandbox.conftest import ISTIO, document

STATUS = {"observedGeneration": 1, "conditions": [{"type": "Reconciled", "status": "True"}]}


def tcp_echo(namespace: str, **extra: Any) -> dict[str, Any]:
    body = copy.deepcopy(document("tcp-echo-20-v2.yaml", "VirtualService"))
    body["metadata"]["namespace"] = namespace
    body.update(extra)
    return body


def read(custom: Any, namespace: str) -> dict[str, Any]:
    obj: dict[str, Any] = custom.get_namespaced_custom_object(*ISTIO, namespace, "virtualservices", "tcp-echo")
    return obj


def test_create_drops_status_when_the_subresource_is_enabled(custom: Any, namespace: str) -> None:
    created = custom.create_namespaced_custom_object(
        *ISTIO, namespace, "virtualservices", tcp_echo(namespace, status=STATUS)
    )

    assert "status" not in created


def test_status_writes_change_only_status_and_keep_the_generation(custom: Any, namespace: str) -> None:
    created = custom.create_namespaced_custom_object(*ISTIO, namespace, "virtualservices", tcp_echo(namespace))
    sneaky = copy.deepcopy(created)
    sneaky["spec"]["hosts"] = ["changed-through-status"]
    sneaky["metadata"]["labels"] = {"changed": "through-status"}
    sneaky["status"] = STATUS

    updated = custom.replace_namespaced_custom_object_status(*ISTIO, namespace, "virtualservices", "tcp-echo", sneaky)

    assert updated["status"] == STATUS
    assert updated["spec"] == created["spec"]
    assert "labels" not in updated["metadata"]
    assert updated["metadata"]["generation"] == 1
    assert int(updated["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])


def test_main_resource_writes_ignore_status_changes(custom: Any, namespace: str) -> None:
    custom.create_namespaced_custom_object(*ISTIO, namespace, "virtualservices", tcp_echo(namespace))
    with_status = custom.patch_namespaced_custom_object_status(
        *ISTIO, namespace, "virtualservices", "tcp-echo", {"status": STATUS}
    )

    patched = custom.patch_namespaced_custom_object(
        *ISTIO,
        namespace,
        "virtualservices",
        "tcp-echo",
        {"spec": {"exportTo": ["."]}, "status": {"observedGeneration": 9}},
    )
    status_only = custom.patch_namespaced_custom_object(
        *ISTIO, namespace, "virtualservices", "tcp-echo", {"status": {"observedGeneration": 9}}
    )

    assert patched["status"] == STATUS
    assert patched["spec"]["exportTo"] == ["."]
    assert patched["metadata"]["generation"] == 2
    assert status_only["metadata"]["resourceVersion"] == patched["metadata"]["resourceVersion"]
    assert int(patched["metadata"]["resourceVersion"]) > int(with_status["metadata"]["resourceVersion"])


def test_a_stale_status_write_conflicts(custom: Any, namespace: str) -> None:
    created = custom.create_namespaced_custom_object(*ISTIO, namespace, "virtualservices", tcp_echo(namespace))
    custom.patch_namespaced_custom_object(
        *ISTIO, namespace, "virtualservices", "tcp-echo", {"spec": {"exportTo": ["."]}}
    )

    with pytest.raises(ApiException) as caught:
        custom.replace_namespaced_custom_object_status(
            *ISTIO, namespace, "virtualservices", "tcp-echo", {**created, "status": STATUS}
        )

    assert caught.value.status == 409
    assert "status" not in read(custom, namespace)


def test_deployment_status_is_written_only_through_the_subresource(apps: Any, namespace: str) -> None:
    labels = {"app": "tcp-echo"}
    body = {
        "metadata": {"name": "tcp-echo"},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": []}},
        },
    }
    apps.create_namespaced_deployment(namespace, body)

    ignored = apps.patch_namespaced_deployment("tcp-echo", namespace, {"status": {"readyReplicas": 1}})
    written = apps.patch_namespaced_deployment_status("tcp-echo", namespace, {"status": {"readyReplicas": 1}})

    assert ignored.status is None or ignored.status.ready_replicas is None
    assert written.status.ready_replicas == 1
    assert written.metadata.generation == 1
