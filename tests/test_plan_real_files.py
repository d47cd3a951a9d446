"""plan over every VirtualService and TCPRoute file in shared/data/istio, with the expected outcome."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.adapters.yaml_documents import read_yaml_file
from controller.core.plan import Plan, SourceDocument, plan_rollout
from controller.core.policy import CanaryPolicy
from controller.errors import RouteResolutionError, TargetError, TargetNotFoundError
from tests.support.paths import REPO, SHARED_ISTIO
from tests.support.policies import policy_doc

VS = "virtualService"
TR = "tcpRoute"


def _policy(
    kind: str,
    name: str,
    stable: dict[str, Any],
    canary: dict[str, Any],
    route: dict[str, Any] | None = None,
    namespace: str | None = None,
    steps: list[int] | None = None,
) -> CanaryPolicy:
    target: dict[str, Any] = {kind: {"name": name}, "stable": stable, "canary": canary}
    if route:
        target["route"] = route
    return CanaryPolicy.model_validate(policy_doc(target=target, namespace=namespace, steps=steps))


def _sources(file: str) -> list[SourceDocument]:
    documents, findings = read_yaml_file(SHARED_ISTIO / file)
    assert findings == []
    return [SourceDocument(d.data, d.where) for d in documents]


def _route(obj: dict[str, Any], plan: Plan) -> list[Any]:
    ref = plan.resolved.ref
    if plan.kind == "TCPRoute":
        return list(obj["spec"]["rules"][ref.index]["backendRefs"])
    return list(obj["spec"][ref.protocol][ref.index]["route"])


def _weights(plan: Plan) -> list[list[int | None]]:
    return [[d.get("weight") for d in _route(step.object, plan)] for step in plan.steps]


def _outside_route(obj: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """The object with the selected route's destination list blanked out."""
    copied = copy.deepcopy(obj)
    ref = plan.resolved.ref
    if plan.kind == "TCPRoute":
        copied["spec"]["rules"][ref.index]["backendRefs"] = None
    else:
        copied["spec"][ref.protocol][ref.index]["route"] = None
    return copied


SEED = {"host": "tcp-echo", "subset": "v1", "port": 9000}
SEED_CANARY = {"host": "tcp-echo", "subset": "v2", "port": 9000}

