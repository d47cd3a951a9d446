"""Route resolution and weight math for VirtualServices and Gateway API TCPRoutes.

The rules (README, "Route resolution"):

* The route list is ``spec.<protocol>`` of a VirtualService, or ``spec.rules`` of a TCPRoute.
* Selectors (``port``, ``index``, ``name``) narrow the candidates; all given must hold. A route matches
  ``port`` if any of its match entries has that port. With no selector, the candidates are the routes
  whose destinations include the stable destination. Exactly one must remain.
* Hosts match when equal, or when a short name equals the first label of an in-cluster FQDN in the
  object's namespace (``tcp-echo`` = ``tcp-echo.<ns>.svc.cluster.local``). A subset must match when the
  policy gives one; a port must match when both the policy and the destination give one.
* The stable destination must be in the selected route. A missing canary is appended, copying the stable
  destination's port unless the policy gives one.
* At weight ``w``: canary = w, stable = 100 - w - (sum of the other destinations' weights), others
  unchanged. A destination without ``weight`` counts as 100 when it is alone in a VirtualService route,
  0 otherwise; in a TCPRoute it counts as 1 (the Gateway API default).
* Nothing outside the selected route's destination list changes; rollback restores the original object.

Every function here is pure. Inputs are plain mappings as parsed from YAML or JSON; nothing is mutated.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from controller.core.display import plain, shown
from controller.core.policy import Destination, RouteSelector, Target
from controller.errors import RouteResolutionError

Kind = Literal["VirtualService", "TCPRoute"]
CLUSTER_DOMAIN = "cluster.local"
KIND_GROUPS: dict[str, str] = {
    "VirtualService": "networking.istio.io",
    "TCPRoute": "gateway.networking.k8s.io",
}


@dataclass(frozen=True)
class RouteRef:
    """Where the selected route sits: the protocol list (``tcp`` for a TCPRoute) and the index in it."""

    protocol: str
    index: int

    def __str__(self) -> str:
        return f"{self.protocol}[{self.index}]"


@dataclass(frozen=True)
class ResolvedRoute:
    """The selected route and the positions of the stable and canary destinations in it."""

    kind: Kind
    ref: RouteRef
    stable: int
    canary: int | None


@dataclass(frozen=True)
class DestinationWeight:
    """A destination of the selected route, with its effective weight."""

    description: str
    weight: int
    role: Literal["stable", "canary", "other"]


# What the API servers accept as a weight (checked by ``weight_problems``):
# * Istio VirtualService: ``weight`` is ``type: integer, format: int32`` in the CRD (istio/api
#   kubernetes/customresourcedefinitions.gen.yaml), and istiod's validation webhook refuses a negative one
#   (istio/istio pkg/config/validation, ``validateWeight``: "weight %d < 0").
# * Gateway API TCPRoute: backendRef ``weight`` is ``type: integer, format: int32, minimum: 0,
#   maximum: 1000000`` (gateway.networking.k8s.io_tcproutes.yaml).
# Both CRDs declare every destination entry ``type: object``.
WEIGHT_RANGES: dict[str, tuple[int, int]] = {
    "VirtualService": (0, 2**31 - 1),
    "TCPRoute": (0, 1_000_000),
}
# How many routes an error message lists before it only counts the rest.
MAX_LISTED_ROUTES = 10


def canonical_host(host: str, namespace: str, domain: str = CLUSTER_DOMAIN) -> str:
    """Expand a short name to its in-cluster FQDN in ``namespace``; other hosts are returned as is."""
    if "." in host or ":" in host:
        return host
    return f"{host}.{namespace}.svc.{domain}"


def hosts_match(a: str, b: str, namespace: str) -> bool:
    """True when two hosts name the same service as seen from ``namespace``."""
    return canonical_host(a, namespace) == canonical_host(b, namespace)


def route_list_path(kind: Kind, protocol: str) -> tuple[str, str]:
    """Path of the route list inside the object."""
    return ("spec", "rules") if kind == "TCPRoute" else ("spec", protocol)


def _routes(obj: Mapping[str, Any], kind: Kind, protocol: str, where: str) -> list[Any]:
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        raise RouteResolutionError([f"{where}: spec is missing or not a mapping"])
    key = route_list_path(kind, protocol)[1]
    routes = spec.get(key, [])
    if routes is None:
        routes = []
    if not isinstance(routes, list):
        raise RouteResolutionError([f"{where}: spec.{key} is not a list"])
    return routes


def _destinations(route: Any, kind: Kind) -> list[Any]:
    if not isinstance(route, Mapping):
        return []
    entries = route.get("backendRefs" if kind == "TCPRoute" else "route") or []
    return entries if isinstance(entries, list) else []


def _dest_fields(entry: Any, kind: Kind) -> tuple[str | None, str | None, int | None, str | None]:
    """(host, subset, port, namespace) of a destination entry; None where absent or malformed."""
    if not isinstance(entry, Mapping):
        return None, None, None, None
    if kind == "TCPRoute":
        name = entry.get("name")
        port = entry.get("port")
        ns = entry.get("namespace")
        return (
            name if isinstance(name, str) else None,
            None,
            port if isinstance(port, int) and not isinstance(port, bool) else None,
            ns if isinstance(ns, str) else None,
        )
    destination = entry.get("destination")
    if not isinstance(destination, Mapping):
        return None, None, None, None
    host = destination.get("host")
    subset = destination.get("subset")
    port_block = destination.get("port")
    number = port_block.get("number") if isinstance(port_block, Mapping) else None
    return (
        host if isinstance(host, str) else None,
        subset if isinstance(subset, str) else None,
        number if isinstance(number, int) and not isinstance(number, bool) else None,
        None,
    )


def _describe_entry(entry: Any, kind: Kind) -> str:
    host, subset, port, ns = _dest_fields(entry, kind)
    text = plain(host) if host else "<no host>"
    if ns:
        text = f"{plain(ns)}/{text}"
    if port is not None:
        text += f":{port}"
    if subset is not None:
        text += f"/{plain(subset)}"
    weight = entry.get("weight") if isinstance(entry, Mapping) else None
    return f"{text} weight {_show_value(weight) if weight is not None else '-'}"


def _show_value(value: Any) -> str:
    """A value from the target object, printable on one line."""
    if isinstance(value, str):
        return shown(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return "null" if value is None else f"a {type(value).__name__}"


def _matches(entry: Any, kind: Kind, want: Destination, namespace: str) -> bool:
    host, subset, port, entry_namespace = _dest_fields(entry, kind)
    if host is None:
        return False
    # A TCPRoute backendRef may name another namespace; its short name is relative to that one.
    if canonical_host(want.host, namespace) != canonical_host(host, entry_namespace or namespace):
        return False
    if want.subset is not None and subset != want.subset:
        return False
    return not (want.port is not None and port is not None and port != want.port)


def _match_ports(route: Any) -> list[int]:
    if not isinstance(route, Mapping):
        return []
    matches = route.get("match") or []
    if not isinstance(matches, list):
        return []
    return [m["port"] for m in matches if isinstance(m, Mapping) and isinstance(m.get("port"), int)]


def _route_summary(route: Any, index: int, kind: Kind, protocol: str) -> str:
    parts = [f"{protocol}[{index}]"]
    if kind == "VirtualService":
        if protocol == "http" and isinstance(route, Mapping) and route.get("name"):
            name = route["name"]
            parts.append(f"name={plain(name) if isinstance(name, str) else _show_value(name)}")
        ports = _match_ports(route)
        parts.append(f"ports={ports}" if ports else "ports=any")
    destinations = ", ".join(_describe_entry(e, kind) for e in _destinations(route, kind))
    parts.append(f"destinations=[{destinations}]")
    return " ".join(parts)


def _specificity(want: Destination) -> int:
    return int(want.subset is not None) + int(want.port is not None)


def _hits(destinations: Sequence[Any], kind: Kind, target: Target, role: str, namespace: str) -> list[int]:
    """Positions of the destinations that are ``role`` (stable or canary).

    A destination matching both stable and canary (``host`` vs ``host`` + ``subset``) belongs to the
    one the policy describes more precisely.
    """
    want, rival = (target.stable, target.canary) if role == "stable" else (target.canary, target.stable)
    hits = []
    for i, entry in enumerate(destinations):
        if not _matches(entry, kind, want, namespace):
            continue
        if _matches(entry, kind, rival, namespace) and _specificity(rival) > _specificity(want):
            continue
        hits.append(i)
    return hits


def _find(destinations: Sequence[Any], kind: Kind, target: Target, role: str, namespace: str, where: str) -> int | None:
    hits = _hits(destinations, kind, target, role, namespace)
    want = target.stable if role == "stable" else target.canary
    if len(hits) > 1:
        seen = "; ".join(_describe_entry(destinations[i], kind) for i in hits)
        raise RouteResolutionError(
            [
                f"{where}: the {role} destination {want.describe()} matches {len(hits)} destinations "
                f"({seen}); give its subset or port"
            ]
        )
    return hits[0] if hits else None


def resolve_route(obj: Mapping[str, Any], *, kind: Kind, namespace: str, target: Target, where: str) -> ResolvedRoute:
    """Select the route the rollout acts on.

    Args:
        obj: the target object (a VirtualService or TCPRoute) as a mapping.
        kind: its kind.
        namespace: the object's namespace, for short host names.
        target: the policy's target block.
        where: how to name the object in messages (file, kind, namespace/name).

    Raises:
        RouteResolutionError: no route, several routes, or the destinations cannot be identified;
            the message lists every route seen.
    """
    selector: RouteSelector = target.route
    protocol = "tcp" if kind == "TCPRoute" else selector.protocol
    routes = _routes(obj, kind, protocol, where)
    given = selector.given()

    def selected(index: int, route: Any) -> bool:
        if selector.index is not None and index != selector.index:
            return False
        if selector.port is not None and selector.port not in _match_ports(route):
            return False
        if selector.name is not None and not (isinstance(route, Mapping) and route.get("name") == selector.name):
            return False
        if not given:
            return bool(_hits(_destinations(route, kind), kind, target, "stable", namespace))
        return True

    candidates = [i for i, route in enumerate(routes) if selected(i, route)]
    label = f"{protocol} route" if kind == "VirtualService" else "rule"
    criteria = (
        ", ".join(f"{key}={value}" for key, value in given.items())
        if given
        else f"containing the stable destination {target.stable.describe()}"
    )
    if len(candidates) != 1:
        seen = "; ".join(_route_summary(r, i, kind, protocol) for i, r in enumerate(routes[:MAX_LISTED_ROUTES]))
        if len(routes) > MAX_LISTED_ROUTES:
            seen += f"; and {len(routes) - MAX_LISTED_ROUTES:,} more"
        seen = seen or "none"
        count = "no" if not candidates else str(len(candidates))
        raise RouteResolutionError([f"{where}: {count} {label}s match ({criteria}); exactly one must (seen: {seen})"])
    index = candidates[0]
    ref = RouteRef(protocol, index)
    destinations = _destinations(routes[index], kind)
    at = f"{where}: {ref}"
    stable = _find(destinations, kind, target, "stable", namespace, at)
    if stable is None:
        seen = "; ".join(_describe_entry(e, kind) for e in destinations) or "none"
        raise RouteResolutionError(
            [f"{at}: the stable destination {target.stable.describe()} is not in this route (seen: {seen})"]
        )
    canary = _find(destinations, kind, target, "canary", namespace, at)
    if canary == stable:
        raise RouteResolutionError(
            [f"{at}: stable and canary both match {_describe_entry(destinations[stable], kind)}"]
        )
    return ResolvedRoute(kind=kind, ref=ref, stable=stable, canary=canary)


def route_pointer(resolved: ResolvedRoute) -> str:
    """JSON pointer of the selected route's destination list (``/spec/tcp/0/route``)."""
    if resolved.kind == "TCPRoute":
        return f"/spec/rules/{resolved.ref.index}/backendRefs"
    return f"/spec/{resolved.ref.protocol}/{resolved.ref.index}/route"


