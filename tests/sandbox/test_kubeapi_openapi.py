"""``/openapi/v2`` and ``/openapi/v3`` publish the served CRDs as kube-apiserver does.

Shapes from apiextensions-apiserver ``pkg/controller/openapi/builder/builder.go`` (``buildKubeNative``,
``buildListSchema``, ``ToRESTFriendlyName``), ``v2/conversion.go`` (``ToStructuralOpenAPIV2``) and
kube-openapi ``pkg/handler/handler.go`` (content negotiation). kubectl 1.20 reading the protobuf form is
tested in ``tests/kubectl``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from canary_sandbox.kubeapi import KubeApiEmulator
from tests.sandbox.conftest import CRD_FILES, ISTIO_DATA

ROOT = Path(__file__).resolve().parents[2]
CANARY_CRD = ROOT / "helm" / "crds" / "canarypolicies.canaryctl.dev.yaml"
PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
OBJECT_META = "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    """A client of an emulator serving the CanaryPolicy CRD and the shared Istio and Gateway CRDs."""
    with (
        KubeApiEmulator(crds=[CANARY_CRD, *(ISTIO_DATA / name for name in CRD_FILES)]) as api,
        httpx.Client(base_url=api.url, timeout=10) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def v2(http: httpx.Client) -> dict[str, Any]:
    """The ``/openapi/v2`` JSON document."""
    answer = http.get("/openapi/v2", headers={"Accept": "application/json"})
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json"
    document: dict[str, Any] = answer.json()
    return document


def test_each_served_crd_version_gets_a_definition_named_by_its_reversed_group(v2: dict[str, Any]) -> None:
    names = set(v2["definitions"])

    assert {
        "dev.canaryctl.v1alpha1.CanaryPolicy",
        "dev.canaryctl.v1alpha1.CanaryPolicyList",
        "io.istio.networking.v1.VirtualService",
        "io.istio.networking.v1beta1.VirtualService",
        "io.istio.networking.v1alpha3.VirtualService",
        "io.k8s.networking.gateway.v1alpha2.TCPRoute",
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
    } <= names


def test_the_kind_definition_carries_type_meta_an_object_meta_reference_and_its_gvk(v2: dict[str, Any]) -> None:
    policy = v2["definitions"]["dev.canaryctl.v1alpha1.CanaryPolicy"]

    assert policy["x-kubernetes-group-version-kind"] == [
        {"group": "canaryctl.dev", "kind": "CanaryPolicy", "version": "v1alpha1"}
    ]
    assert policy["properties"]["metadata"] == {
        "$ref": OBJECT_META,
        "description": "Standard object's metadata. More info: "
        "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
    }
    assert policy["properties"]["apiVersion"]["type"] == "string"
    assert policy["properties"]["kind"]["type"] == "string"
    assert policy["properties"]["spec"]["required"] == ["target", "schedule"]


def test_the_list_definition_references_its_items_and_list_meta(v2: dict[str, Any]) -> None:
    listing = v2["definitions"]["dev.canaryctl.v1alpha1.CanaryPolicyList"]

    assert listing["required"] == ["items"]
    assert listing["description"] == "CanaryPolicyList is a list of CanaryPolicy"
    assert listing["properties"]["items"]["items"] == {"$ref": "#/definitions/dev.canaryctl.v1alpha1.CanaryPolicy"}
    assert listing["properties"]["metadata"]["$ref"] == "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"
    assert listing["x-kubernetes-group-version-kind"] == [
        {"group": "canaryctl.dev", "kind": "CanaryPolicyList", "version": "v1alpha1"}
    ]


def test_v2_drops_junctors_defaults_and_the_type_of_nullable_nodes(v2: dict[str, Any]) -> None:
    spec = v2["definitions"]["dev.canaryctl.v1alpha1.CanaryPolicy"]["properties"]["spec"]["properties"]
    route = v2["definitions"]["io.istio.networking.v1.VirtualService"]["properties"]["status"]["properties"]

    assert "type" not in spec["analysis"]
    assert "properties" not in spec["analysis"]
    assert "anyOf" not in route["observedGeneration"]
    assert route["observedGeneration"]["x-kubernetes-int-or-string"] is True
    assert "default" not in _keys(v2["definitions"]["dev.canaryctl.v1alpha1.CanaryPolicy"])
    assert "default" in _keys(_crd_schema())


def _keys(node: Any) -> set[str]:
    """Every key used anywhere in a JSON value."""
    if isinstance(node, dict):
        return set(node).union(*(_keys(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_keys(v) for v in node))
    return set()


def _crd_schema() -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load(CANARY_CRD.read_text(encoding="utf-8"))
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf", PROTOBUF),
        (PROTOBUF, PROTOBUF),
        ("application/json;q=0.5, application/com.github.proto-openapi.spec.v2.v1.0+protobuf", PROTOBUF),
        ("*/*", "application/json"),
        ("", "application/json"),
    ],
)
def test_v2_is_negotiated_like_kube_openapis_handler(http: httpx.Client, accept: str, content_type: str) -> None:
    answer = http.get("/openapi/v2", headers={"Accept": accept} if accept else {})

    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == content_type
    assert answer.headers["Vary"] == "Accept"
    assert answer.headers["Etag"].startswith('"')
    assert len(answer.headers["Etag"]) == 130


def test_v2_in_a_format_nobody_offers_is_406(http: httpx.Client) -> None:
    assert http.get("/openapi/v2", headers={"Accept": "text/html"}).status_code == 406


def test_the_protobuf_form_begins_with_the_swagger_version_field(http: httpx.Client) -> None:
    body = http.get("/openapi/v2", headers={"Accept": PROTOBUF}).content

    # Document.swagger is field 1, a string: tag 0x0a, length 3, "2.0".
    assert body[:5] == b"\x0a\x032.0"
    assert b"dev.canaryctl.v1alpha1.CanaryPolicy" in body


def test_v3_discovery_lists_each_crd_group_version_with_a_hashed_url(http: httpx.Client) -> None:
    paths = http.get("/openapi/v3").json()["paths"]

    url = paths["apis/canaryctl.dev/v1alpha1"]["serverRelativeURL"]
    assert url.startswith("/openapi/v3/apis/canaryctl.dev/v1alpha1?hash=")
    assert len(url.rsplit("=", 1)[1]) == 128
    assert {"apis/networking.istio.io/v1", "apis/gateway.networking.k8s.io/v1alpha2"} <= set(paths)


def test_a_v3_group_version_document_wraps_references_and_unfolds_int_or_string(http: httpx.Client) -> None:
    document = http.get(http.get("/openapi/v3").json()["paths"]["apis/canaryctl.dev/v1alpha1"]["serverRelativeURL"])
    schemas = document.json()["components"]["schemas"]
    policy = schemas["dev.canaryctl.v1alpha1.CanaryPolicy"]
    rollback = policy["properties"]["spec"]["properties"]["analysis"]["properties"]["maxInconclusive"]

    assert document.json()["openapi"] == "3.0.0"
    assert policy["properties"]["metadata"]["allOf"] == [
        {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    ]
    assert rollback["anyOf"] == [{"type": "integer"}, {"type": "string"}]
    assert rollback["nullable"] is True
    assert "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta" in schemas


def test_a_v3_document_for_a_group_version_nobody_serves_is_404(http: httpx.Client) -> None:
    assert http.get("/openapi/v3/apis/canaryctl.dev/v9").status_code == 404


def test_a_deleted_crd_disappears_from_the_documents() -> None:
    with KubeApiEmulator(crds=[CANARY_CRD]) as api, httpx.Client(base_url=api.url, timeout=10) as client:
        before = client.get("/openapi/v2").json()["definitions"]
        assert client.delete("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/canarypolicies.canaryctl.dev")
        after = client.get("/openapi/v2").json()["definitions"]
        v3 = client.get("/openapi/v3").json()["paths"]

    assert "dev.canaryctl.v1alpha1.CanaryPolicy" in before
    assert "dev.canaryctl.v1alpha1.CanaryPolicy" not in after
    assert v3 == {}