# (file, policy, expected weights per step [stable, canary, ...] in route order) — all succeed.
SUCCESSES: list[tuple[str, CanaryPolicy, tuple[str, int], list[list[int | None]]]] = [
    (
        "tcp-echo-all-v1.yaml",
        _policy(VS, "tcp-echo", SEED, SEED_CANARY, {"protocol": "tcp", "port": 31400}),
        ("tcp", 0),
        [[100, 0], [80, 20], [50, 50], [0, 100]],
    ),
    (
        "tcp-echo-20-v2.yaml",
        _policy(VS, "tcp-echo", SEED, SEED_CANARY),
        ("tcp", 0),
        [[100, 0], [80, 20], [50, 50], [0, 100]],
    ),
    (
        "gateway-api-tcp-echo-all-v1.yaml",
        _policy(TR, "tcp-echo", {"host": "tcp-echo-v1"}, {"host": "tcp-echo-v2"}),
        ("tcp", 0),
        [[100, 0], [80, 20], [50, 50], [0, 100]],
    ),
    (
        "gateway-api-tcp-echo-20-v2.yaml",
        _policy(TR, "tcp-echo", {"host": "tcp-echo-v1", "port": 9000}, {"host": "tcp-echo-v2", "port": 9000}),
        ("tcp", 0),
        [[100, 0], [80, 20], [50, 50], [0, 100]],
    ),
    (
        "tcproute-01-conformance-weighted-routing.yaml",
        _policy(
            TR,
            "tcp-weighted-route",
            {"host": "tcp-backend-v1"},
            {"host": "tcp-backend-v2"},
            namespace="gateway-conformance-infra",
        ),
        ("tcp", 0),
        [[100, 0, 0], [80, 20, 0], [50, 50, 0], [0, 100, 0]],
    ),
    (
        "tcproute-02-basic-tcp.yaml",
        _policy(TR, "tcp-app-2", {"host": "my-bar-service"}, {"host": "my-bar-service-v2"}),
        ("tcp", 0),
        [[100, 0], [80, 20], [50, 50], [0, 100]],
    ),
    (
        "tcproute-03-destination-port-matching-mesh.yaml",
        _policy(
            TR,
            "destination-port-matching-example",
            {"host": "my-service"},
            {"host": "my-service-v2"},
            {"index": 0},
        ),
        ("tcp", 0),
        [[100, 0], [80, 20], [50, 50], [0, 100]],
    ),
    (
        "vs-01-mysql-tcp-80-20-external-dns.yaml",
        _policy(
            VS,
            "mysql-virt-svc",
            {"host": "docker-mysql-v5.hung.org.hk", "subset": "v5"},
            {"host": "docker-mysql-v5.hung.org.hk", "subset": "v8"},
            {"port": 3306},
        ),
        ("tcp", 0),
        [[100, 0], [80, 20], [50, 50], [0, 100]],
    ),
    (
        "vs-06-argo-rollouts-docs-http-tls-tcp-host-split.yaml",
        _policy(
            VS,
            "rollouts-demo-vsvc1",
            {"host": "rollouts-demo-stable"},
            {"host": "rollouts-demo-canary"},
            {"port": 8020},
        ),
        ("tcp", 0),
        [[100, 0], [80, 20], [50, 50], [0, 100]],
    ),
    (
        "vs-06-argo-rollouts-docs-http-tls-tcp-host-split.yaml",
        _policy(
            VS,
            "rollouts-demo-vsvc1",
            {"host": "rollouts-demo-stable"},
            {"host": "rollouts-demo-canary"},
            {"protocol": "tls", "port": 443},
        ),
        ("tls", 0),
        [[100, 0], [80, 20], [50, 50], [0, 100]],
    ),
    (
        "vs-06-argo-rollouts-docs-http-tls-tcp-host-split.yaml",
        _policy(
            VS,
            "rollouts-demo-vsvc1",
            {"host": "rollouts-demo-stable"},
            {"host": "rollouts-demo-canary"},
            {"protocol": "http", "name": "http-primary"},
        ),
        ("http", 0),
        [[100, 0], [80, 20], [50, 50], [0, 100]],
    ),
    (
        "vs-08-argo-rollouts-tls-only-host-split.yaml",
        _policy(
            VS,
            "istio-host-split-tls-vsvc",
            {"host": "istio-host-split-tls-stable"},
            {"host": "istio-host-split-tls-canary"},
            {"protocol": "tls", "port": 3000},
        ),
        ("tls", 0),
        [[100, 0], [80, 20], [50, 50], [0, 100]],
    ),
    (
        "vs-09-kiali-tcp-traffic-shifting-wizard.yaml",
        _policy(
            VS,
            "virtual-service-reviews",
            {"host": "reviews", "subset": "v1"},
            {"host": "reviews", "subset": "v2"},
        ),
        ("tcp", 0),
        [[100, 0], [80, 20], [50, 50], [0, 100]],
    ),
    (
        "vs-11-bookinfo-reviews-80-20-http.yaml",
        _policy(
            VS,
            "reviews",
            {"host": "reviews", "subset": "v1"},
            {"host": "reviews", "subset": "v2"},
            {"protocol": "http"},
        ),
        ("http", 0),
        [[100, 0], [80, 20], [50, 50], [0, 100]],
    ),
    (
        "vs-11-bookinfo-reviews-80-20-http.yaml",
        _policy(
            VS,
            "reviews",
            {"host": "reviews", "subset": "v2"},
            {"host": "reviews", "subset": "v3"},
            {"protocol": "http"},
            steps=[0, 10, 20],
        ),
        ("http", 0),
        [[80, 20, 0], [80, 10, 10], [80, 0, 20]],
    ),
    (
        "vs-13-istio-io-egress-gateway-tls-passthrough.yaml",
        _policy(
            VS,
            "direct-cnn-through-egress-gateway",
            {"host": "edition.cnn.com"},
            {"host": "edition-v2.cnn.com"},
            {"protocol": "tls"},
        ),
        ("tls", 1),
        [[100, 0], [80, 20], [50, 50], [0, 100]],
    ),
    (
        "vs-14-istio-http-gateways-match-via-egressgateway.yaml",
        _policy(
            VS,
            "route-via-egressgateway",
            {"host": "istio-egressgateway"},
            {"host": "istio-egressgateway-canary"},
            {"protocol": "http"},
            namespace="testns",
        ),
        ("http", 0),
        [[100, 0], [80, 20], [50, 50], [0, 100]],
    ),
    (
        "vs-17-mysql-tcp-ip-host-no-match.yaml",
        _policy(VS, "mysql-virt-svc", {"host": "mysql-server"}, {"host": "mysql-server-v2"}),
        ("tcp", 0),
        [[100, 0], [80, 20], [50, 50], [0, 100]],
    ),
    (
        "vs-18-istio-http-sourcelabels-headers.yaml",
        _policy(
            VS,
            "headers-route",
            {"host": "c-weighted.extsvc.com", "subset": "v1"},
            {"host": "c-weighted.extsvc.com", "subset": "v3"},
            {"protocol": "http"},
            namespace="testns",
        ),
        ("http", 1),
        [[100, 0], [80, 20], [50, 50], [0, 100]],
    ),
]


