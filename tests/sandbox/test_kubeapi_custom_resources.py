"""Custom resources: the real Istio and Gateway API CRDs and samples, patches, schema validation, pruning."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from canary_sandbox.kubeapi import KubeApiEmulator
from tests.sandbox.conftest import ISTIO, document, documents, make_api, status_of

GATEWAY = "gateway.networking.k8s.io"
JSON_PATCH = "application/json-patch+json"
SAMPLE_FILES = sorted(
    [
        "tcp-echo-all-v1.yaml",
        "tcp-echo-20-v2.yaml",
        "vs-01-mysql-tcp-80-20-external-dns.yaml",
        "vs-06-argo-rollouts-docs-http-tls-tcp-host-split.yaml",
        "vs-08-argo-rollouts-tls-only-host-split.yaml",
        "vs-09-kiali-tcp-traffic-shifting-wizard.yaml",
        "vs-11-bookinfo-reviews-80-20-http.yaml",
        "vs-13-istio-io-egress-gateway-tls-passthrough.yaml",
        "vs-14-istio-http-gateways-match-via-egressgateway.yaml",
        "vs-17-mysql-tcp-ip-host-no-match.yaml",
        "vs-18-istio-http-sourcelabels-headers.yaml",
    ]
)
TCPROUTE_FILES = [
    "gateway-api-tcp-echo-all-v1.yaml",
    "gateway-api-tcp-echo-20-v2.yaml",
    "tcproute-01-conformance-weighted-routing.yaml",
    "tcproute-02-basic-tcp.yaml",
    "tcproute-03-destination-port-matching-mesh.yaml",
]
PLURALS = {"VirtualService": "virtualservices", "DestinationRule": "destinationrules", "TCPRoute": "tcproutes"}


def into(namespace: str, obj: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    """A copy of a sample object placed in the test's namespace."""
    out = copy.deepcopy(obj)
    out["metadata"] = {**out["metadata"], "namespace": namespace, **metadata}
    return out


