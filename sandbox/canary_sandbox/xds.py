"""Translate a tcp route into the Envoy config istiod would give an ingress gateway for it (pure).

istiod programs a gateway's TCP port as one listener whose ``tcp_proxy`` filter picks an upstream cluster
per new connection (``pilot/pkg/networking/core/networkfilter.go``):

* the route is the **first** ``tcp`` route of the VirtualService that matches the gateway port: a route
  without ``match``, or with a match entry whose ``port`` is unset or equals the port;
* a route with a single destination becomes a plain ``cluster``; otherwise ``weighted_clusters`` with
  every destination of positive weight (weight 0 is dropped; Envoy needs weights >= 1, their total need
  not be 100). When only one destination is left after dropping, this module also writes a plain
  ``cluster``: the same traffic, one form;
* clusters are named ``outbound|<port>|<subset>|<host FQDN>`` (empty subset for none) and exist for every
  subset a DestinationRule defines, whether a route sends to it or not, so a weight change rewrites only
  the listener;
* the stat prefix is the cluster name for a single destination, ``<name>.<namespace>`` of the
  VirtualService for weighted clusters.

A Gateway API TCPRoute is handled as Istio converts it: the first rule's ``backendRefs`` (Services; the
weight defaults to 1) become the destinations, with no subset.

The listener binds without ``SO_REUSEPORT`` (``enable_reuse_port: false``), so that a port another
process holds is an error instead of a silent share of the connections.

Not modelled: ``match`` on anything but the port (gateways, source labels, subnets), the VirtualService's
``gateways`` binding, TLS, and DestinationRule traffic policies. Clusters here are ``STATIC`` with one
loopback endpoint, a 0.25 s connect timeout, no health checks, no outlier detection and one connect
attempt, so that a refused upstream shows up as ``upstream_cx_connect_fail`` of its cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from controller.core.routes import canonical_host

LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
TCP_PROXY_TYPE = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
CONNECT_TIMEOUT = "0.25s"

Address = tuple[str, int]


class TranslationError(ValueError):
    """The route cannot be programmed: no route for the port, an unknown destination, no positive weight."""


class Backend(NamedTuple):
    """A service port (and subset) a route can send to: one Istio cluster.

    ``host`` may be a short name; it is expanded in the route's namespace (``tcp-echo`` ->
    ``tcp-echo.<namespace>.svc.cluster.local``). For a TCPRoute backendRef, ``host`` is the Service name.
    """

    host: str
    port: int
    subset: str = ""


def cluster_name(host: str, port: int, subset: str = "", *, namespace: str = "default") -> str:
    """Istio's outbound cluster name: ``outbound|9000|v1|tcp-echo.default.svc.cluster.local``."""
    return f"outbound|{port}|{subset}|{canonical_host(host, namespace)}"


@dataclass(frozen=True)
class GatewayConfig:
    """Envoy resources for one gateway port, and the split they program.

    Attributes:
        listeners: ``envoy.config.listener.v3.Listener`` resources (with ``@type``).
        clusters: ``envoy.config.cluster.v3.Cluster`` resources (with ``@type``), sorted by name.
        weights: cluster name -> weight of the destinations new connections go to, in route order
            (a plain ``cluster`` counts 100).
    """

    listeners: list[dict[str, Any]] = field(default_factory=list)
    clusters: list[dict[str, Any]] = field(default_factory=list)
    weights: dict[str, int] = field(default_factory=dict)


def listener_name(gateway_port: int) -> str:
    """The listener name istiod gives a gateway port (``0.0.0.0_31400``)."""
    return f"0.0.0.0_{gateway_port}"


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _metadata(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("name") or ""), str(meta.get("namespace") or "default")


def _subsets(destination_rules: Sequence[Mapping[str, Any]], namespace: str) -> dict[str, set[str]]:
    """FQDN -> subset names the DestinationRules define (each host expanded in its rule's namespace)."""
    defined: dict[str, set[str]] = {}
    for rule in destination_rules:
        spec = rule.get("spec") or {}
        host = spec.get("host")
        if not isinstance(host, str):
            continue
        rule_namespace = str((rule.get("metadata") or {}).get("namespace") or namespace)
        names = {
            s["name"] for s in spec.get("subsets") or [] if isinstance(s, Mapping) and isinstance(s.get("name"), str)
        }
        defined.setdefault(canonical_host(host, rule_namespace), set()).update(names)
    return defined


def _cluster(name: str, address: Address) -> dict[str, Any]:
    return {
        "@type": CLUSTER_TYPE,
        "name": name,
        "type": "STATIC",
        "connect_timeout": CONNECT_TIMEOUT,
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": {"socket_address": {"address": address[0], "port_value": address[1]}}}}
                    ]
                }
            ],
        },
    }


def _clusters(
    endpoints: Mapping[Backend, Address], destination_rules: Sequence[Mapping[str, Any]] | None, namespace: str
) -> dict[str, dict[str, Any]]:
    defined = None if destination_rules is None else _subsets(destination_rules, namespace)
    clusters: dict[str, dict[str, Any]] = {}
    for backend, address in endpoints.items():
        fqdn = canonical_host(backend.host, namespace)
        # istiod builds a subset's cluster only when a DestinationRule defines that subset.
        if backend.subset and defined is not None and backend.subset not in defined.get(fqdn, set()):
            continue
        name = cluster_name(fqdn, backend.port, backend.subset)
        clusters[name] = _cluster(name, address)
    return dict(sorted(clusters.items()))


def _port_of(host: str, subset: str, endpoints: Mapping[Backend, Address], namespace: str) -> int | None:
    """The service port when a destination names none: the host's only port, as istiod does."""
    ports = {b.port for b in endpoints if canonical_host(b.host, namespace) == host and b.subset == subset}
    return ports.pop() if len(ports) == 1 else None


