"""The Kubernetes adapters behave the same against the emulator and against a real server's recorded answers.

Each scenario runs the product's adapters (``KubeApi``, ``KubernetesTrafficRouter``, ``CrdStatusStore``)
twice: against the emulator holding the same objects, and against ``ReplayServer`` answering with the
bodies a real kube-apiserver writes (``recorded.py`` names the source of each). What the adapters return
or raise must be the same on both, and what the product expects; the replay server also checks that the
adapters asked the same questions, in order, as they would of a cluster.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from canary_sandbox.kubeapi import KubeApiEmulator
from controller.adapters.kubernetes.api import MAX_BODY, KubeApi
from controller.adapters.kubernetes.status import CANARYPOLICIES, CrdStatusStore
from controller.adapters.kubernetes.traffic import KubernetesTrafficRouter
from controller.core.status import Phase, RolloutStatus
from controller.errors import CanaryError
from controller.ports import PolicyRef
from tests.contract.recorded import (
    FAILED_TEST_OP,
    NAMESPACE,
    PATH_NOT_FOUND,
    Conversation,
    Exchange,
    ReplayServer,
    conflict,
    invalid_weight,
    not_found,
    resource_list,
    stored,
)

ROOT = Path(__file__).resolve().parents[2]
ISTIO_DATA = (ROOT / "../shared/data/istio").resolve()
CANARY_CRD = ROOT / "helm" / "crds" / "canarypolicies.canaryctl.dev.yaml"
ISTIO = "/apis/networking.istio.io/v1"
VS_PATH = f"{ISTIO}/namespaces/{NAMESPACE}/virtualservices/tcp-echo"
GATEWAY = "/apis/gateway.networking.k8s.io"
CPOL_PATH = f"/apis/canaryctl.dev/v1alpha1/namespaces/{NAMESPACE}/canarypolicies/tcp-echo"
POINTER = "/spec/tcp/0/route"
VS_RESOURCES = resource_list(
    "networking.istio.io",
    "v1",
    [("virtualservices", "VirtualService", ["vs"], ["istio-io", "networking-istio-io"])],
)
# A Gateway CRD at v1 makes the group prefer v1 while the v1.2.1 TCPRoute CRD serves only v1alpha2.
GATEWAY_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "gateways.gateway.networking.k8s.io"},
    "spec": {
        "group": "gateway.networking.k8s.io",
        "names": {"plural": "gateways", "singular": "gateway", "kind": "Gateway", "listKind": "GatewayList"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            }
        ],
    },
}


def _document(file_name: str, kind: str) -> dict[str, Any]:
    docs = yaml.safe_load_all((ISTIO_DATA / file_name).read_text(encoding="utf-8"))
    found: dict[str, Any] = next(d for d in docs if d and d.get("kind") == kind)
    found["metadata"] = {"name": found["metadata"]["name"], "namespace": NAMESPACE}
    return found


VS = _document("tcp-echo-all-v1.yaml", "VirtualService")
TCP_ROUTE = _document("gateway-api-tcp-echo-all-v1.yaml", "TCPRoute")
# A server stores a custom resource with its schema's defaults filled in (apiextensions-apiserver
# structural defaulting); the v1.2.1 TCPRoute CRD defaults these (its ``default:`` values).
TCP_ROUTE_STORED = copy.deepcopy(TCP_ROUTE)
TCP_ROUTE_STORED["spec"]["parentRefs"][0].update(group="gateway.networking.k8s.io", kind="Gateway")
TCP_ROUTE_STORED["spec"]["rules"][0]["backendRefs"][0].update(group="", kind="Service", weight=1)
ROUTE = VS["spec"]["tcp"][0]["route"]
SPLIT = [
    {**copy.deepcopy(ROUTE[0]), "weight": 80},
    {"destination": {**copy.deepcopy(ROUTE[0]["destination"]), "subset": "v2"}, "weight": 20},
]


def _policy() -> dict[str, Any]:
    policy: dict[str, Any] = yaml.safe_load((ROOT / "policies" / "tcp-echo.yaml").read_text(encoding="utf-8"))
    policy["metadata"] = {"name": "tcp-echo", "namespace": NAMESPACE}
    return policy


def _with_route(obj: dict[str, Any], route: list[Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["spec"]["tcp"][0]["route"] = copy.deepcopy(route)
    return out


@dataclass
class Adapters:
    """The product's adapters over one API server."""

    api: KubeApi
    router: KubernetesTrafficRouter
    status: CrdStatusStore


