"""The Kubernetes adapters against answers a real kube-apiserver gives (issue 14, item 1).

Two defects the emulator used to hide:

* A failed JSON-patch ``test`` op. kube-apiserver answers HTTP 422 with a body that carries no cause at all
  (``staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go``, ``applyJSPatch`` ->
  ``errors.NewGenericServerResponse(http.StatusUnprocessableEntity, "", schema.GroupResource{}, "", "", 0,
  false)``; field reports: kubernetes-client/javascript#2095, operator-framework/java-operator-sdk#2759).
  The adapter used to classify the conflict by the words "test failed", which never arrive.
* The API version of a resource. A group's ``preferredVersion`` is the highest version served by *any* CRD
  of the group (``apiextensions-apiserver/pkg/apiserver/customresource_discovery_controller.go``, ``sync``:
  versions of every CRD in the group, sorted by ``version.CompareKubeAwareVersionStrings``). Gateway API's
  standard channel serves Gateway at v1 while a TCPRoute CRD before v1.6 serves only v1alpha2.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from canary_sandbox.kubeapi import FaultInjector, KubeApiEmulator
from controller.adapters.kubernetes.api import KubeApi
from controller.adapters.kubernetes.traffic import KubernetesTrafficRouter
from controller.errors import ApiError, ConflictError
from tests.integration.conftest import stored
from tests.sandbox.conftest import ISTIO_DATA, close_api_client, document

# kube-apiserver's answer to a JSON patch whose ``test`` op fails, byte for byte (handlers/patch.go,
# applyJSPatch -> NewGenericServerResponse(422, ...)).
REAL_FAILED_TEST_BODY = (
    '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the server rejected our '
    'request due to an error in our request","reason":"Invalid","details":{},"code":422}'
)
REAL_FAILED_TEST_MESSAGE = "the server rejected our request due to an error in our request"

# Gateway API's standard channel: Gateway served at v1 (config/crd/standard/gateway.networking.k8s.io_gateways
# .yaml). Only the parts the API server needs to serve it; the schema is not what is under test.
GATEWAY_CRD_V1: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "gateways.gateway.networking.k8s.io"},
    "spec": {
        "group": "gateway.networking.k8s.io",
        "names": {"kind": "Gateway", "listKind": "GatewayList", "plural": "gateways", "singular": "gateway"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            }
        ],
    },
}


@pytest.fixture(scope="module")
def older_gateway_api() -> Iterator[KubeApiEmulator]:
    """A cluster with Gateway API's standard channel at v1 and the v1.2.1 TCPRoute CRD (v1alpha2 only)."""
    crds: list[Any] = [GATEWAY_CRD_V1, ISTIO_DATA / "gateway.networking.k8s.io_tcproutes-v1.2.1.yaml"]
    with KubeApiEmulator(crds=crds) as api:
        yield api


@pytest.fixture
def older_kube(older_gateway_api: KubeApiEmulator) -> Iterator[KubeApi]:
    api_client = client.ApiClient(older_gateway_api.client_configuration())
    yield KubeApi(api_client, timeout_seconds=2.0)
    close_api_client(api_client)


def test_the_group_prefers_v1_although_tcproutes_are_served_only_at_v1alpha2(
    older_gateway_api: KubeApiEmulator, older_kube: KubeApi
) -> None:
    group = client.ApisApi(older_kube.api_client).get_api_versions()
    gateway = next(g for g in group.groups if g.name == "gateway.networking.k8s.io")
    assert gateway.preferred_version is not None
    assert gateway.preferred_version.version == "v1"
    assert older_kube.resource_version("gateway.networking.k8s.io", "tcproutes", candidates=("v1", "v1alpha2")) == (
        "v1alpha2"
    )


def test_a_tcproute_served_only_at_v1alpha2_is_found_and_written(
    older_gateway_api: KubeApiEmulator, older_kube: KubeApi
) -> None:
    route = copy.deepcopy(document("gateway-api-tcp-echo-all-v1.yaml", "TCPRoute"))
    older_gateway_api.put(route, namespace="default")
    router = KubernetesTrafficRouter(older_kube)
    live = router.get(kind="TCPRoute", namespace="default", name="tcp-echo")
    assert live is not None, "the route exists: a 404 from .../v1/.../tcproutes must not read as 'not found'"
    assert live["apiVersion"] == "gateway.networking.k8s.io/v1alpha2"
    refs = live["spec"]["rules"][0]["backendRefs"]
    weighted = [{**refs[0], "weight": 80}, {"name": "tcp-echo-v2", "port": refs[0]["port"], "weight": 20}]
    router.replace_route(
        kind="TCPRoute",
        namespace="default",
        name="tcp-echo",
        pointer="/spec/rules/0/backendRefs",
        expect=refs,
        destinations=weighted,
    )
    after = stored(older_gateway_api, "tcproutes.gateway.networking.k8s.io", "tcp-echo", "default")
    # The server applies the CRD's defaults (group "", kind Service) to what was written.
    assert [(r["name"], r["weight"]) for r in after["spec"]["rules"][0]["backendRefs"]] == [
        ("tcp-echo-v1", 80),
        ("tcp-echo-v2", 20),
    ]


