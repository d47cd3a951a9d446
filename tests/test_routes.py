"""Route resolution and weight math, one rule per test, on small hand-written objects."""

from __future__ import annotations

from typing import Any

import pytest

from controller.core.policy import Target
from controller.core.routes import (
    current_weights,
    hosts_match,
    resolve_route,
    with_canary_weight,
)
from controller.errors import RouteResolutionError


def _target(
    stable: dict[str, Any],
    canary: dict[str, Any],
    route: dict[str, Any] | None = None,
    kind: str = "virtualService",
) -> Target:
    data: dict[str, Any] = {kind: {"name": "svc"}, "stable": stable, "canary": canary}
    if route is not None:
        data["route"] = route
    return Target.model_validate(data)


def _dest(host: str, subset: str | None = None, port: int | None = None, weight: int | None = None) -> dict[str, Any]:
    destination: dict[str, Any] = {"host": host}
    if subset:
        destination["subset"] = subset
    if port:
        destination["port"] = {"number": port}
    entry: dict[str, Any] = {"destination": destination}
    if weight is not None:
        entry["weight"] = weight
    return entry


def _vs(**lists: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "svc", "namespace": "ns"},
        "spec": {"hosts": ["svc"], **lists},
    }


def _tcp(route: list[dict[str, Any]], ports: list[int] | None = None, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"route": route, **extra}
    if ports is not None:
        entry["match"] = [{"port": port} for port in ports]
    return entry


V1 = {"host": "svc", "subset": "v1"}
V2 = {"host": "svc", "subset": "v2"}


def _resolve(obj: dict[str, Any], target: Target, kind: str = "VirtualService") -> tuple[str, int, int, int | None]:
    resolved = resolve_route(obj, kind=kind, namespace="ns", target=target, where="obj")  # type: ignore[arg-type]
    return resolved.ref.protocol, resolved.ref.index, resolved.stable, resolved.canary


def _weights_at(obj: dict[str, Any], target: Target, weight: int, kind: str = "VirtualService") -> list[Any]:
    resolved = resolve_route(obj, kind=kind, namespace="ns", target=target, where="obj")  # type: ignore[arg-type]
    written = with_canary_weight(obj, resolved, target, weight, where="obj")
    key = "backendRefs" if kind == "TCPRoute" else "route"
    routes = written["spec"]["rules" if kind == "TCPRoute" else resolved.ref.protocol]
    return [d.get("weight") for d in routes[resolved.ref.index][key]]


class TestSelectors:
    def test_without_selectors_the_route_holding_the_stable_destination_is_chosen(self) -> None:
        obj = _vs(tcp=[_tcp([_dest("other")], [1]), _tcp([_dest("svc", "v1")], [2])])
        assert _resolve(obj, _target(V1, V2)) == ("tcp", 1, 0, None)

    def test_port_selector_matches_any_match_entry(self) -> None:
        obj = _vs(tcp=[_tcp([_dest("svc", "v1")], [80, 81]), _tcp([_dest("svc", "v1")], [3306, 3307])])
        assert _resolve(obj, _target(V1, V2, {"port": 3307}))[:2] == ("tcp", 1)

    def test_all_given_selectors_must_hold(self) -> None:
        obj = _vs(tcp=[_tcp([_dest("svc", "v1")], [80]), _tcp([_dest("svc", "v1")], [80])])
        assert _resolve(obj, _target(V1, V2, {"port": 80, "index": 1}))[:2] == ("tcp", 1)
        with pytest.raises(RouteResolutionError, match=r"no tcp routes match \(port=81, index=1\)"):
            _resolve(obj, _target(V1, V2, {"port": 81, "index": 1}))

    def test_same_port_in_several_routes_is_ambiguous_until_index_is_given(self) -> None:
        by_gateway = _tcp([_dest("svc", "v1")], None, match=[{"port": 80, "gateways": ["mesh"]}])
        by_labels = _tcp([_dest("svc", "v1")], None, match=[{"port": 80, "sourceLabels": {"app": "a"}}])
        obj = _vs(tcp=[by_gateway, by_labels])
        with pytest.raises(RouteResolutionError) as caught:
            _resolve(obj, _target(V1, V2, {"port": 80}))
        assert "2 tcp routes match (port=80); exactly one must (seen: tcp[0] ports=[80] " in caught.value.problems[0]
        assert _resolve(obj, _target(V1, V2, {"port": 80, "index": 1}))[:2] == ("tcp", 1)

    def test_name_selects_an_http_route(self) -> None:
        obj = _vs(http=[{"name": "a", "route": [_dest("svc", "v1")]}, {"name": "b", "route": [_dest("svc", "v1")]}])
        assert _resolve(obj, _target(V1, V2, {"protocol": "http", "name": "b"}))[:2] == ("http", 1)

    def test_protocol_chooses_the_list_and_leaves_others_alone(self) -> None:
        obj = _vs(tcp=[_tcp([_dest("svc", "v1")])], tls=[_tcp([_dest("svc", "v1")], [443])])
        assert _resolve(obj, _target(V1, V2, {"protocol": "tls"}))[:2] == ("tls", 0)
        written = with_canary_weight(
            obj,
            resolve_route(
                obj,
                kind="VirtualService",
                namespace="ns",
                target=_target(V1, V2, {"protocol": "tls"}),
                where="o",
            ),
            _target(V1, V2, {"protocol": "tls"}),
            20,
            where="o",
        )
        assert written["spec"]["tcp"] == obj["spec"]["tcp"]

    def test_no_candidate_lists_every_route_seen(self) -> None:
        obj = _vs(tcp=[_tcp([_dest("a", port=1, weight=60), _dest("b", "x")], [10])])
        with pytest.raises(RouteResolutionError) as caught:
            _resolve(obj, _target(V1, V2))
        assert caught.value.problems == [
            "obj: no tcp routes match (containing the stable destination svc/v1); exactly one must "
            "(seen: tcp[0] ports=[10] destinations=[a:1 weight 60, b/x weight -])"
        ]

    def test_a_selected_route_without_the_stable_destination_is_an_error(self) -> None:
        obj = _vs(tcp=[_tcp([_dest("other")], [80])])
        with pytest.raises(RouteResolutionError, match=r"tcp\[0\]: the stable destination svc/v1 is not in this route"):
            _resolve(obj, _target(V1, V2, {"port": 80}))

    @pytest.mark.parametrize("spec", [{"tcp": "oops"}, {"tcp": None}, None])
    def test_malformed_objects_give_errors_not_crashes(self, spec: Any) -> None:
        obj = {"kind": "VirtualService", "spec": spec}
        with pytest.raises(RouteResolutionError):
            _resolve(obj, _target(V1, V2))