def route_destinations(obj: Mapping[str, Any], resolved: ResolvedRoute) -> list[Any]:
    """A deep copy of the selected route's destination list, exactly as stored."""
    routes = _routes(obj, resolved.kind, resolved.ref.protocol, "object")
    return copy.deepcopy(_destinations(routes[resolved.ref.index], resolved.kind))


def with_destinations(obj: Mapping[str, Any], resolved: ResolvedRoute, destinations: list[Any]) -> dict[str, Any]:
    """A copy of ``obj`` whose selected route has ``destinations`` (used to restore the original)."""
    result = copy.deepcopy(dict(obj))
    routes = _routes(result, resolved.kind, resolved.ref.protocol, "object")
    routes[resolved.ref.index]["backendRefs" if resolved.kind == "TCPRoute" else "route"] = copy.deepcopy(destinations)
    return result


def weight_problems(obj: Mapping[str, Any], kind: Kind) -> list[str]:
    """Destinations and weights anywhere in ``obj`` that its API server would refuse, one message each.

    Every route list is checked (a VirtualService's http, tls and tcp; a TCPRoute's rules), since a write
    of the object is refused as a whole. Each message names the field (``spec.tcp[0].route[1].weight``).
    """
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        return []
    low, high = WEIGHT_RANGES[kind]
    lists = ("rules",) if kind == "TCPRoute" else ("http", "tls", "tcp")
    entries_key = "backendRefs" if kind == "TCPRoute" else "route"
    problems: list[str] = []
    for key in lists:
        routes = spec.get(key)
        if not isinstance(routes, list):
            continue
        for index, route in enumerate(routes):
            at = f"spec.{key}[{index}]"
            if not isinstance(route, Mapping):
                problems.append(f"{at}: must be a mapping (got {_show_value(route)})")
                continue
            entries = route.get(entries_key)
            if entries is None:
                continue
            if not isinstance(entries, list):
                problems.append(f"{at}.{entries_key}: must be a list (got {_show_value(entries)})")
                continue
            for number, entry in enumerate(entries):
                where = f"{at}.{entries_key}[{number}]"
                if not isinstance(entry, Mapping):
                    problems.append(f"{where}: must be a mapping (got {_show_value(entry)})")
                    continue
                if "weight" not in entry:
                    continue
                weight = entry["weight"]
                if not isinstance(weight, int) or isinstance(weight, bool):
                    problems.append(f"{where}.weight: must be an integer (got {_show_value(weight)})")
                elif not low <= weight <= high:
                    problems.append(f"{where}.weight: must be between {low} and {high:,} for a {kind} (got {weight})")
    return problems