def _route_matches(route: Mapping[str, Any], gateway_port: int) -> bool:
    matches = route.get("match")
    if not matches:
        return True
    return any(isinstance(m, Mapping) and _int(m.get("port")) in (None, gateway_port) for m in matches)


def _virtual_service_destinations(
    obj: Mapping[str, Any], gateway_port: int, endpoints: Mapping[Backend, Address], namespace: str
) -> list[tuple[str, int | None]]:
    routes = (obj.get("spec") or {}).get("tcp") or []
    selected = next((r for r in routes if isinstance(r, Mapping) and _route_matches(r, gateway_port)), None)
    if selected is None:
        name, _ = _metadata(obj)
        raise TranslationError(f"VirtualService {namespace}/{name}: no tcp route matches port {gateway_port}")
    out: list[tuple[str, int | None]] = []
    for entry in selected.get("route") or []:
        destination = entry.get("destination") or {}
        host = canonical_host(str(destination.get("host") or ""), namespace)
        subset = str(destination.get("subset") or "")
        port = _int((destination.get("port") or {}).get("number")) or _port_of(host, subset, endpoints, namespace)
        if port is None:
            raise TranslationError(f"destination {host} names no port and the service has no single port")
        out.append((cluster_name(host, port, subset), _int(entry.get("weight"))))
    return out


def _tcp_route_destinations(obj: Mapping[str, Any], namespace: str) -> list[tuple[str, int | None]]:
    rules = (obj.get("spec") or {}).get("rules") or []
    if not rules:
        name, _ = _metadata(obj)
        raise TranslationError(f"TCPRoute {namespace}/{name} has no rule")
    out: list[tuple[str, int | None]] = []
    for ref in rules[0].get("backendRefs") or []:
        if ref.get("group", "") not in ("", "core") or ref.get("kind", "Service") != "Service":
            raise TranslationError(f"backendRef {ref.get('name')}: only Services are supported")
        port = _int(ref.get("port"))
        if port is None:
            raise TranslationError(f"backendRef {ref.get('name')} names no port")
        host = canonical_host(str(ref.get("name") or ""), str(ref.get("namespace") or namespace))
        weight = _int(ref.get("weight"))
        out.append((cluster_name(host, port), 1 if weight is None else weight))
    return out


def translate(
    route: Mapping[str, Any],
    *,
    endpoints: Mapping[Backend, Address],
    destination_rules: Sequence[Mapping[str, Any]] | None = None,
    gateway_port: int = 31400,
    listener_address: Address = ("127.0.0.1", 31400),
) -> GatewayConfig:
    """The listener and clusters an Istio ingress gateway gets for ``route`` on ``gateway_port``.

    Args:
        route: a VirtualService or a Gateway API TCPRoute, as a mapping.
        endpoints: where each backend runs (``Backend("tcp-echo", 9000, "v1") -> ("127.0.0.1", 41234)``);
            one cluster is built per entry.
        destination_rules: the DestinationRules in effect; a backend's subset gets a cluster only when one
            of them defines it (as istiod does). None skips that check.
        gateway_port: the Gateway's port, which ``match[].port`` is compared with (31400 in the sample).
        listener_address: where Envoy actually listens (the gateway port may be taken locally).

    Raises:
        TranslationError: no tcp route for the port, a destination with no cluster, or no destination
            with a positive weight.
    """
    kind = route.get("kind")
    name, namespace = _metadata(route)
    if kind == "VirtualService":
        destinations = _virtual_service_destinations(route, gateway_port, endpoints, namespace)
    elif kind == "TCPRoute":
        destinations = _tcp_route_destinations(route, namespace)
    else:
        raise TranslationError(f"cannot translate a {kind}: only VirtualService and TCPRoute")
    clusters = _clusters(endpoints, destination_rules, namespace)
    for cluster, _ in destinations:
        if cluster not in clusters:
            raise TranslationError(f"{kind} {namespace}/{name}: no endpoints for cluster {cluster}")
    if len(destinations) == 1:
        weights = {destinations[0][0]: 100}
    else:
        weights = {}
        for cluster, weight in destinations:
            if weight is not None and weight > 0:
                weights[cluster] = weights.get(cluster, 0) + weight
    if not weights:
        raise TranslationError(f"{kind} {namespace}/{name}: no destination has a positive weight")
    proxy: dict[str, Any] = {"@type": TCP_PROXY_TYPE, "max_connect_attempts": 1}
    if len(weights) == 1:
        proxy["stat_prefix"] = proxy["cluster"] = next(iter(weights))
    else:
        proxy["stat_prefix"] = f"{name}.{namespace}"
        proxy["weighted_clusters"] = {"clusters": [{"name": c, "weight": w} for c, w in weights.items()]}
    listener = {
        "@type": LISTENER_TYPE,
        "name": listener_name(gateway_port),
        "address": {"socket_address": {"address": listener_address[0], "port_value": listener_address[1]}},
        # Envoy binds with SO_REUSEPORT by default: a second gateway on the same port would silently take
        # half the connections. Without it, a port clash is a rejected listener.
        "enable_reuse_port": False,
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": proxy}]}],
    }
    return GatewayConfig(listeners=[listener], clusters=list(clusters.values()), weights=weights)


def discovery_response(resources: Sequence[Mapping[str, Any]], *, version: str) -> dict[str, Any]:
    """A ``DiscoveryResponse`` as Envoy's file-based LDS/CDS read it."""
    return {"version_info": version, "resources": [dict(r) for r in resources]}
