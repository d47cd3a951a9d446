"""Properties of the weight math over generated VirtualServices and TCPRoutes."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.plan import SourceDocument, plan_rollout
from controller.core.policy import CanaryPolicy, Target
from controller.core.routes import current_weights, resolve_route, with_canary_weight
from controller.errors import RouteResolutionError
from tests.support.policies import policy_doc

HOSTS = ["svc", "svc.ns.svc.cluster.local", "db.example.com", "10.0.0.7", "other"]
SUBSETS = [None, "v1", "v2", "v3"]


@st.composite
def destination_lists(draw: st.DrawFn, tcproute: bool) -> list[dict[str, Any]]:
    keys = draw(
        st.lists(
            st.tuples(st.sampled_from(HOSTS), st.sampled_from([None] if tcproute else SUBSETS)),
            min_size=1,
            max_size=4,
            unique_by=lambda k: (k[0].split(".")[0], k[1]),
        )
    )
    entries = []
    for host, subset in keys:
        port = draw(st.none() | st.integers(1, 65535))
        weight = draw(st.none() | st.integers(0, 100))
        if tcproute:
            entry: dict[str, Any] = {"name": host.split(".")[0]}
            if port is not None:
                entry["port"] = port
        else:
            destination: dict[str, Any] = {"host": host}
            if subset:
                destination["subset"] = subset
            if port is not None:
                destination["port"] = {"number": port}
            entry = {"destination": destination}
        if weight is not None:
            entry["weight"] = weight
        entries.append(entry)
    return entries


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[str, dict[str, Any], Target, int]:
    tcproute = draw(st.booleans())
    protocol = "tcp" if tcproute else draw(st.sampled_from(["tcp", "tls", "http"]))
    routes = []
    for _ in range(draw(st.integers(1, 3))):
        route: dict[str, Any] = {}
        if tcproute:
            route["backendRefs"] = draw(destination_lists(True))
        else:
            route["route"] = draw(destination_lists(False))
            if draw(st.booleans()):
                route["match"] = [{"port": p} for p in draw(st.lists(st.integers(1, 65535), max_size=3))]
        routes.append(route)
    index = draw(st.integers(0, len(routes) - 1))
    key = "backendRefs" if tcproute else "route"
    chosen = routes[index][key]
    stable_entry = draw(st.sampled_from(chosen))
    if tcproute:
        stable = {"host": stable_entry["name"]}
    else:
        stable = {"host": stable_entry["destination"]["host"]}
        if "subset" in stable_entry["destination"]:
            stable["subset"] = stable_entry["destination"]["subset"]
    others = [e for e in chosen if e is not stable_entry]
    if len(others) > 0 and draw(st.booleans()):
        existing = draw(st.sampled_from(others))
        canary = (
            {"host": existing["name"]}
            if tcproute
            else {
                "host": existing["destination"]["host"],
                **({"subset": existing["destination"]["subset"]} if "subset" in existing["destination"] else {}),
            }
        )
    else:
        canary = {"host": "brand-new-canary"}
    if not tcproute and "subset" not in stable:
        # Without a subset the stable host may match several entries; give the route no subsets for it.
        for entry in chosen:
            if entry is not stable_entry and entry["destination"]["host"].split(".")[0] == stable["host"].split(".")[0]:
                entry["destination"]["host"] = "unrelated"
    if not tcproute and "subset" not in canary and canary["host"] != "brand-new-canary":
        for entry in chosen:
            if entry["destination"]["host"].split(".")[0] == canary["host"].split(".")[0] and entry is not stable_entry:
                entry["destination"].pop("subset", None)
    spec: dict[str, Any] = {"rules": routes} if tcproute else {"hosts": ["svc"], protocol: routes, "extra": {"keep": 1}}
    if not tcproute and protocol != "tcp":
        spec["tcp"] = [{"route": [{"destination": {"host": "untouched"}, "weight": 100}]}]
    obj: dict[str, Any] = {
        "apiVersion": "gateway.networking.k8s.io/v1" if tcproute else "networking.istio.io/v1",
        "kind": "TCPRoute" if tcproute else "VirtualService",
        "metadata": {"name": "svc", "namespace": "ns", "labels": {"a": "b"}},
        "spec": spec,
    }
    target = Target.model_validate(
        {
            ("tcpRoute" if tcproute else "virtualService"): {"name": "svc"},
            "route": {"index": index, **({} if tcproute else {"protocol": protocol})},
            "stable": stable,
            "canary": canary,
        }
    )
    return obj["kind"], obj, target, draw(st.integers(0, 100))


def _strip_route(obj: dict[str, Any], protocol: str, index: int, tcproute: bool) -> dict[str, Any]:
    copied = copy.deepcopy(obj)
    if tcproute:
        copied["spec"]["rules"][index]["backendRefs"] = None
    else:
        copied["spec"][protocol][index]["route"] = None
    return copied


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_written_weights_obey_the_rules(scenario: tuple[str, dict[str, Any], Target, int]) -> None:
    kind, obj, target, weight = scenario
    tcproute = kind == "TCPRoute"
    before = copy.deepcopy(obj)
    problem = ""
    try:
        resolved = resolve_route(obj, kind=kind, namespace="ns", target=target, where="o")  # type: ignore[arg-type]
    except RouteResolutionError as exc:
        problem = exc.problems[0]
    if problem:
        # Only ambiguity among generated look-alike destinations may stop resolution.
        assert "matches" in problem
        return
    held = sum(w.weight for w in current_weights(obj, resolved) if w.role == "other")
    if 100 - weight - held < 0:
        with pytest.raises(RouteResolutionError, match="would get"):
            with_canary_weight(obj, resolved, target, weight, where="o")
        return
    written = with_canary_weight(obj, resolved, target, weight, where="o")
    assert obj == before, "input mutated"
    ref = resolved.ref
    rewritten = resolve_route(written, kind=resolved.kind, namespace="ns", target=target, where="o")
    weights = current_weights(written, rewritten)
    assert sum(w.weight for w in weights) == 100
    assert [w.weight for w in weights if w.role == "canary"] == [weight]
    key = "backendRefs" if tcproute else "route"
    old_entries = obj["spec"]["rules" if tcproute else ref.protocol][ref.index][key]
    new_entries = written["spec"]["rules" if tcproute else ref.protocol][ref.index][key]
    for i, entry in enumerate(old_entries):
        if i not in {resolved.stable, resolved.canary}:
            assert new_entries[i] == entry, "another destination changed"
    assert _strip_route(written, ref.protocol, ref.index, tcproute) == _strip_route(
        obj, ref.protocol, ref.index, tcproute
    )


@settings(max_examples=100, deadline=None)
@given(scenarios())
def test_rollback_is_the_original_object(scenario: tuple[str, dict[str, Any], Target, int]) -> None:
    _, obj, target, weight = scenario
    doc = policy_doc(target=target.model_dump(exclude_none=True), steps=[weight], namespace="ns")
    policy = CanaryPolicy.model_validate(doc)
    try:
        plan = plan_rollout(policy, [SourceDocument(obj, "gen.yaml:1")])
    except RouteResolutionError:
        return
    assert plan.rollback == obj
    assert plan.rollback is not obj
    assert [step.weight for step in plan.steps] == [weight]