@dataclass
class Scenario:
    """What the adapters do, the real server's side of it, the emulator's preparation and the outcome."""

    run: Callable[[Adapters], Any]
    script: list[Exchange]
    expected: Any
    prepare: Callable[[KubeApiEmulator], None] = lambda api: None


def _outcome(action: Callable[[], Any]) -> Any:
    """What an action returned, or the project error it raised (class, HTTP code, message)."""
    try:
        return {"returned": action()}
    except CanaryError as exc:
        return {"raised": type(exc).__name__, "code": getattr(exc, "code", None), "message": str(exc)}


def _read_vs(adapters: Adapters) -> Any:
    found = adapters.router.get(kind="VirtualService", namespace=NAMESPACE, name="tcp-echo")
    return found and found["spec"]["tcp"][0]["route"]


def _move_weights(adapters: Adapters) -> Any:
    return _outcome(
        lambda: adapters.router.replace_route(
            kind="VirtualService",
            namespace=NAMESPACE,
            name="tcp-echo",
            pointer=POINTER,
            expect=ROUTE,
            destinations=SPLIT,
        )
    ) | {"after": _read_vs(adapters)}


def _write_a_string_weight(adapters: Adapters) -> Any:
    bad = [{**copy.deepcopy(ROUTE[0]), "weight": "abc"}]
    return _outcome(
        lambda: adapters.router.replace_route(
            kind="VirtualService", namespace=NAMESPACE, name="tcp-echo", pointer=POINTER, expect=ROUTE, destinations=bad
        )
    )


def _read_tcp_route(adapters: Adapters) -> Any:
    found = adapters.router.get(kind="TCPRoute", namespace=NAMESPACE, name="tcp-echo")
    return found and {"apiVersion": found["apiVersion"], "rules": found["spec"]["rules"]}


POLICY_REF = PolicyRef(namespace=NAMESPACE, name="tcp-echo", source="crd")


def _write_status(adapters: Adapters) -> Any:
    before = adapters.status.load(policy=POLICY_REF)
    written = adapters.status.save(
        policy=POLICY_REF,
        status=RolloutStatus(phase=Phase.PROGRESSING, step_index=1, weight=20),
        version=before.version,
    )
    after = adapters.status.load(policy=POLICY_REF)
    return {
        "new version": written != before.version,
        "read back": [after.status.phase, after.status.step_index, after.status.weight],
        "version read back": after.version == written,
    }


def _replace_with_a_stale_version(adapters: Adapters) -> Any:
    stale = stored(_policy(), resource_version="2001")
    return _outcome(
        lambda: adapters.api.replace_obj(resource=CANARYPOLICIES, namespace=NAMESPACE, name="tcp-echo", body=stale)
    )


def _read_missing(adapters: Adapters) -> Any:
    return {
        "virtual service": adapters.router.get(kind="VirtualService", namespace=NAMESPACE, name="nope"),
        "status": _outcome(
            lambda: adapters.status.load(policy=PolicyRef(namespace=NAMESPACE, name="nope", source="crd"))
        ),
    }


def _edit_route_elsewhere(api: KubeApiEmulator) -> None:
    current = api.get("virtualservices", "tcp-echo", namespace=NAMESPACE)
    assert current is not None
    api.put(_with_route(current, [{**copy.deepcopy(ROUTE[0]), "weight": 100}]))


def _bump_policy(api: KubeApiEmulator) -> None:
    current = api.get("canarypolicies", "tcp-echo", namespace=NAMESPACE)
    assert current is not None
    current["metadata"]["labels"] = {"edited": "elsewhere"}
    api.put(current)


def _echo_status(request: Any) -> Any:
    """``PUT .../status`` answers with the stored object: the request's status, a new resourceVersion."""
    out = copy.deepcopy(request)
    out["metadata"]["resourceVersion"] = "2002"
    return out


