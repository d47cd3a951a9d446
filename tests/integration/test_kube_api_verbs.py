"""KubeApi's verbs: an object named once by its Resource, namespace and name; failures translated with the cause."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from canary_sandbox.kubeapi import KubeApiEmulator
from controller.adapters.kubernetes.api import (
    CONFIGMAPS,
    LEASES,
    MAX_BODY,
    NAMESPACES,
    KubeApi,
    Resource,
    as_dict,
    load_api_client,
    metadata_of,
)
from controller.errors import ApiError, CanaryError, ConflictError, KubeconfigError, NotFoundError, UnavailableError
from tests.sandbox.conftest import close_api_client

VIRTUALSERVICES = Resource("networking.istio.io", "virtualservices", ("v1", "v1beta1", "v1alpha3"))


def test_a_config_map_is_created_read_patched_replaced_and_listed(kube: KubeApi, namespace: str) -> None:
    body = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="settings", namespace=namespace, labels={"app": "x"}), data={"a": "1"}
    )
    created = kube.create_obj(resource=CONFIGMAPS, namespace=namespace, body=body)
    kube.patch_obj(resource=CONFIGMAPS, namespace=namespace, name="settings", patch={"data": {"b": "2"}})
    read = kube.get_obj(resource=CONFIGMAPS, namespace=namespace, name="settings")
    assert read.data == {"a": "1", "b": "2"}

    read.data = {"c": "3"}
    read.metadata.resource_version = metadata_of(created).resource_version  # stale: the patch moved it on
    with pytest.raises(ConflictError):
        kube.replace_obj(resource=CONFIGMAPS, namespace=namespace, name="settings", body=read)

    listed = kube.list_objs(resource=CONFIGMAPS, namespace=namespace, label_selector="app=x")
    assert [metadata_of(cm).name for cm in listed.items] == ["settings"]
    assert kube.list_objs(resource=CONFIGMAPS, namespace=namespace, label_selector="app=y").items == []


def test_a_cluster_scoped_object_is_read_without_a_namespace(kube: KubeApi, namespace: str) -> None:
    assert metadata_of(kube.get_obj(resource=NAMESPACES, namespace="", name=namespace)).name == namespace
    with pytest.raises(NotFoundError, match="no-such-namespace-here: not found"):
        kube.get_obj(resource=NAMESPACES, namespace="", name="no-such-namespace-here")


def test_a_custom_object_is_read_at_the_version_the_server_serves(
    emulator: KubeApiEmulator, kube: KubeApi, namespace: str
) -> None:
    emulator.put(
        {
            "apiVersion": "networking.istio.io/v1alpha3",
            "kind": "VirtualService",
            "metadata": {"name": "tcp-echo", "namespace": namespace},
            "spec": {"hosts": ["tcp-echo"], "tcp": [{"route": [{"destination": {"host": "tcp-echo"}}]}]},
        }
    )
    obj = as_dict(kube.get_obj(resource=VIRTUALSERVICES, namespace=namespace, name="tcp-echo"))
    served = kube.resource_version("networking.istio.io", "virtualservices", candidates=VIRTUALSERVICES.versions)
    assert obj["apiVersion"] == f"networking.istio.io/{served}"
    kube.patch_obj(
        resource=VIRTUALSERVICES,
        namespace=namespace,
        name="tcp-echo",
        patch=[{"op": "replace", "path": "/spec/hosts", "value": ["other"]}],
        patch_type="json",
    )
    assert as_dict(kube.get_obj(resource=VIRTUALSERVICES, namespace=namespace, name="tcp-echo"))["spec"]["hosts"] == [
        "other"
    ]


def test_creating_an_existing_object_is_a_conflict_that_names_it(kube: KubeApi, namespace: str) -> None:
    body = client.V1Lease(metadata=client.V1ObjectMeta(name="leader", namespace=namespace), spec=client.V1LeaseSpec())
    kube.create_obj(resource=LEASES, namespace=namespace, body=body)
    with pytest.raises(ConflictError, match=f"create leases.coordination.k8s.io {namespace}/leader: conflict"):
        kube.create_obj(resource=LEASES, namespace=namespace, body=body)


def test_a_failure_keeps_its_cause_with_the_body_cut_short() -> None:
    def failing() -> None:
        error = ApiException(status=500, reason="Internal Server Error")
        error.body = '{"message": "' + "x" * 5000 + '"}'
        error.headers = {"Audit-Id": "abc", "Set-Cookie": "session=secret"}
        raise error

    api_client = client.ApiClient(client.Configuration())
    try:
        with pytest.raises(UnavailableError) as raised:
            KubeApi(api_client).call(failing, verb="get", resource="configmaps", group="", namespace="n", name="c")
    finally:
        close_api_client(api_client)
    cause = raised.value.__cause__
    assert isinstance(cause, ApiException)
    assert cause.status == 500
    assert isinstance(cause.body, str)
    assert len(cause.body) <= MAX_BODY + 3
    assert cause.headers is None
    assert "session=secret" not in str(cause)


def test_no_answer_keeps_the_transport_error_as_its_cause() -> None:
    configuration = client.Configuration()
    configuration.host = "http://127.0.0.1:9"  # the discard port: nothing listens there
    configuration.retries = False
    api_client = client.ApiClient(configuration)
    try:
        with pytest.raises(UnavailableError, match="no answer from the API server") as raised:
            KubeApi(api_client, timeout_seconds=2.0).get_obj(resource=CONFIGMAPS, namespace="n", name="c")
    finally:
        close_api_client(api_client)
    assert raised.value.code == 0
    assert raised.value.__cause__ is not None


def test_an_unusable_kubeconfig_is_one_of_the_projects_errors(tmp_path: Path) -> None:
    broken = tmp_path / "kubeconfig"
    broken.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\n")
    with pytest.raises(KubeconfigError, match=f"cannot load a Kubernetes configuration from {broken}") as raised:
        load_api_client(kubeconfig=str(broken))
    assert isinstance(raised.value, CanaryError)
    assert not isinstance(raised.value, ApiError)
    assert raised.value.__cause__ is not None