def _effective_weight(entry: Any, kind: Kind, count: int) -> int:
    weight = entry.get("weight") if isinstance(entry, Mapping) else None
    if isinstance(weight, int) and not isinstance(weight, bool):
        return weight
    if kind == "TCPRoute":
        return 1
    return 100 if count == 1 else 0


def current_weights(obj: Mapping[str, Any], resolved: ResolvedRoute) -> list[DestinationWeight]:
    """Effective weights of the selected route's destinations, in order."""
    routes = _routes(obj, resolved.kind, resolved.ref.protocol, "object")
    destinations = _destinations(routes[resolved.ref.index], resolved.kind)
    out = []
    for i, entry in enumerate(destinations):
        role: Literal["stable", "canary", "other"] = (
            "stable" if i == resolved.stable else "canary" if i == resolved.canary else "other"
        )
        out.append(
            DestinationWeight(
                _describe_entry(entry, resolved.kind).rsplit(" weight ", 1)[0],
                _effective_weight(entry, resolved.kind, len(destinations)),
                role,
            )
        )
    return out


def _new_canary_entry(stable_entry: Mapping[str, Any], target: Target, kind: Kind, weight: int) -> dict[str, Any]:
    canary = target.canary
    _, _, stable_port, _ = _dest_fields(stable_entry, kind)
    port = canary.port if canary.port is not None else stable_port
    if kind == "TCPRoute":
        entry: dict[str, Any] = {
            key: stable_entry[key] for key in ("group", "kind", "namespace") if key in stable_entry
        }
        entry["name"] = canary.host
        if port is not None:
            entry["port"] = port
        entry["weight"] = weight
        return entry
    destination: dict[str, Any] = {"host": canary.host}
    if port is not None:
        destination["port"] = {"number": port}
    if canary.subset is not None:
        destination["subset"] = canary.subset
    return {"destination": destination, "weight": weight}