@pytest.mark.parametrize(
    ("file", "policy", "route", "weights"), SUCCESSES, ids=[f"{s[0]}-{s[2][0]}" for s in SUCCESSES]
)
def test_plan_succeeds_on_real_files(
    file: str, policy: CanaryPolicy, route: tuple[str, int], weights: list[list[int]]
) -> None:
    sources = _sources(file)
    plan = plan_rollout(policy, sources)
    assert (plan.resolved.ref.protocol, plan.resolved.ref.index) == route
    assert _weights(plan) == weights
    original = next(
        s.data for s in sources if s.data.get("kind") == plan.kind and s.data["metadata"]["name"] == plan.name
    )
    assert plan.rollback == original
    for step in plan.steps:
        assert _outside_route(step.object, plan) == _outside_route(original, plan)
        # Destinations that were there keep every field but weight.
        for before, after in zip(_route(original, plan), _route(step.object, plan), strict=False):
            assert {k: v for k, v in before.items() if k != "weight"} == {
                k: v for k, v in after.items() if k != "weight"
            }


def test_seed_plan_at_20_equals_istios_own_80_20_file() -> None:
    policy_file = REPO / "policies" / "tcp-echo.yaml"
    policy = CanaryPolicy.model_validate(yaml.safe_load(policy_file.read_text()))
    plan = plan_rollout(policy, _sources("tcp-echo-all-v1.yaml"))
    istio_20 = next(s.data for s in _sources("tcp-echo-20-v2.yaml") if s.data["kind"] == "VirtualService")
    at_20 = next(step.object for step in plan.steps if step.weight == 20)
    assert at_20["spec"] == istio_20["spec"]
    assert at_20 == istio_20


def test_gateway_api_plan_at_20_equals_the_gateway_api_80_20_file() -> None:
    policy_file = REPO / "policies" / "tcp-echo-gateway-api.yaml"
    policy = CanaryPolicy.model_validate(yaml.safe_load(policy_file.read_text()))
    plan = plan_rollout(policy, _sources("gateway-api-tcp-echo-all-v1.yaml"))
    expected = next(s.data for s in _sources("gateway-api-tcp-echo-20-v2.yaml") if s.data["kind"] == "TCPRoute")
    assert next(step.object for step in plan.steps if step.weight == 20) == expected