class TestHosts:
    @pytest.mark.parametrize(
        ("a", "b", "same"),
        [
            ("tcp-echo", "tcp-echo", True),
            ("tcp-echo", "tcp-echo.ns.svc.cluster.local", True),
            ("tcp-echo.ns.svc.cluster.local", "tcp-echo", True),
            ("tcp-echo", "tcp-echo.other.svc.cluster.local", False),
            ("tcp-echo", "tcp-echo.ns", False),
            ("192.168.28.134", "192.168.28.134", True),
            ("db.example.com", "db.example.com", True),
            ("db", "db.example.com", False),
        ],
    )
    def test_short_names_equal_their_fqdn_in_the_objects_namespace(self, a: str, b: str, same: bool) -> None:
        assert hosts_match(a, b, "ns") is same

    def test_subset_must_match_when_given(self) -> None:
        obj = _vs(tcp=[_tcp([_dest("svc", "v0"), _dest("svc.ns.svc.cluster.local", "v1")])])
        assert _resolve(obj, _target(V1, V2)) == ("tcp", 0, 1, None)

    def test_a_host_without_subset_matching_several_destinations_is_ambiguous(self) -> None:
        obj = _vs(tcp=[_tcp([_dest("svc", "v1", weight=50), _dest("svc", "v0", weight=50)])])
        with pytest.raises(RouteResolutionError, match="stable destination svc matches 2 destinations"):
            _resolve(obj, _target({"host": "svc"}, {"host": "svc-canary"}))

    def test_a_destination_matching_both_belongs_to_the_more_precise_description(self) -> None:
        target = _target({"host": "svc"}, {"host": "svc", "subset": "v2"})
        obj = _vs(tcp=[_tcp([_dest("svc", weight=70), _dest("svc", "v2", weight=30)])])
        assert _resolve(obj, target) == ("tcp", 0, 0, 1)
        assert _weights_at(obj, target, 50) == [50, 50]

    def test_port_tells_destinations_apart_when_both_sides_give_one(self) -> None:
        obj = _vs(tcp=[_tcp([_dest("svc", port=9000, weight=50), _dest("svc", port=9001, weight=50)])])
        assert _resolve(obj, _target({"host": "svc", "port": 9001}, {"host": "svc-canary"})) == (
            "tcp",
            0,
            1,
            None,
        )

    def test_tcproute_backends_in_other_namespaces_use_their_own_namespace(self) -> None:
        obj = {
            "kind": "TCPRoute",
            "spec": {
                "rules": [
                    {
                        "backendRefs": [
                            {"name": "svc", "namespace": "elsewhere", "port": 1},
                            {"name": "svc", "port": 1},
                        ]
                    }
                ]
            },
        }
        target = _target({"host": "svc"}, {"host": "svc-v2"}, kind="tcpRoute")
        assert _resolve(obj, target, "TCPRoute") == ("tcp", 0, 1, None)
        fqdn = _target({"host": "svc.elsewhere.svc.cluster.local"}, {"host": "svc-v2"}, kind="tcpRoute")
        assert _resolve(obj, fqdn, "TCPRoute") == ("tcp", 0, 0, None)