def with_canary_weight(
    obj: Mapping[str, Any], resolved: ResolvedRoute, target: Target, weight: int, *, where: str
) -> dict[str, Any]:
    """A copy of ``obj`` whose selected route sends ``weight`` percent to the canary.

    Raises:
        RouteResolutionError: the other destinations hold so much weight that the stable one would
            go negative; the message names them.
    """
    if not 0 <= weight <= 100:
        raise RouteResolutionError([f"{where}: canary weight {weight} is outside 0..100"])
    result = copy.deepcopy(dict(obj))
    kind = resolved.kind
    routes = _routes(result, kind, resolved.ref.protocol, where)
    route = routes[resolved.ref.index]
    key = "backendRefs" if kind == "TCPRoute" else "route"
    destinations: list[Any] = route[key]
    count = len(destinations)
    others = [(i, entry) for i, entry in enumerate(destinations) if i not in {resolved.stable, resolved.canary}]
    held = sum(_effective_weight(entry, kind, count) for _, entry in others)
    stable_weight = 100 - weight - held
    if stable_weight < 0:
        named = ", ".join(_describe_entry(entry, kind) for _, entry in others)
        raise RouteResolutionError(
            [
                f"{where}: {resolved.ref}: at canary weight {weight} the stable destination would get "
                f"{stable_weight}: the other destinations already hold {held} ({named})"
            ]
        )
    destinations[resolved.stable]["weight"] = stable_weight
    if resolved.canary is None:
        destinations.append(_new_canary_entry(destinations[resolved.stable], target, kind, weight))
    else:
        destinations[resolved.canary]["weight"] = weight
    return result
