"""Built-in kinds through the official client: metadata, create/read/delete, lists, namespaces, discovery."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from kubernetes import client, dynamic
from kubernetes.client import ApiException

from canary_sandbox.kubeapi import KubeApiEmulator
from tests.sandbox.conftest import make_api, status_of


def configmap(name: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}}, "data": data}


def test_create_sets_uid_creation_timestamp_and_a_string_resource_version(core: Any, namespace: str) -> None:
    created = core.create_namespaced_config_map(namespace, configmap("settings", mode="fast"))

    assert created.metadata.uid
    assert created.metadata.creation_timestamp is not None
    assert created.metadata.resource_version.isdigit()
    assert created.metadata.namespace == namespace
    assert core.read_namespaced_config_map("settings", namespace).data == {"mode": "fast"}


def test_every_write_takes_a_new_resource_version_from_one_global_counter(
    core: Any, api_client: client.ApiClient, namespace: str
) -> None:
    coordination = make_api(client.CoordinationV1Api, api_client)

    first = core.create_namespaced_config_map(namespace, configmap("a"))
    lease = coordination.create_namespaced_lease(namespace, {"metadata": {"name": "leader"}, "spec": {}})
    patched = core.patch_namespaced_config_map("a", namespace, {"data": {"k": "v"}})
    versions = [int(first.metadata.resource_version), int(lease.metadata.resource_version)]
    versions.append(int(patched.metadata.resource_version))

    assert versions == sorted(set(versions))


def test_a_write_that_changes_nothing_keeps_the_resource_version(core: Any, namespace: str) -> None:
    created = core.create_namespaced_config_map(namespace, configmap("same", k="v"))

    again = core.patch_namespaced_config_map("same", namespace, {"data": {"k": "v"}})

    assert again.metadata.resource_version == created.metadata.resource_version


def test_creating_an_existing_name_is_rejected_with_already_exists(core: Any, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, configmap("taken"))

    with pytest.raises(ApiException) as caught:
        core.create_namespaced_config_map(namespace, configmap("taken"))

    assert caught.value.status == 409
    assert status_of(caught.value)["reason"] == "AlreadyExists"
    assert status_of(caught.value)["message"] == 'configmaps "taken" already exists'


def test_generate_name_gets_a_unique_suffix(core: Any, namespace: str) -> None:
    body = {"metadata": {"generateName": "canary-"}}

    names = {core.create_namespaced_config_map(namespace, body).metadata.name for _ in range(3)}

    assert len(names) == 3
    assert all(name.startswith("canary-") and len(name) == len("canary-") + 5 for name in names)


def test_an_object_without_a_name_is_invalid(core: Any, namespace: str) -> None:
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_config_map(namespace, {"metadata": {}, "data": {}})

    assert caught.value.status == 422
    causes = status_of(caught.value)["details"]["causes"]
    assert causes == [
        {
            "reason": "FieldValueRequired",
            "message": "Required value: name or generateName is required",
            "field": "metadata.name",
        }
    ]


def test_a_name_that_is_not_an_rfc1123_subdomain_is_invalid(core: Any, namespace: str) -> None:
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_config_map(namespace, configmap("Not_Valid"))

    assert caught.value.status == 422
    assert (
        'ConfigMap "Not_Valid" is invalid: metadata.name: Invalid value: "Not_Valid"'
        in status_of(caught.value)["message"]
    )


def test_a_namespace_in_the_body_must_match_the_url(core: Any, namespace: str) -> None:
    body = {"metadata": {"name": "elsewhere", "namespace": "kube-system"}}

    with pytest.raises(ApiException) as caught:
        core.create_namespaced_config_map(namespace, body)

    assert caught.value.status == 400
    assert status_of(caught.value)["reason"] == "BadRequest"


def test_creating_in_a_missing_namespace_is_not_found(core: Any) -> None:
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_config_map("no-such-namespace", configmap("orphan"))

    assert caught.value.status == 404
    assert status_of(caught.value)["message"] == 'namespaces "no-such-namespace" not found'


def test_reading_a_missing_object_answers_a_not_found_status(core: Any, namespace: str) -> None:
    with pytest.raises(ApiException) as caught:
        core.read_namespaced_config_map("missing", namespace)

    assert caught.value.status == 404
    assert status_of(caught.value) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'configmaps "missing" not found',
        "reason": "NotFound",
        "details": {"name": "missing", "kind": "configmaps"},
        "code": 404,
    }


def test_delete_answers_a_success_status_and_the_object_is_gone(core: Any, namespace: str) -> None:
    created = core.create_namespaced_config_map(namespace, configmap("doomed"))

    answer = core.delete_namespaced_config_map("doomed", namespace)

    assert answer["status"] == "Success"
    assert answer["details"]["uid"] == created.metadata.uid
    with pytest.raises(ApiException) as caught:
        core.delete_namespaced_config_map("doomed", namespace)
    assert caught.value.status == 404


def test_delete_with_a_stale_resource_version_precondition_conflicts(core: Any, namespace: str) -> None:
    created = core.create_namespaced_config_map(namespace, configmap("guarded"))
    core.patch_namespaced_config_map("guarded", namespace, {"data": {"k": "v"}})
    options = client.V1DeleteOptions(
        preconditions=client.V1Preconditions(resource_version=created.metadata.resource_version)
    )

    with pytest.raises(ApiException) as caught:
        core.delete_namespaced_config_map("guarded", namespace, body=options)

    assert caught.value.status == 409
    assert "Precondition failed: ResourceVersion in precondition" in status_of(caught.value)["message"]
    assert core.read_namespaced_config_map("guarded", namespace).metadata.name == "guarded"


def test_finalizers_hold_a_deleted_object_until_they_are_removed(core: Any, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "held", "finalizers": ["canary/cleanup"]}})

    core.delete_namespaced_config_map("held", namespace)
    marked = core.read_namespaced_config_map("held", namespace)
    core.patch_namespaced_config_map("held", namespace, {"metadata": {"finalizers": None}})

    assert marked.metadata.deletion_timestamp is not None
    with pytest.raises(ApiException) as caught:
        core.read_namespaced_config_map("held", namespace)
    assert caught.value.status == 404


def test_deleting_a_namespace_deletes_its_objects(core: Any, emulator: KubeApiEmulator) -> None:
    core.create_namespace({"metadata": {"name": "short-lived"}})
    core.create_namespaced_config_map("short-lived", configmap("inside"))

    core.delete_namespace("short-lived")

    assert emulator.get("configmaps", "inside", namespace="short-lived") is None
    with pytest.raises(ApiException) as caught:
        core.read_namespace("short-lived")
    assert caught.value.status == 404


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("track=canary", {"canary"}),
        ("track==stable", {"stable"}),
        ("track!=canary", {"stable", "plain"}),
        ("track", {"canary", "stable"}),
        ("!track", {"plain"}),
        ("track in (canary, stable),app=echo", {"canary", "stable"}),
    ],
)
def test_list_filters_by_label_selector(core: Any, namespace: str, selector: str, expected: set[str]) -> None:
    core.create_namespaced_config_map(namespace, configmap("canary", {"app": "echo", "track": "canary"}))
    core.create_namespaced_config_map(namespace, configmap("stable", {"app": "echo", "track": "stable"}))
    core.create_namespaced_config_map(namespace, configmap("plain", {"app": "echo"}))

    listed = core.list_namespaced_config_map(namespace, label_selector=selector)

    assert {item.metadata.name for item in listed.items} == expected


def test_list_filters_by_field_selector_and_reports_its_resource_version(
    core: Any, namespace: str, emulator: KubeApiEmulator
) -> None:
    core.create_namespaced_config_map(namespace, configmap("one"))
    core.create_namespaced_config_map(namespace, configmap("two"))

    by_name = core.list_namespaced_config_map(namespace, field_selector="metadata.name=two")
    everywhere = core.list_config_map_for_all_namespaces(field_selector=f"metadata.namespace={namespace}")

    assert [item.metadata.name for item in by_name.items] == ["two"]
    assert by_name.metadata.resource_version == emulator.resource_version
    assert sorted(item.metadata.name for item in everywhere.items) == ["one", "two"]


def test_an_unsupported_field_selector_is_a_bad_request(core: Any, namespace: str) -> None:
    with pytest.raises(ApiException) as caught:
        core.list_namespaced_config_map(namespace, field_selector="data.k=v")

    assert caught.value.status == 400
    assert status_of(caught.value)["message"] == "field label not supported: data.k"


def test_list_pages_with_limit_and_continue(core: Any, namespace: str) -> None:
    for index in range(5):
        core.create_namespaced_config_map(namespace, configmap(f"page-{index}"))

    first = core.list_namespaced_config_map(namespace, limit=2)
    second = core.list_namespaced_config_map(namespace, limit=2, _continue=first.metadata._continue)
    third = core.list_namespaced_config_map(namespace, limit=2, _continue=second.metadata._continue)

    names = [item.metadata.name for page in (first, second, third) for item in page.items]
    assert names == [f"page-{index}" for index in range(5)]
    assert first.metadata.remaining_item_count == 3
    assert not third.metadata._continue


def test_deployment_generation_moves_only_when_the_spec_changes(apps: Any, namespace: str) -> None:
    labels = {"app": "tcp-echo", "version": "v1"}
    body = {
        "metadata": {"name": "tcp-echo-v1"},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "echo", "image": "echo:1"}]}},
        },
    }
    created = apps.create_namespaced_deployment(namespace, body)

    relabelled = apps.patch_namespaced_deployment("tcp-echo-v1", namespace, {"metadata": {"labels": {"team": "a"}}})
    scaled = apps.patch_namespaced_deployment("tcp-echo-v1", namespace, {"spec": {"replicas": 3}})

    assert (created.metadata.generation, created.spec.replicas) == (1, 1)
    assert relabelled.metadata.generation == 1
    assert (scaled.metadata.generation, scaled.spec.replicas) == (2, 3)


def test_deployment_with_a_selector_not_matching_its_template_is_invalid(apps: Any, namespace: str) -> None:
    body = {
        "metadata": {"name": "mismatched"},
        "spec": {
            "selector": {"matchLabels": {"app": "a"}},
            "template": {"metadata": {"labels": {"app": "b"}}, "spec": {"containers": []}},
        },
    }

    with pytest.raises(ApiException) as caught:
        apps.create_namespaced_deployment(namespace, body)

    assert caught.value.status == 422
    assert status_of(caught.value)["details"]["causes"][0]["field"] == "spec.template.metadata.labels"


def test_lease_renewal_with_a_stale_resource_version_loses(api_client: client.ApiClient, namespace: str) -> None:
    leases = make_api(client.CoordinationV1Api, api_client)
    lease = leases.create_namespaced_lease(
        namespace,
        {"metadata": {"name": "canary-controller"}, "spec": {"holderIdentity": "pod-a", "leaseDurationSeconds": 15}},
    )
    lease.spec.holder_identity = "pod-b"
    leases.replace_namespaced_lease("canary-controller", namespace, lease)

    lease.spec.holder_identity = "pod-c"
    with pytest.raises(ApiException) as caught:
        leases.replace_namespaced_lease("canary-controller", namespace, lease)

    assert caught.value.status == 409
    assert leases.read_namespaced_lease("canary-controller", namespace).spec.holder_identity == "pod-b"


def test_events_are_accepted_in_both_event_apis(api_client: client.ApiClient, namespace: str) -> None:
    core = make_api(client.CoreV1Api, api_client)
    events = make_api(client.EventsV1Api, api_client)
    regarding = {"kind": "VirtualService", "name": "tcp-echo", "namespace": namespace}

    core.create_namespaced_event(
        namespace, {"metadata": {"name": "step.1"}, "involvedObject": regarding, "reason": "Step", "message": "20%"}
    )
    events.create_namespaced_event(
        namespace,
        {
            "metadata": {"name": "step.2"},
            "eventTime": "2024-01-01T00:00:00.000000Z",
            "reportingController": "canary",
            "reportingInstance": "canary-0",
            "action": "SetWeights",
            "reason": "Step",
            "regarding": regarding,
            "note": "50%",
            "type": "Normal",
        },
    )

    assert [e.message for e in core.list_namespaced_event(namespace).items] == ["20%"]
    assert [e.note for e in events.list_namespaced_event(namespace).items] == ["50%"]


def test_secret_string_data_is_stored_base64_encoded(core: Any, namespace: str) -> None:
    core.create_namespaced_secret(namespace, {"metadata": {"name": "webhook"}, "stringData": {"url": "http://x"}})

    stored = core.read_namespaced_secret("webhook", namespace)

    assert stored.data == {"url": base64.b64encode(b"http://x").decode()}
    assert stored.type == "Opaque"


def test_a_service_gets_a_cluster_ip_that_survives_a_replace(core: Any, namespace: str) -> None:
    created = core.create_namespaced_service(
        namespace, {"metadata": {"name": "tcp-echo"}, "spec": {"ports": [{"name": "tcp", "port": 9000}]}}
    )
    allocated = created.spec.cluster_ip
    created.spec.cluster_ip = None
    created.spec.cluster_ips = None

    replaced = core.replace_namespaced_service("tcp-echo", namespace, created)

    assert allocated.startswith("10.96.")
    assert replaced.spec.cluster_ip == allocated
    assert replaced.spec.ports[0].protocol == "TCP"


def test_a_dict_patch_on_a_built_in_kind_is_a_strategic_merge_patch(core: Any, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, configmap("merged", a="1", b="2"))

    patched = core.patch_namespaced_config_map("merged", namespace, {"data": {"b": None, "c": "3"}})

    assert patched.data == {"a": "1", "c": "3"}


def test_discovery_is_enough_for_the_dynamic_client(api_client: client.ApiClient, namespace: str) -> None:
    discovered = make_api(dynamic.DynamicClient, api_client)

    services = discovered.resources.get(api_version="networking.istio.io/v1", kind="VirtualService")
    configmaps = discovered.resources.get(api_version="v1", kind="ConfigMap")
    configmaps.create(body={"metadata": {"name": "via-dynamic"}, "data": {}}, namespace=namespace)

    assert services.namespaced
    assert services.name == "virtualservices"
    assert [item.metadata.name for item in configmaps.get(namespace=namespace).items] == ["via-dynamic"]


def test_version_and_api_group_discovery_answer(api_client: client.ApiClient) -> None:
    version = make_api(client.VersionApi, api_client).get_code()
    groups = make_api(client.ApisApi, api_client).get_api_versions()
    core_resources = make_api(client.CoreV1Api, api_client).get_api_resources()

    assert version.major == "1"
    by_name = {group.name: group for group in groups.groups}
    assert by_name["networking.istio.io"].preferred_version.version == "v1"
    assert by_name["gateway.networking.k8s.io"].preferred_version.version == "v1"
    assert {"namespaces", "configmaps", "namespaces/status"} <= {r.name for r in core_resources.resources}