def create_vs(custom: Any, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    created: dict[str, Any] = custom.create_namespaced_custom_object(*ISTIO, namespace, "virtualservices", body)
    return created


def tcp_echo(namespace: str) -> dict[str, Any]:
    return into(namespace, document("tcp-echo-20-v2.yaml", "VirtualService"))


def test_the_real_tcp_echo_virtual_service_is_created_and_read_back(custom: Any, namespace: str) -> None:
    sample = document("tcp-echo-all-v1.yaml", "VirtualService")

    created = create_vs(custom, namespace, into(namespace, sample))
    read = custom.get_namespaced_custom_object(*ISTIO, namespace, "virtualservices", "tcp-echo")

    assert read == created
    assert read["spec"] == sample["spec"]
    assert read["metadata"]["generation"] == 1
    assert read["apiVersion"] == "networking.istio.io/v1"


def test_a_merge_patch_sets_the_canary_weights(custom: Any, namespace: str) -> None:
    created = create_vs(custom, namespace, tcp_echo(namespace))
    route = copy.deepcopy(created["spec"]["tcp"][0]["route"])
    route[0]["weight"], route[1]["weight"] = 50, 50

    patched = custom.patch_namespaced_custom_object(
        *ISTIO,
        namespace,
        "virtualservices",
        "tcp-echo",
        {"spec": {"tcp": [{**created["spec"]["tcp"][0], "route": route}]}},
    )

    assert [d["weight"] for d in patched["spec"]["tcp"][0]["route"]] == [50, 50]
    assert patched["metadata"]["generation"] == 2
    assert int(patched["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])


def test_a_json_patch_guarded_by_a_test_sets_the_weights(custom: Any, namespace: str) -> None:
    create_vs(custom, namespace, tcp_echo(namespace))
    operations = [
        {"op": "test", "path": "/spec/tcp/0/route/1/weight", "value": 20},
        {"op": "replace", "path": "/spec/tcp/0/route/0/weight", "value": 0},
        {"op": "replace", "path": "/spec/tcp/0/route/1/weight", "value": 100},
    ]

    patched = custom.patch_namespaced_custom_object(
        *ISTIO, namespace, "virtualservices", "tcp-echo", operations, _content_type=JSON_PATCH
    )

    assert [d["weight"] for d in patched["spec"]["tcp"][0]["route"]] == [0, 100]


def test_a_failed_json_patch_test_is_rejected_as_invalid_and_changes_nothing(custom: Any, namespace: str) -> None:
    created = create_vs(custom, namespace, tcp_echo(namespace))
    operations = [
        {"op": "replace", "path": "/spec/tcp/0/route/0/weight", "value": 0},
        {"op": "test", "path": "/spec/tcp/0/route/1/weight", "value": 50},
    ]

    with pytest.raises(ApiException) as caught:
        custom.patch_namespaced_custom_object(
            *ISTIO, namespace, "virtualservices", "tcp-echo", operations, _content_type=JSON_PATCH
        )

    assert caught.value.status == 422
    status = status_of(caught.value)
    assert status["reason"] == "Invalid"
    # handlers/patch.go, jsonPatcher.applyJSPatch: NewGenericServerResponse(422, ...) drops the library's message.
    assert status["message"] == "the server rejected our request due to an error in our request"
    assert status["details"] == {}
    assert custom.get_namespaced_custom_object(*ISTIO, namespace, "virtualservices", "tcp-echo") == created


def test_a_json_patch_on_a_missing_path_is_rejected_as_invalid(custom: Any, namespace: str) -> None:
    create_vs(custom, namespace, tcp_echo(namespace))

    with pytest.raises(ApiException) as caught:
        custom.patch_namespaced_custom_object(
            *ISTIO,
            namespace,
            "virtualservices",
            "tcp-echo",
            [{"op": "replace", "path": "/spec/tcp/3/route/0/weight", "value": 1}],
            _content_type=JSON_PATCH,
        )

    assert caught.value.status == 422


def test_a_strategic_merge_patch_on_a_custom_resource_is_an_unsupported_media_type(custom: Any, namespace: str) -> None:
    create_vs(custom, namespace, tcp_echo(namespace))

    with pytest.raises(ApiException) as caught:
        custom.patch_namespaced_custom_object(
            *ISTIO,
            namespace,
            "virtualservices",
            "tcp-echo",
            {"spec": {"hosts": ["x"]}},
            _content_type="application/strategic-merge-patch+json",
        )

    assert caught.value.status == 415
    assert status_of(caught.value)["reason"] == "UnsupportedMediaType"


def test_a_virtual_service_with_a_string_weight_is_invalid_naming_the_field(custom: Any, namespace: str) -> None:
    body = tcp_echo(namespace)
    body["spec"]["tcp"][0]["route"][0]["weight"] = "abc"

    with pytest.raises(ApiException) as caught:
        create_vs(custom, namespace, body)

    assert caught.value.status == 422
    status = status_of(caught.value)
    assert status["details"]["causes"] == [
        {
            "reason": "FieldValueTypeInvalid",
            "message": 'Invalid value: "string": spec.tcp[0].route[0].weight in body must be of type integer: "string"',
            "field": "spec.tcp[0].route[0].weight",
        }
    ]
    assert status["message"].startswith(
        'VirtualService.networking.istio.io "tcp-echo" is invalid: spec.tcp[0].route[0].weight'
    )


def test_a_weight_beyond_int32_is_accepted_as_formats_apply_to_strings_only(custom: Any, namespace: str) -> None:
    # kube-openapi validate/formats.go, formatValidator.Applies: only string values are format-checked, so a
    # real server stores 2**31 in a `format: int32` integer (Istio's validating webhook, absent here, may not).
    create_vs(custom, namespace, tcp_echo(namespace))
    operations = [{"op": "replace", "path": "/spec/tcp/0/route/0/weight", "value": 2**31}]

    patched = custom.patch_namespaced_custom_object(
        *ISTIO, namespace, "virtualservices", "tcp-echo", operations, _content_type=JSON_PATCH
    )

    assert patched["spec"]["tcp"][0]["route"][0]["weight"] == 2**31


def tcproute(namespace: str, version: str = "v1alpha2") -> dict[str, Any]:
    route = into(namespace, document("gateway-api-tcp-echo-20-v2.yaml", "TCPRoute"))
    route["apiVersion"] = f"{GATEWAY}/{version}"
    return route


def test_a_tcproute_with_seventeen_backend_refs_is_invalid(custom: Any, namespace: str) -> None:
    body = tcproute(namespace)
    body["spec"]["rules"][0]["backendRefs"] = [{"name": f"tcp-echo-{i}", "port": 9000} for i in range(17)]

    with pytest.raises(ApiException) as caught:
        custom.create_namespaced_custom_object(GATEWAY, "v1alpha2", namespace, "tcproutes", body)

    assert caught.value.status == 422
    assert status_of(caught.value)["details"]["causes"] == [
        {
            "reason": "FieldValueTooMany",
            "message": "Too many: 17: must have at most 16 items",
            "field": "spec.rules[0].backendRefs",
        }
    ]


def test_a_tcproute_weight_above_a_million_is_invalid(custom: Any, namespace: str) -> None:
    body = tcproute(namespace, "v1")
    body["spec"]["rules"][0]["backendRefs"][1]["weight"] = 2_000_000

    with pytest.raises(ApiException) as caught:
        custom.create_namespaced_custom_object(GATEWAY, "v1", namespace, "tcproutes", body)

    assert caught.value.status == 422
    cause = status_of(caught.value)["details"]["causes"][0]
    assert cause["field"] == "spec.rules[0].backendRefs[1].weight"
    assert cause["message"].endswith("should be less than or equal to 1000000")


def test_tcproute_defaults_are_filled_in(custom: Any, namespace: str) -> None:
    body = tcproute(namespace)
    del body["spec"]["rules"][0]["backendRefs"][1]["weight"]

    created = custom.create_namespaced_custom_object(GATEWAY, "v1alpha2", namespace, "tcproutes", body)

    backend = created["spec"]["rules"][0]["backendRefs"][1]
    assert (backend["weight"], backend["kind"], backend["group"]) == (1, "Service", "")


def test_unknown_fields_are_pruned_and_named_in_a_warning(custom: Any, namespace: str) -> None:
    body = tcp_echo(namespace)
    body["spec"]["canaryWeight"] = 20
    body["spec"]["tcp"][0]["route"][0]["destination"]["zone"] = "a"

    created, code, headers = custom.create_namespaced_custom_object_with_http_info(
        *ISTIO, namespace, "virtualservices", body
    )

    assert code == 201
    assert "canaryWeight" not in created["spec"]
    assert "zone" not in created["spec"]["tcp"][0]["route"][0]["destination"]
    assert headers.getlist("Warning") == [
        '299 - "unknown field \\"spec.canaryWeight\\""',
        '299 - "unknown field \\"spec.tcp[0].route[0].destination.zone\\""',
    ]


def test_strict_field_validation_rejects_unknown_fields(custom: Any, namespace: str) -> None:
    body = tcp_echo(namespace)
    body["spec"]["canaryWeight"] = 20

    with pytest.raises(ApiException) as caught:
        custom.create_namespaced_custom_object(*ISTIO, namespace, "virtualservices", body, field_validation="Strict")

    assert caught.value.status == 400
    assert status_of(caught.value)["message"] == 'strict decoding error: unknown field "spec.canaryWeight"'


@pytest.mark.parametrize("file_name", SAMPLE_FILES)
def test_real_istio_samples_are_accepted(custom: Any, namespace: str, file_name: str) -> None:
    samples = [doc for doc in documents(file_name) if doc["kind"] in ("VirtualService", "DestinationRule")]

    for sample in samples:
        group, version = sample["apiVersion"].split("/")
        created = custom.create_namespaced_custom_object(
            group, version, namespace, PLURALS[sample["kind"]], into(namespace, sample)
        )
        assert created["spec"] == sample["spec"]
    assert samples


@pytest.mark.parametrize("version", ["v1alpha2", "v1"])
@pytest.mark.parametrize("file_name", TCPROUTE_FILES)
def test_real_gateway_api_tcproutes_are_accepted(custom: Any, namespace: str, file_name: str, version: str) -> None:
    routes = documents(file_name, "TCPRoute")

    for route in routes:
        body = into(namespace, route)
        body["apiVersion"] = f"{GATEWAY}/{version}"
        created = custom.create_namespaced_custom_object(GATEWAY, version, namespace, "tcproutes", body)
        assert created["spec"]["parentRefs"][0]["name"] == route["spec"]["parentRefs"][0]["name"]
    assert routes


def test_a_dry_run_validates_without_storing_anything(custom: Any, emulator: KubeApiEmulator, namespace: str) -> None:
    invalid = tcp_echo(namespace)
    invalid["spec"]["tcp"][0]["route"][0]["weight"] = "abc"

    created = custom.create_namespaced_custom_object(
        *ISTIO, namespace, "virtualservices", tcp_echo(namespace), dry_run="All"
    )
    with pytest.raises(ApiException) as caught:
        custom.create_namespaced_custom_object(*ISTIO, namespace, "virtualservices", invalid, dry_run="All")

    assert created["metadata"]["uid"]
    assert "resourceVersion" not in created["metadata"]
    assert caught.value.status == 422
    assert emulator.get("virtualservices", "tcp-echo", namespace=namespace) is None
    assert emulator.history(resource="virtualservices", namespace=namespace) == []


def test_an_object_is_served_in_every_served_version(custom: Any, namespace: str) -> None:
    created = create_vs(custom, namespace, tcp_echo(namespace))

    for version in ("v1beta1", "v1alpha3"):
        read = custom.get_namespaced_custom_object(
            "networking.istio.io", version, namespace, "virtualservices", "tcp-echo"
        )
        assert read["apiVersion"] == f"networking.istio.io/{version}"
        assert read["spec"] == created["spec"]
        assert read["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


def test_a_deprecated_version_answers_with_its_deprecation_warning(custom: Any, namespace: str) -> None:
    _, _, headers = custom.create_namespaced_custom_object_with_http_info(
        GATEWAY, "v1alpha2", namespace, "tcproutes", tcproute(namespace)
    )

    assert headers.getlist("Warning") == [
        '299 - "The v1alpha2 version of TCPRoute has been deprecated and will be removed in a future '
        'release of the API. Please upgrade to v1."'
    ]


def test_replacing_a_custom_resource_without_a_resource_version_is_invalid(custom: Any, namespace: str) -> None:
    created = create_vs(custom, namespace, tcp_echo(namespace))
    del created["metadata"]["resourceVersion"]

    with pytest.raises(ApiException) as caught:
        custom.replace_namespaced_custom_object(*ISTIO, namespace, "virtualservices", "tcp-echo", created)

    assert caught.value.status == 422
    assert status_of(caught.value)["details"]["causes"][0] == {
        "reason": "FieldValueInvalid",
        "message": "Invalid value: 0x0: must be specified for an update",
        "field": "metadata.resourceVersion",
    }


WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Cluster",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {"size": {"type": "integer", "minimum": 1}},
                                "required": ["size"],
                            }
                        },
                    }
                },
            }
        ],
    },
}