def test_a_crd_upgraded_to_serve_v1_is_discovered_again_after_a_404(older_kube: KubeApi) -> None:
    with KubeApiEmulator(crds=[ISTIO_DATA / "gateway.networking.k8s.io_tcproutes.yaml"]) as newer:
        api_client = client.ApiClient(newer.client_configuration())
        try:
            kube = KubeApi(api_client, timeout_seconds=2.0)
            # A cached answer from before the upgrade: the resource was then only at v1alpha2 ...
            kube._versions[("gateway.networking.k8s.io", "tcproutes")] = "v1beta1"
            route = copy.deepcopy(document("gateway-api-tcp-echo-all-v1.yaml", "TCPRoute"))
            newer.put(route, namespace="default")
            live = KubernetesTrafficRouter(kube).get(kind="TCPRoute", namespace="default", name="tcp-echo")
            # ... a 404 at the cached version makes the adapter look again, and find v1 first.
            assert live is not None
            assert kube.resource_version("gateway.networking.k8s.io", "tcproutes", candidates=("v1",)) == "v1"
        finally:
            close_api_client(api_client)


def _seed_route(emulator: KubeApiEmulator, namespace: str) -> list[Any]:
    emulator.put(copy.deepcopy(document("tcp-echo-all-v1.yaml", "VirtualService")), namespace=namespace)
    return list(
        stored(emulator, "virtualservices.networking.istio.io", "tcp-echo", namespace)["spec"]["tcp"][0]["route"]
    )


def _split(route: list[Any], canary: int) -> list[Any]:
    v1 = {**route[0], "weight": 100 - canary}
    v2 = {"destination": {**route[0]["destination"], "subset": "v2"}, "weight": canary}
    return [v1, v2]


def test_a_bare_422_after_a_concurrent_edit_is_a_conflict(
    emulator: KubeApiEmulator, kube: KubeApi, namespace: str, faults: FaultInjector
) -> None:
    route = _seed_route(emulator, namespace)
    # Someone edits the list after the controller read it ...
    live = stored(emulator, "virtualservices.networking.istio.io", "tcp-echo", namespace)
    live["spec"]["tcp"][0]["route"] = _split(route, 50)
    emulator.put(live, namespace=namespace)
    # ... and the server answers the guarded write as kube-apiserver does: 422, no cause, no "test failed".
    faults.add(verb="PATCH", resource="virtualservices", status=422, message=REAL_FAILED_TEST_MESSAGE, times=1)
    router = KubernetesTrafficRouter(kube)
    with pytest.raises(ConflictError, match="changed since it was read"):
        router.replace_route(
            kind="VirtualService",
            namespace=namespace,
            name="tcp-echo",
            pointer="/spec/tcp/0/route",
            expect=route,
            destinations=_split(route, 20),
        )
    assert stored(emulator, "virtualservices.networking.istio.io", "tcp-echo", namespace)["spec"]["tcp"][0][
        "route"
    ] == _split(route, 50), "someone else's edit stays"


def test_a_bare_422_when_the_route_is_gone_is_a_conflict(
    emulator: KubeApiEmulator, kube: KubeApi, namespace: str, faults: FaultInjector
) -> None:
    route = _seed_route(emulator, namespace)
    live = stored(emulator, "virtualservices.networking.istio.io", "tcp-echo", namespace)
    live["spec"]["tcp"] = []
    emulator.put(live, namespace=namespace)
    faults.add(verb="PATCH", resource="virtualservices", status=422, message=REAL_FAILED_TEST_MESSAGE, times=1)
    with pytest.raises(ConflictError, match="is gone"):
        KubernetesTrafficRouter(kube).replace_route(
            kind="VirtualService",
            namespace=namespace,
            name="tcp-echo",
            pointer="/spec/tcp/0/route",
            expect=route,
            destinations=_split(route, 20),
        )


def test_a_422_naming_a_field_with_the_list_unchanged_stays_an_error_naming_the_field(
    emulator: KubeApiEmulator, kube: KubeApi, namespace: str
) -> None:
    route = _seed_route(emulator, namespace)
    # A schema violation: weight is an int32 with minimum 0 in Istio's CRD (spec.tcp[].route[].weight).
    bad = _split(route, 20)
    bad[1]["weight"] = "twenty"
    with pytest.raises(ApiError) as raised:
        KubernetesTrafficRouter(kube).replace_route(
            kind="VirtualService",
            namespace=namespace,
            name="tcp-echo",
            pointer="/spec/tcp/0/route",
            expect=route,
            destinations=bad,
        )
    assert not isinstance(raised.value, ConflictError)
    assert raised.value.code == 422
    assert "spec.tcp[0].route[1].weight" in str(raised.value)


def test_kube_api_does_not_read_a_bare_422_as_a_conflict_by_itself() -> None:
    """The real body, byte for byte, through the adapter's error translation."""

    def failing() -> None:
        error = ApiException(status=422, reason="Unprocessable Entity")
        error.body = REAL_FAILED_TEST_BODY  # the client hands the body over decoded
        raise error

    api_client = client.ApiClient(client.Configuration())
    try:
        with pytest.raises(ApiError) as raised:
            KubeApi(api_client).call(failing, verb="patch", resource="virtualservices", group="g", namespace="n")
    finally:
        close_api_client(api_client)
    assert type(raised.value) is ApiError
    assert raised.value.code == 422
    assert REAL_FAILED_TEST_MESSAGE in str(raised.value)
    assert json.loads(REAL_FAILED_TEST_BODY)["details"] == {}