_STATUS_STORED: dict[str, Any] = {}


def _remember(request: Any) -> Any:
    _STATUS_STORED["object"] = _echo_status(request)
    return _STATUS_STORED["object"]


SCENARIOS: dict[str, Scenario] = {
    "read a VirtualService": Scenario(
        run=_read_vs,
        script=[
            Exchange("GET", ISTIO, 200, VS_RESOURCES),
            Exchange("GET", VS_PATH, 200, stored(VS, resource_version="1001")),
        ],
        expected=ROUTE,
    ),
    "move weights with a guarded JSON patch": Scenario(
        run=_move_weights,
        script=[
            Exchange("GET", ISTIO, 200, VS_RESOURCES),
            Exchange("PATCH", VS_PATH, 200, stored(_with_route(VS, SPLIT), resource_version="1002", generation=2)),
            Exchange("GET", VS_PATH, 200, stored(_with_route(VS, SPLIT), resource_version="1002", generation=2)),
        ],
        expected={"returned": None, "after": SPLIT},
    ),
    "a concurrent edit of the list is a conflict (bare 422 of a failed test op)": Scenario(
        run=_move_weights,
        prepare=_edit_route_elsewhere,
        script=[
            Exchange("GET", ISTIO, 200, VS_RESOURCES),
            Exchange("PATCH", VS_PATH, 422, FAILED_TEST_OP),
            Exchange(
                "GET", VS_PATH, 200, stored(_with_route(VS, [{**ROUTE[0], "weight": 100}]), resource_version="1002")
            ),
            Exchange(
                "GET", VS_PATH, 200, stored(_with_route(VS, [{**ROUTE[0], "weight": 100}]), resource_version="1002")
            ),
        ],
        expected={
            "raised": "ConflictError",
            "code": 422,
            "message": f"VirtualService {NAMESPACE}/tcp-echo at {POINTER}: conflict: the destination list changed "
            "since it was read; nothing written",
            "after": [{**ROUTE[0], "weight": 100}],
        },
    ),
    "a schema violation stays an error naming the field": Scenario(
        run=_write_a_string_weight,
        script=[
            Exchange("GET", ISTIO, 200, VS_RESOURCES),
            Exchange("PATCH", VS_PATH, 422, invalid_weight("tcp-echo")),
            Exchange("GET", VS_PATH, 200, stored(VS, resource_version="1001")),
        ],
        expected={
            "raised": "ApiError",
            "code": 422,
            # The adapter keeps the Status message and its causes, cut at MAX_BODY characters.
            "message": f"patch virtualservices.networking.istio.io {NAMESPACE}/tcp-echo: HTTP 422: "
            + (
                'VirtualService.networking.istio.io "tcp-echo" is invalid: spec.tcp[0].route[0].weight: Invalid '
                'value: "string": spec.tcp[0].route[0].weight in body must be of type integer: "string" '
                '(spec.tcp[0].route[0].weight: Invalid value: "string": spec.tcp[0].route[0].weight in body must be '
                'of type integer: "string")'
            )[:MAX_BODY],
        },
    ),
    "TCPRoute found at the version that serves it, not the group's preferred one": Scenario(
        run=_read_tcp_route,
        script=[
            Exchange(
                "GET",
                f"{GATEWAY}/v1",
                200,
                resource_list("gateway.networking.k8s.io", "v1", [("gateways", "Gateway", [], [])]),
            ),
            Exchange("GET", f"{GATEWAY}/v1beta1", 404, PATH_NOT_FOUND),
            Exchange(
                "GET",
                f"{GATEWAY}/v1alpha2",
                200,
                resource_list(
                    "gateway.networking.k8s.io", "v1alpha2", [("tcproutes", "TCPRoute", [], ["gateway-api"])]
                ),
            ),
            Exchange(
                "GET",
                f"{GATEWAY}/v1alpha2/namespaces/{NAMESPACE}/tcproutes/tcp-echo",
                200,
                stored(TCP_ROUTE_STORED, resource_version="1003"),
            ),
        ],
        expected={"apiVersion": "gateway.networking.k8s.io/v1alpha2", "rules": TCP_ROUTE_STORED["spec"]["rules"]},
    ),
    "status written through the status subresource": Scenario(
        run=_write_status,
        script=[
            Exchange("GET", CPOL_PATH, 200, stored(_policy(), resource_version="2001")),
            Exchange("GET", CPOL_PATH, 200, stored(_policy(), resource_version="2001")),
            Exchange("PUT", f"{CPOL_PATH}/status", 200, _remember),
            Exchange("GET", CPOL_PATH, 200, lambda _: _STATUS_STORED["object"]),
        ],
        expected={"new version": True, "read back": ["Progressing", 1, 20], "version read back": True},
    ),
    "a replace with a stale resourceVersion is a 409 conflict": Scenario(
        run=_replace_with_a_stale_version,
        prepare=_bump_policy,
        script=[Exchange("PUT", CPOL_PATH, 409, conflict("canaryctl.dev", "canarypolicies", "tcp-echo"))],
        expected={
            "raised": "ConflictError",
            "code": 409,
            "message": f"update canarypolicies.canaryctl.dev {NAMESPACE}/tcp-echo: conflict: Operation cannot be "
            'fulfilled on canarypolicies.canaryctl.dev "tcp-echo": the object has been modified; please apply your '
            "changes to the latest version and try again",
        },
    ),
    "missing objects are 404s": Scenario(
        run=_read_missing,
        script=[
            Exchange("GET", ISTIO, 200, VS_RESOURCES),
            Exchange(
                "GET",
                f"{ISTIO}/namespaces/{NAMESPACE}/virtualservices/nope",
                404,
                not_found("networking.istio.io", "virtualservices", "nope"),
            ),
            Exchange("GET", ISTIO, 200, VS_RESOURCES),
            Exchange(
                "GET",
                f"/apis/canaryctl.dev/v1alpha1/namespaces/{NAMESPACE}/canarypolicies/nope",
                404,
                not_found("canaryctl.dev", "canarypolicies", "nope"),
            ),
        ],
        expected={
            "virtual service": None,
            "status": {
                "raised": "NotFoundError",
                "code": 404,
                "message": f"get canarypolicies.canaryctl.dev {NAMESPACE}/nope: not found "
                '(canarypolicies.canaryctl.dev "nope" not found)',
            },
        },
    ),
}