def test_a_crd_posted_to_the_api_is_established_and_served(api_client: client.ApiClient) -> None:
    extensions = make_api(client.ApiextensionsV1Api, api_client)
    custom = make_api(client.CustomObjectsApi, api_client)

    created = extensions.create_custom_resource_definition(WIDGET_CRD)
    widget = custom.create_cluster_custom_object(
        "example.com",
        "v1",
        "widgets",
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 2}},
    )
    with pytest.raises(ApiException) as invalid:
        custom.create_cluster_custom_object(
            "example.com",
            "v1",
            "widgets",
            {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "v"}, "spec": {"size": 0}},
        )
    with pytest.raises(ApiException) as no_status:
        custom.get_cluster_custom_object_status("example.com", "v1", "widgets", "w")
    extensions.delete_custom_resource_definition("widgets.example.com")
    with pytest.raises(ApiException) as gone:
        custom.list_cluster_custom_object("example.com", "v1", "widgets")

    assert {c.type: c.status for c in created.status.conditions} == {"NamesAccepted": "True", "Established": "True"}
    assert widget["metadata"]["name"] == "w"
    assert "namespace" not in widget["metadata"]
    assert invalid.value.status == 422
    assert no_status.value.status == 404
    assert gone.value.status == 404


def test_a_crd_registered_from_python_is_served(
    emulator: KubeApiEmulator, api_client: client.ApiClient, namespace: str
) -> None:
    crd = copy.deepcopy(WIDGET_CRD)
    crd["metadata"]["name"] = "gadgets.example.com"
    crd["spec"].update(scope="Namespaced", names={"plural": "gadgets", "kind": "Gadget"})

    resource = emulator.register_crd(crd)
    created = make_api(client.CustomObjectsApi, api_client).create_namespaced_custom_object(
        "example.com",
        "v1",
        namespace,
        "gadgets",
        {"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}, "spec": {"size": 1}},
    )

    assert (resource.plural, resource.namespaced, resource.list_kind) == ("gadgets", True, "GadgetList")
    assert created["metadata"]["namespace"] == namespace


def test_a_crd_whose_name_does_not_match_its_names_is_invalid(api_client: client.ApiClient) -> None:
    crd = copy.deepcopy(WIDGET_CRD)
    crd["metadata"]["name"] = "wrong.example.com"

    with pytest.raises(ApiException) as caught:
        make_api(client.ApiextensionsV1Api, api_client).create_custom_resource_definition(crd)

    assert caught.value.status == 422
    assert status_of(caught.value)["details"]["causes"][0]["field"] == "metadata.name"