class TestWeights:
    def test_canary_is_added_with_the_stable_port(self) -> None:
        obj = _vs(tcp=[_tcp([_dest("svc", "v1", port=9000)])])
        written = with_canary_weight(
            obj,
            resolve_route(obj, kind="VirtualService", namespace="ns", target=_target(V1, V2), where="o"),
            _target(V1, V2),
            20,
            where="o",
        )
        assert written["spec"]["tcp"][0]["route"] == [
            {"destination": {"host": "svc", "subset": "v1", "port": {"number": 9000}}, "weight": 80},
            {"destination": {"host": "svc", "port": {"number": 9000}, "subset": "v2"}, "weight": 20},
        ]

    def test_the_policy_port_wins_for_an_added_canary(self) -> None:
        obj = _vs(tcp=[_tcp([_dest("svc", "v1", port=9000)])])
        target = _target(V1, {**V2, "port": 9100})
        resolved = resolve_route(obj, kind="VirtualService", namespace="ns", target=target, where="o")
        written = with_canary_weight(obj, resolved, target, 0, where="o")
        assert written["spec"]["tcp"][0]["route"][1]["destination"]["port"] == {"number": 9100}

    def test_a_lone_destination_without_weight_counts_as_100_in_a_virtualservice(self) -> None:
        obj = _vs(tcp=[_tcp([_dest("svc", "v1")])])
        resolved = resolve_route(obj, kind="VirtualService", namespace="ns", target=_target(V1, V2), where="o")
        assert [w.weight for w in current_weights(obj, resolved)] == [100]

    def test_a_backend_without_weight_counts_as_1_in_a_tcproute(self) -> None:
        obj = {
            "kind": "TCPRoute",
            "spec": {"rules": [{"backendRefs": [{"name": "svc", "port": 1}, {"name": "side", "port": 1}]}]},
        }
        target = _target({"host": "svc"}, {"host": "svc-v2"}, kind="tcpRoute")
        resolved = resolve_route(obj, kind="TCPRoute", namespace="ns", target=target, where="o")
        assert [w.weight for w in current_weights(obj, resolved)] == [1, 1]
        assert _weights_at(obj, target, 20, "TCPRoute") == [79, None, 20]

    def test_other_destinations_keep_their_weight_and_stable_takes_the_rest(self) -> None:
        obj = _vs(
            tcp=[
                _tcp(
                    [
                        _dest("svc", "v0", weight=10),
                        _dest("svc", "v1", weight=60),
                        _dest("svc", "v2", weight=30),
                    ]
                )
            ]
        )
        assert _weights_at(obj, _target(V1, V2), 0) == [10, 90, 0]
        assert _weights_at(obj, _target(V1, V2), 50) == [10, 40, 50]
        assert _weights_at(obj, _target(V1, V2), 90) == [10, 0, 90]

    def test_weights_that_did_not_sum_to_100_are_normalised_on_the_first_write(self) -> None:
        obj = _vs(tcp=[_tcp([_dest("svc", "v1", weight=30), _dest("svc", "v2", weight=30)])])
        assert _weights_at(obj, _target(V1, V2), 0) == [100, 0]

    def test_stable_going_negative_names_the_other_destinations(self) -> None:
        obj = _vs(tcp=[_tcp([_dest("svc", "v1", weight=40), _dest("svc", "v3", port=1, weight=60)])])
        with pytest.raises(RouteResolutionError) as caught:
            _weights_at(obj, _target(V1, V2), 50)
        assert caught.value.problems == [
            "obj: tcp[0]: at canary weight 50 the stable destination would get -10: the other destinations "
            "already hold 60 (svc:1/v3 weight 60)"
        ]

    def test_destination_fields_other_than_weight_are_kept(self) -> None:
        entry = {**_dest("svc", "v1", weight=100), "headers": {"request": {"set": {"x": "1"}}}}
        obj = _vs(http=[{"name": "r", "route": [entry], "timeout": "5s"}])
        target = _target(V1, V2, {"protocol": "http"})
        resolved = resolve_route(obj, kind="VirtualService", namespace="ns", target=target, where="o")
        written = with_canary_weight(obj, resolved, target, 30, where="o")
        assert written["spec"]["http"][0]["route"][0] == {**entry, "weight": 70}
        assert written["spec"]["http"][0]["timeout"] == "5s"
        assert obj["spec"]["http"][0]["route"][0]["weight"] == 100, "the input must not be mutated"

    def test_tcproute_canary_copies_the_stable_backend_kind_and_namespace(self) -> None:
        stable = {"group": "", "kind": "Service", "name": "svc", "namespace": "ns", "port": 7}
        obj = {"kind": "TCPRoute", "spec": {"rules": [{"backendRefs": [stable]}]}}
        target = _target({"host": "svc"}, {"host": "svc-v2"}, kind="tcpRoute")
        resolved = resolve_route(obj, kind="TCPRoute", namespace="ns", target=target, where="o")
        written = with_canary_weight(obj, resolved, target, 20, where="o")
        assert written["spec"]["rules"][0]["backendRefs"][1] == {
            "group": "",
            "kind": "Service",
            "namespace": "ns",
            "name": "svc-v2",
            "port": 7,
            "weight": 20,
        }