def _adapters(host: str) -> Iterator[Adapters]:
    configuration = k8s.Configuration()
    configuration.host = host
    api_client = k8s.ApiClient(configuration)
    api = KubeApi(api_client, timeout_seconds=10)
    try:
        yield Adapters(api, KubernetesTrafficRouter(api), CrdStatusStore(api))
    finally:
        closable: Any = api_client
        closable.close()
        closable.rest_client.pool_manager.clear()


def _on_emulator(scenario: Scenario) -> Any:
    crds: list[Path | dict[str, Any]] = [
        CANARY_CRD,
        ISTIO_DATA / "virtualservice-crd.yaml",
        ISTIO_DATA / "gateway.networking.k8s.io_tcproutes-v1.2.1.yaml",
        GATEWAY_CRD,
    ]
    with KubeApiEmulator(crds=crds) as api:
        api.load([VS, TCP_ROUTE, _policy()])
        scenario.prepare(api)
        for adapters in _adapters(api.url):
            return scenario.run(adapters)
    raise AssertionError("unreachable")


def _on_recorded(scenario: Scenario) -> tuple[Any, Conversation]:
    conversation = Conversation(copy.deepcopy(scenario.script))
    with ReplayServer(conversation) as server:
        for adapters in _adapters(server.url):
            return scenario.run(adapters), conversation
    raise AssertionError("unreachable")


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_adapters_behave_the_same_on_the_emulator_and_on_a_real_servers_answers(name: str) -> None:
    scenario = SCENARIOS[name]

    on_emulator = _on_emulator(scenario)
    on_recorded, conversation = _on_recorded(scenario)

    assert conversation.surprises == []
    assert conversation.finished, f"the adapters stopped after {conversation.position} of {len(conversation.exchanges)}"
    assert on_recorded == scenario.expected
    assert on_emulator == on_recorded