# (file, policy, error class, text the message must contain)
FAILURES: list[tuple[str, CanaryPolicy, type[TargetError], str]] = [
    (
        "tcproute-01-conformance-weighted-routing.yaml",
        _policy(
            TR,
            "tcp-weighted-route",
            {"host": "tcp-backend-v1"},
            {"host": "tcp-backend-v3"},
            namespace="gateway-conformance-infra",
        ),
        RouteResolutionError,
        "at canary weight 100 the stable destination would get -30: the other destinations already hold 30 "
        "(tcp-backend-v2:3000 weight 30)",
    ),
    (
        "tcproute-01-conformance-weighted-routing.yaml",
        _policy(TR, "tcp-weighted-route", {"host": "tcp-backend-v1"}, {"host": "tcp-backend-v2"}),
        TargetNotFoundError,
        "TCPRoute default/tcp-weighted-route: not found; found in namespace gateway-conformance-infra",
    ),
    (
        "tcproute-02-basic-tcp.yaml",
        _policy(TR, "tcp-app-1", {"host": "my-bar-service"}, {"host": "my-bar-service-v2"}),
        RouteResolutionError,
        "no rules match (containing the stable destination my-bar-service); exactly one must "
        "(seen: tcp[0] destinations=[my-foo-service:6000 weight -])",
    ),
    (
        "vs-06-argo-rollouts-docs-http-tls-tcp-host-split.yaml",
        _policy(
            VS,
            "rollouts-demo-vsvc1",
            {"host": "rollouts-demo-stable"},
            {"host": "rollouts-demo-canary"},
            {"port": 443},
        ),
        RouteResolutionError,
        "no tcp routes match (port=443); exactly one must (seen: tcp[0] ports=[8020]",
    ),
    (
        "vs-08-argo-rollouts-tls-only-host-split.yaml",
        _policy(
            VS,
            "istio-host-split-tls-vsvc",
            {"host": "istio-host-split-tls-stable"},
            {"host": "istio-host-split-tls-canary"},
        ),
        RouteResolutionError,
        "no tcp routes match (containing the stable destination istio-host-split-tls-stable); exactly one must "
        "(seen: none)",
    ),
    (
        "vs-09-kiali-tcp-traffic-shifting-wizard.yaml",
        _policy(
            VS,
            "virtual-service-reviews",
            {"host": "reviews", "subset": "v1"},
            {"host": "reviews", "subset": "v2"},
            {"port": 9080},
        ),
        RouteResolutionError,
        "no tcp routes match (port=9080); exactly one must (seen: tcp[0] ports=any",
    ),
    (
        "vs-11-bookinfo-reviews-80-20-http.yaml",
        _policy(
            VS,
            "reviews",
            {"host": "reviews", "subset": "v2"},
            {"host": "reviews", "subset": "v3"},
            {"protocol": "http"},
        ),
        RouteResolutionError,
        "http[0]: at canary weight 50 the stable destination would get -30: the other destinations already "
        "hold 80 (reviews/v1 weight 80)",
    ),
    (
        "vs-13-istio-io-egress-gateway-tls-passthrough.yaml",
        _policy(
            VS,
            "direct-cnn-through-egress-gateway",
            {"host": "edition.cnn.com"},
            {"host": "edition-v2.cnn.com"},
            {"protocol": "tls", "port": 443},
        ),
        RouteResolutionError,
        "2 tls routes match (port=443); exactly one must (seen: tls[0] ports=[443] destinations=["
        "istio-egressgateway.istio-system.svc.cluster.local:443/cnn weight -]; tls[1] ports=[443] "
        "destinations=[edition.cnn.com:443 weight 100])",
    ),
    (
        "vs-13-istio-io-egress-gateway-tls-passthrough.yaml",
        _policy(
            VS,
            "direct-cnn-through-egress-gateway",
            {"host": "istio-egressgateway"},
            {"host": "istio-egressgateway-v2"},
            {"protocol": "tls", "index": 0},
        ),
        RouteResolutionError,
        "tls[0]: the stable destination istio-egressgateway is not in this route",
    ),
    (
        "vs-18-istio-http-sourcelabels-headers.yaml",
        _policy(
            VS,
            "headers-route",
            {"host": "c-weighted.extsvc.com"},
            {"host": "c-weighted-v3.extsvc.com"},
            {"protocol": "http"},
            namespace="testns",
        ),
        RouteResolutionError,
        "2 http routes match (containing the stable destination c-weighted.extsvc.com)",
    ),
    (
        "tcp-echo.yaml",
        _policy(VS, "tcp-echo", SEED, SEED_CANARY),
        TargetNotFoundError,
        "VirtualService default/tcp-echo: not found (seen: Deployment tcp-echo, Service tcp-echo)",
    ),
]


@pytest.mark.parametrize(
    ("file", "policy", "error", "text"), FAILURES, ids=[f"{f[0]}-{i}" for i, f in enumerate(FAILURES)]
)
def test_plan_fails_clearly_on_real_files(file: str, policy: CanaryPolicy, error: type[TargetError], text: str) -> None:
    with pytest.raises(error) as caught:
        plan_rollout(policy, _sources(file))
    assert any(text in problem for problem in caught.value.problems), caught.value.problems
    assert all(str(SHARED_ISTIO / file) in problem or "not found" in problem for problem in caught.value.problems)


def test_every_virtualservice_and_tcproute_file_is_covered() -> None:
    covered = {entry[0] for entry in SUCCESSES} | {entry[0] for entry in FAILURES}
    files = {
        path.name
        for path in SHARED_ISTIO.glob("*.yaml")
        if any(
            isinstance(doc, dict) and doc.get("kind") in {"VirtualService", "TCPRoute"}
            for doc in yaml.safe_load_all(path.read_text())
        )
    }
    assert files
    assert files <= covered, sorted(files - covered)


@functools.cache
def _crd_validator(crd_file: Path, version: str) -> Any:
    import jsonschema  # noqa: PLC0415 - test-only

    crd = yaml.safe_load(crd_file.read_text())
    schema = next(v for v in crd["spec"]["versions"] if v["name"] == version)["schema"]["openAPIV3Schema"]
    return jsonschema.Draft7Validator(schema)


@pytest.mark.parametrize(
    ("file", "policy", "route", "weights"), SUCCESSES, ids=[f"{s[0]}-{s[2][0]}" for s in SUCCESSES]
)
def test_every_planned_object_satisfies_its_crd_schema(
    file: str, policy: CanaryPolicy, route: tuple[str, int], weights: list[list[int]]
) -> None:
    plan = plan_rollout(policy, _sources(file))
    crd_file = SHARED_ISTIO / (
        "gateway.networking.k8s.io_tcproutes.yaml" if plan.kind == "TCPRoute" else "virtualservice-crd.yaml"
    )
    for step in plan.steps:
        version = step.object["apiVersion"].split("/")[1]
        errors = list(_crd_validator(crd_file, version).iter_errors(step.object))
        assert errors == [], [e.message for e in errors]
