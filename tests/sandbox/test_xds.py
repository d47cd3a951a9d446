"""Translating tcp routes into an ingress gateway's Envoy config, as istiod does (pure, no Envoy)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from canary_sandbox.scenario import (
    GATEWAY_PORT,
    VARIANTS,
    Variant,
    crd_documents,
    manifest_documents,
    scenario_endpoints,
)
from canary_sandbox.xds import (
    Address,
    Backend,
    GatewayConfig,
    TranslationError,
    cluster_name,
    discovery_response,
    listener_name,
    translate,
)
from controller.core.plan import Plan, SourceDocument, plan_rollout
from controller.core.policy import CanaryPolicy
from tests.support.paths import REPO, SHARED_ISTIO

YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
V1: Address = ("127.0.0.1", 41001)
V2: Address = ("127.0.0.1", 41002)
V3: Address = ("127.0.0.1", 41003)
ECHO_V1 = "outbound|9000|v1|tcp-echo.default.svc.cluster.local"
ECHO_V2 = "outbound|9000|v2|tcp-echo.default.svc.cluster.local"

# file -> (gateway port, backends with endpoints, expected cluster weights of the first route matching the port)
VIRTUAL_SERVICES: dict[str, tuple[int, list[Backend], dict[str, int]]] = {
    "tcp-echo-all-v1.yaml": (
        31400,
        [Backend("tcp-echo", 9000, "v1"), Backend("tcp-echo", 9000, "v2")],
        {ECHO_V1: 100},
    ),
    "tcp-echo-20-v2.yaml": (
        31400,
        [Backend("tcp-echo", 9000, "v1"), Backend("tcp-echo", 9000, "v2")],
        {ECHO_V1: 80, ECHO_V2: 20},
    ),
    "vs-01-mysql-tcp-80-20-external-dns.yaml": (
        3306,
        [Backend("docker-mysql-v5.hung.org.hk", 3306, "v5"), Backend("docker-mysql-v5.hung.org.hk", 3306, "v8")],
        {"outbound|3306|v5|docker-mysql-v5.hung.org.hk": 80, "outbound|3306|v8|docker-mysql-v5.hung.org.hk": 20},
    ),
    "vs-06-argo-rollouts-docs-http-tls-tcp-host-split.yaml": (
        8020,
        [Backend("rollouts-demo-stable", 8020), Backend("rollouts-demo-canary", 8020)],
        {"outbound|8020||rollouts-demo-stable.default.svc.cluster.local": 100},
    ),
    "vs-09-kiali-tcp-traffic-shifting-wizard.yaml": (
        9080,
        [Backend("reviews", 9080, "v1"), Backend("reviews", 9080, "v2"), Backend("reviews", 9080, "v3")],
        {
            "outbound|9080|v1|reviews.default.svc.cluster.local": 50,
            "outbound|9080|v2|reviews.default.svc.cluster.local": 50,
        },
    ),
    "vs-17-mysql-tcp-ip-host-no-match.yaml": (
        3306,
        [Backend("mysql-server", 3306)],
        {"outbound|3306||mysql-server.default.svc.cluster.local": 100},
    ),
}

# (file, route name) -> (backends, expected weights); gateway port as in the file's listener
TCP_ROUTES: dict[tuple[str, str], tuple[list[Backend], dict[str, int]]] = {
    ("gateway-api-tcp-echo-all-v1.yaml", "tcp-echo"): (
        [Backend("tcp-echo-v1", 9000), Backend("tcp-echo-v2", 9000)],
        {"outbound|9000||tcp-echo-v1.default.svc.cluster.local": 100},
    ),
    ("gateway-api-tcp-echo-20-v2.yaml", "tcp-echo"): (
        [Backend("tcp-echo-v1", 9000), Backend("tcp-echo-v2", 9000)],
        {
            "outbound|9000||tcp-echo-v1.default.svc.cluster.local": 80,
            "outbound|9000||tcp-echo-v2.default.svc.cluster.local": 20,
        },
    ),
    ("tcproute-01-conformance-weighted-routing.yaml", "tcp-weighted-route"): (
        [Backend(f"tcp-backend-v{i}", 3000) for i in (1, 2, 3)],
        {
            "outbound|3000||tcp-backend-v1.gateway-conformance-infra.svc.cluster.local": 70,
            "outbound|3000||tcp-backend-v2.gateway-conformance-infra.svc.cluster.local": 30,
        },
    ),
    ("tcproute-02-basic-tcp.yaml", "tcp-app-1"): (
        [Backend("my-foo-service", 6000), Backend("my-bar-service", 6000)],
        {"outbound|6000||my-foo-service.default.svc.cluster.local": 100},
    ),
    ("tcproute-02-basic-tcp.yaml", "tcp-app-2"): (
        [Backend("my-foo-service", 6000), Backend("my-bar-service", 6000)],
        {"outbound|6000||my-bar-service.default.svc.cluster.local": 100},
    ),
    ("tcproute-03-destination-port-matching-mesh.yaml", "destination-port-matching-example"): (
        [Backend("my-service", 8080)],
        {"outbound|8080||my-service.default.svc.cluster.local": 100},
    ),
}


def _documents(path: Path, kind: str | None = None) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    docs = [d for d in yaml.load_all(text, Loader=YAML_LOADER) if isinstance(d, dict)]
    return [d for d in docs if kind is None or d.get("kind") == kind]


def _shared(file: str, kind: str) -> dict[str, Any]:
    return _documents(SHARED_ISTIO / file, kind)[0]


def _endpoints(backends: list[Backend]) -> dict[Backend, Address]:
    return {backend: ("127.0.0.1", 41000 + i) for i, backend in enumerate(backends)}


def _proxy(config: GatewayConfig) -> dict[str, Any]:
    (listener,) = config.listeners
    (chain,) = listener["filter_chains"]
    (tcp_filter,) = chain["filters"]
    assert tcp_filter["name"] == "envoy.filters.network.tcp_proxy"
    proxy: dict[str, Any] = tcp_filter["typed_config"]
    return proxy


def _programmed(config: GatewayConfig) -> dict[str, int]:
    """The split as Envoy would read it from the listener (not from ``weights``)."""
    proxy = _proxy(config)
    if "cluster" in proxy:
        assert "weighted_clusters" not in proxy
        return {proxy["cluster"]: 100}
    return {c["name"]: c["weight"] for c in proxy["weighted_clusters"]["clusters"]}


def test_every_tcp_route_file_in_the_shared_data_is_covered() -> None:
    with_tcp_vs, with_tcp_route = set(), set()
    for path in SHARED_ISTIO.glob("*.yaml"):
        for doc in _documents(path):
            if doc.get("kind") == "VirtualService" and (doc.get("spec") or {}).get("tcp"):
                with_tcp_vs.add(path.name)
            if doc.get("kind") == "TCPRoute":
                with_tcp_route.add((path.name, doc["metadata"]["name"]))
    assert with_tcp_vs == set(VIRTUAL_SERVICES)
    assert with_tcp_route == set(TCP_ROUTES)


@pytest.mark.parametrize("file", sorted(VIRTUAL_SERVICES))
def test_every_shared_virtualservice_with_a_tcp_route_translates_with_its_weights(file: str) -> None:
    port, backends, expected = VIRTUAL_SERVICES[file]
    rules = _documents(SHARED_ISTIO / file, "DestinationRule")
    config = translate(
        _shared(file, "VirtualService"),
        endpoints=_endpoints(backends),
        destination_rules=rules or None,
        gateway_port=port,
        listener_address=("127.0.0.1", 15000 + port % 1000),
    )
    assert config.weights == expected
    assert _programmed(config) == expected
    (listener,) = config.listeners
    assert listener["name"] == listener_name(port)
    assert listener["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 15000 + port % 1000}
    # every backend gets its cluster, routed to or not (a weight change rewrites only the listener)
    assert {c["name"] for c in config.clusters} >= set(expected)
    assert len(config.clusters) == len(backends)


@pytest.mark.parametrize(("file", "name"), sorted(TCP_ROUTES))
def test_every_shared_tcproute_translates_with_its_weights(file: str, name: str) -> None:
    backends, expected = TCP_ROUTES[(file, name)]
    route = next(d for d in _documents(SHARED_ISTIO / file, "TCPRoute") if d["metadata"]["name"] == name)
    config = translate(route, endpoints=_endpoints(backends))
    assert config.weights == expected
    assert _programmed(config) == expected


def test_weight_zero_is_dropped_and_a_single_destination_is_a_plain_cluster() -> None:
    vs = _shared("tcp-echo-20-v2.yaml", "VirtualService")
    vs["spec"]["tcp"][0]["route"][1]["weight"] = 0
    vs["spec"]["tcp"][0]["route"][0]["weight"] = 100
    endpoints = {Backend("tcp-echo", 9000, "v1"): V1, Backend("tcp-echo", 9000, "v2"): V2}
    proxy = _proxy(translate(vs, endpoints=endpoints))
    assert proxy["cluster"] == proxy["stat_prefix"] == ECHO_V1
    assert "weighted_clusters" not in proxy
    assert proxy["max_connect_attempts"] == 1


def test_weighted_clusters_keep_route_order_and_use_istios_stat_prefix() -> None:
    vs = _shared("tcp-echo-20-v2.yaml", "VirtualService")
    vs["metadata"]["namespace"] = "shop"
    vs["spec"]["tcp"][0]["route"].reverse()
    endpoints = {Backend("tcp-echo", 9000, "v1"): V1, Backend("tcp-echo", 9000, "v2"): V2}
    proxy = _proxy(translate(vs, endpoints=endpoints))
    assert proxy["stat_prefix"] == "tcp-echo.shop"
    assert proxy["weighted_clusters"]["clusters"] == [
        {"name": "outbound|9000|v2|tcp-echo.shop.svc.cluster.local", "weight": 20},
        {"name": "outbound|9000|v1|tcp-echo.shop.svc.cluster.local", "weight": 80},
    ]


def _vs_with_routes(routes: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "multi", "namespace": "ns"},
        "spec": {"hosts": ["*"], "tcp": routes},
    }


def _to(subset: str) -> list[dict[str, Any]]:
    return [{"destination": {"host": "svc", "port": {"number": 7000}, "subset": subset}}]


MULTI_ENDPOINTS = {Backend("svc", 7000, s): V1 for s in ("a", "b", "c", "d")}


@pytest.mark.parametrize(
    ("gateway_port", "subset"),
    [(31400, "b"), (31403, "b"), (31401, "a"), (31402, "c"), (9999, "c")],
)
def test_the_first_tcp_route_matching_the_gateway_port_is_programmed(gateway_port: int, subset: str) -> None:
    vs = _vs_with_routes(
        [
            {"match": [{"port": 31401}], "route": _to("a")},
            {"match": [{"port": 31403}, {"port": 31400}], "route": _to("b")},
            {"match": [{"sourceLabels": {"app": "y"}}], "route": _to("c")},  # no port: any port
            {"route": _to("d")},  # shadowed by the route above
        ]
    )
    config = translate(vs, endpoints=MULTI_ENDPOINTS, gateway_port=gateway_port)
    assert config.weights == {cluster_name("svc", 7000, subset, namespace="ns"): 100}


def test_no_tcp_route_for_the_gateway_port_is_an_error() -> None:
    vs = _vs_with_routes([{"match": [{"port": 31401}], "route": _to("a")}])
    with pytest.raises(TranslationError, match="no tcp route matches port 31400"):
        translate(vs, endpoints=MULTI_ENDPOINTS, gateway_port=31400)


def test_a_subset_no_destinationrule_defines_gets_no_cluster() -> None:
    vs = _shared("tcp-echo-20-v2.yaml", "VirtualService")
    rule = _shared("tcp-echo-all-v1.yaml", "DestinationRule")
    rule["spec"]["subsets"] = [s for s in rule["spec"]["subsets"] if s["name"] == "v1"]
    endpoints = {Backend("tcp-echo", 9000, "v1"): V1, Backend("tcp-echo", 9000, "v2"): V2}
    with pytest.raises(TranslationError, match=r"no endpoints for cluster outbound\|9000\|v2\|"):
        translate(vs, endpoints=endpoints, destination_rules=[rule])
    config = translate(_shared("tcp-echo-all-v1.yaml", "VirtualService"), endpoints=endpoints, destination_rules=[rule])
    assert [c["name"] for c in config.clusters] == [ECHO_V1]


def test_a_destination_without_endpoints_or_positive_weight_is_an_error() -> None:
    vs = _shared("tcp-echo-20-v2.yaml", "VirtualService")
    with pytest.raises(TranslationError, match="no endpoints for cluster"):
        translate(vs, endpoints={Backend("tcp-echo", 9000, "v1"): V1})
    for destination in vs["spec"]["tcp"][0]["route"]:
        destination["weight"] = 0
    endpoints = {Backend("tcp-echo", 9000, "v1"): V1, Backend("tcp-echo", 9000, "v2"): V2}
    with pytest.raises(TranslationError, match="no destination has a positive weight"):
        translate(vs, endpoints=endpoints)


def test_tcproute_backends_default_to_weight_one_and_other_namespaces_expand_there() -> None:
    route = _shared("gateway-api-tcp-echo-all-v1.yaml", "TCPRoute")
    route["metadata"]["namespace"] = "front"
    route["spec"]["rules"][0]["backendRefs"].append({"name": "tcp-echo-v2", "namespace": "back", "port": 9000})
    endpoints = {Backend("tcp-echo-v1", 9000): V1, Backend("tcp-echo-v2.back.svc.cluster.local", 9000): V2}
    config = translate(route, endpoints=endpoints)
    assert config.weights == {
        "outbound|9000||tcp-echo-v1.front.svc.cluster.local": 1,
        "outbound|9000||tcp-echo-v2.back.svc.cluster.local": 1,
    }


def test_clusters_are_static_with_a_short_timeout_and_nothing_that_hides_refusals() -> None:
    endpoints = {Backend("tcp-echo", 9000, "v1"): V1, Backend("tcp-echo", 9000, "v2"): V2}
    config = translate(_shared("tcp-echo-20-v2.yaml", "VirtualService"), endpoints=endpoints)
    assert [c["name"] for c in config.clusters] == [ECHO_V1, ECHO_V2]
    for cluster, address in zip(config.clusters, (V1, V2), strict=True):
        assert cluster["@type"] == "type.googleapis.com/envoy.config.cluster.v3.Cluster"
        assert cluster["type"] == "STATIC"
        assert cluster["connect_timeout"] == "0.25s"
        assert not {"outlier_detection", "health_checks", "retry_policy"} & set(cluster)
        (group,) = cluster["load_assignment"]["endpoints"]
        (endpoint,) = group["lb_endpoints"]
        assert endpoint["endpoint"]["address"]["socket_address"] == {"address": address[0], "port_value": address[1]}
    response = discovery_response(config.clusters, version="7")
    assert response == {"version_info": "7", "resources": config.clusters}


def test_translation_does_not_modify_its_input() -> None:
    vs = _shared("tcp-echo-20-v2.yaml", "VirtualService")
    before = copy.deepcopy(vs)
    translate(vs, endpoints={Backend("tcp-echo", 9000, "v1"): V1, Backend("tcp-echo", 9000, "v2"): V2})
    assert vs == before


# ---------------------------------------------------------------- the shipped scenario, against Istio's own files

POLICIES: dict[Variant, Path] = {
    "istio": REPO / "policies" / "tcp-echo.yaml",
    "gateway-api": REPO / "policies" / "tcp-echo-gateway-api.yaml",
}
ISTIO_FILES: dict[Variant, tuple[str, str, str]] = {
    "istio": ("VirtualService", "tcp-echo-all-v1.yaml", "tcp-echo-20-v2.yaml"),
    "gateway-api": ("TCPRoute", "gateway-api-tcp-echo-all-v1.yaml", "gateway-api-tcp-echo-20-v2.yaml"),
}


def _plan(variant: Variant, documents: list[dict[str, Any]]) -> Plan:
    policy = CanaryPolicy.model_validate(yaml.safe_load(POLICIES[variant].read_text(encoding="utf-8")))
    return plan_rollout(policy, [SourceDocument(doc, f"doc {i}") for i, doc in enumerate(documents)])


def _step(plan: Plan, weight: int) -> dict[str, Any]:
    return next(step.object for step in plan.steps if step.weight == weight)


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_scenario_route_is_istios_all_v1_route(variant: Variant) -> None:
    kind, all_v1, _ = ISTIO_FILES[variant]
    ours = next(d for d in manifest_documents(variant) if d["kind"] == kind)
    assert ours["spec"] == _shared(all_v1, kind)["spec"]
    assert ours["apiVersion"] == _shared(all_v1, kind)["apiVersion"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_seed_policy_plans_the_scenario_into_what_istios_files_program(variant: Variant) -> None:
    kind, all_v1, twenty = ISTIO_FILES[variant]
    plan = _plan(variant, manifest_documents(variant))
    assert [step.weight for step in plan.steps] == [0, 20, 50, 100]
    endpoints = scenario_endpoints(variant, v1=V1, v2=V2)
    rules = [d for d in manifest_documents(variant) if d["kind"] == "DestinationRule"] or None

    def program(obj: dict[str, Any]) -> GatewayConfig:
        return translate(obj, endpoints=endpoints, destination_rules=rules, gateway_port=GATEWAY_PORT)

    # weight 0 writes [v1 100, v2 0]; Istio's all-v1 file has v1 alone: Envoy gets the same config
    assert program(_step(plan, 0)) == program(_shared(all_v1, kind))
    assert program(_step(plan, 20)) == program(_shared(twenty, kind))
    v1_cluster, v2_cluster = (c["name"] for c in program(_step(plan, 0)).clusters)
    assert program(_step(plan, 0)).weights == {v1_cluster: 100}
    assert program(_step(plan, 20)).weights == {v1_cluster: 80, v2_cluster: 20}
    assert program(_step(plan, 50)).weights == {v1_cluster: 50, v2_cluster: 50}
    assert program(_step(plan, 100)).weights == {v2_cluster: 100}
    # and planning Istio's own file writes the same objects step by step
    istio_plan = _plan(variant, [_shared(all_v1, kind)])
    assert [step.object["spec"] for step in istio_plan.steps] == [step.object["spec"] for step in plan.steps]


def test_the_istio_scenario_keeps_the_samples_gateway_destinationrule_and_workloads() -> None:
    ours = {(d["kind"], d["metadata"]["name"]): d for d in manifest_documents("istio")}
    assert ours[("Gateway", "tcp-echo-gateway")]["spec"] == _shared("tcp-echo-all-v1.yaml", "Gateway")["spec"]
    assert ours[("DestinationRule", "tcp-echo")]["spec"] == _shared("tcp-echo-all-v1.yaml", "DestinationRule")["spec"]
    sample = {d["metadata"]["name"]: d for d in _documents(SHARED_ISTIO / "tcp-echo-services.yaml")}
    for name in ("tcp-echo", "tcp-echo-v1", "tcp-echo-v2"):
        kind = "Service" if name == "tcp-echo" else "Deployment"
        assert ours[(kind, name)]["spec"] == sample[name]["spec"]
    for name in ("tcp-echo-v1", "tcp-echo-v2"):
        conditions = {c["type"]: c["status"] for c in ours[("Deployment", name)]["status"]["conditions"]}
        assert conditions["Available"] == "True"


def test_the_gateway_api_scenario_keeps_the_samples_gateway_and_services() -> None:
    ours = {(d["kind"], d["metadata"]["name"]): d for d in manifest_documents("gateway-api")}
    sample = {
        (d["kind"], d["metadata"]["name"]): d for d in _documents(SHARED_ISTIO / "gateway-api-tcp-echo-all-v1.yaml")
    }
    for key in (("Gateway", "tcp-echo-gateway"), ("Service", "tcp-echo-v1"), ("Service", "tcp-echo-v2")):
        assert ours[key]["spec"] == sample[key]["spec"]
    assert {k for k in ours if k[0] == "Deployment"} == {("Deployment", "tcp-echo-v1"), ("Deployment", "tcp-echo-v2")}


CRD_COPIES = {
    "virtualservices.networking.istio.io.yaml": "virtualservice-crd.yaml",
    "destinationrules.networking.istio.io.yaml": "destinationrule-crd.yaml",
    "tcproutes.gateway.networking.k8s.io.yaml": "gateway.networking.k8s.io_tcproutes.yaml",
}


@pytest.mark.parametrize("copy_name", sorted(CRD_COPIES))
def test_the_packaged_crds_are_unchanged_copies_of_the_real_ones(copy_name: str) -> None:
    packaged = (REPO / "sandbox" / "canary_sandbox" / "scenario" / "crds" / copy_name).read_text(encoding="utf-8")
    header, _, body = packaged.partition("\napiVersion: ")
    assert all(line.startswith("# ") for line in header.splitlines())
    assert "apiVersion: " + body == (SHARED_ISTIO / CRD_COPIES[copy_name]).read_text(encoding="utf-8")


def test_each_variant_ships_a_crd_for_every_custom_kind_it_uses() -> None:
    for variant in VARIANTS:
        served = {
            (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
            for crd in crd_documents(variant)
            for version in crd["spec"]["versions"]
        }
        custom = {(d["apiVersion"], d["kind"]) for d in manifest_documents(variant) if "." in d["apiVersion"]}
        assert custom <= served, custom - served
