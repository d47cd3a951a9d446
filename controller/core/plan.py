"""What a rollout would write, step by step: the engine behind ``canaryctl plan``.

``select_target`` picks the policy's target among parsed documents (by kind, API group, name and
namespace); ``plan_rollout`` resolves the route and computes the whole object for every step of the
schedule, plus the rollback object (the original, unchanged).
"""

from __future__ import annotations

import base64
import copy
import datetime
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.core.display import plain
from controller.core.policy import CanaryPolicy, Target
from controller.core.routes import (
    KIND_GROUPS,
    MAX_LISTED_ROUTES,
    Kind,
    ResolvedRoute,
    resolve_route,
    route_list_path,
    weight_problems,
    with_canary_weight,
)
from controller.errors import RouteResolutionError, TargetError, TargetNotFoundError


@dataclass(frozen=True)
class SourceDocument:
    """A parsed document and where it came from (``file.yaml:12``), for messages."""

    data: Any
    where: str


@dataclass(frozen=True)
class PlannedStep:
    """The whole object as it would be written at one step."""

    weight: int
    object: dict[str, Any]


@dataclass(frozen=True)
class Plan:
    """Every write of a rollout, in order, and the rollback."""

    kind: Kind
    name: str
    namespace: str
    resolved: ResolvedRoute
    steps: tuple[PlannedStep, ...]
    rollback: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The documented ``canaryctl plan -o json`` shape, as JSON-ready data (see :func:`json_ready`)."""
        done: dict[int, Any] = {}  # steps share their unchanged routes: convert each once
        return {
            "target": {"kind": self.kind, "name": self.name, "namespace": self.namespace},
            "route": {"protocol": self.resolved.ref.protocol, "index": self.resolved.ref.index},
            "steps": [{"weight": step.weight, "object": json_ready(step.object, done)} for step in self.steps],
            "rollback": {"object": json_ready(self.rollback, done)},
        }


_PLAIN_JSON = (str, int, bool, type(None))


def json_ready(value: Any, done: dict[int, Any] | None = None) -> Any:
    """``value`` with every YAML-only type turned into what Kubernetes would store in JSON.

    A YAML target may hold values JSON has no type for: dates and timestamps (``2024-05-01``) become
    their ISO 8601 text, ``!!binary`` becomes base64 text (Kubernetes' encoding of bytes), a ``!!set``
    a sorted list, non-string keys their text, and NaN or infinite floats (``.nan``, ``.inf``) their YAML
    text, since strict JSON has no spelling for them.

    Args:
        value: parsed YAML data; not changed.
        done: containers already converted, by ``id``, for data that shares parts (kept alive by the caller).
    """
    if isinstance(value, _PLAIN_JSON):
        return value
    memo: dict[int, Any] = {} if done is None else done
    key = id(value)
    if key in memo:
        return memo[key]
    result: Any
    if isinstance(value, Mapping):
        result = {_json_key(k, memo): json_ready(item, memo) for k, item in value.items()}
    elif isinstance(value, list | tuple):
        result = [json_ready(item, memo) for item in value]
    elif isinstance(value, set | frozenset):
        result = sorted((json_ready(item, memo) for item in value), key=str)
    elif isinstance(value, datetime.date | datetime.time):  # datetime.datetime is a date
        result = value.isoformat()
    elif isinstance(value, bytes | bytearray):
        result = base64.b64encode(value).decode("ascii")
    elif isinstance(value, float) and not math.isfinite(value):
        result = ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    else:
        return value
    if isinstance(value, Mapping | list):
        memo[key] = result  # only containers the input holds (and keeps alive) are remembered
    return result


def _json_key(key: Any, done: dict[int, Any]) -> str:
    ready = json_ready(key, done)
    if isinstance(ready, str):
        return ready
    if isinstance(ready, bool):
        return "true" if ready else "false"
    if ready is None:
        return "null"
    return str(ready)


def _group(api_version: Any) -> str | None:
    if not isinstance(api_version, str) or "/" not in api_version:
        return None
    return api_version.split("/", 1)[0]


def _metadata(data: Any) -> Mapping[str, Any]:
    meta = data.get("metadata") if isinstance(data, Mapping) else None
    return meta if isinstance(meta, Mapping) else {}


def _label(value: Any) -> str:
    """A kind, name or namespace read from the target file, printable on one line."""
    return plain(value) if isinstance(value, str) else str(value)


def select_target(policy: CanaryPolicy, documents: Sequence[SourceDocument]) -> tuple[SourceDocument, str]:
    """Find the policy's target object among ``documents``.

    A document without a namespace matches any namespace (it would be applied into the policy's).

    Returns:
        The document and the namespace the object lives in.

    Raises:
        TargetNotFoundError: no document matches; the message names near misses.
        TargetError: several documents match.
    """
    kind = policy.spec.target.kind
    name = policy.spec.target.ref.name
    namespace = policy.target_namespace
    same = [
        doc
        for doc in documents
        if isinstance(doc.data, Mapping)
        and doc.data.get("kind") == kind
        and _group(doc.data.get("apiVersion")) == KIND_GROUPS[kind]
        and _metadata(doc.data).get("name") == name
    ]
    exact = [doc for doc in same if _metadata(doc.data).get("namespace") == namespace]
    unset = [doc for doc in same if _metadata(doc.data).get("namespace") is None]
    found = exact or unset
    if len(found) == 1:
        return found[0], namespace
    if len(found) > 1:
        raise TargetError(
            [
                f"{kind} {namespace}/{name}: {len(found)} documents match "
                f"({', '.join(doc.where for doc in found)}); keep one or give namespaces"
            ]
        )
    elsewhere = [f"{_label(_metadata(doc.data).get('namespace'))} ({doc.where})" for doc in same]
    hint = ""
    if elsewhere:
        field = "tcpRoute" if kind == "TCPRoute" else "virtualService"
        hint = (
            f"; found in namespace {', '.join(elsewhere)}: set spec.target.{field}.namespace or the policy's namespace"
        )
    kinds = sorted(
        {
            f"{_label(doc.data.get('kind'))} {_label(_metadata(doc.data).get('name'))}"
            for doc in documents
            if isinstance(doc.data, Mapping)
        }
    )
    listed = ", ".join(kinds[:MAX_LISTED_ROUTES]) + (
        f", and {len(kinds) - MAX_LISTED_ROUTES:,} more" if len(kinds) > MAX_LISTED_ROUTES else ""
    )
    seen = f" (seen: {listed})" if kinds and not elsewhere else ""
    raise TargetNotFoundError([f"{kind} {namespace}/{name}: not found{hint}{seen}"])


def plan_rollout(policy: CanaryPolicy, documents: Sequence[SourceDocument]) -> Plan:
    """Compute every object the controller would write for ``policy``.

    Raises:
        TargetError: target missing or ambiguous, route unresolvable, or a step's weights impossible.
            ``problems`` holds one line per problem (all failing steps are listed).
    """
    document, namespace = select_target(policy, documents)
    target = policy.spec.target
    kind = target.kind
    name = target.ref.name
    where = f"{document.where}: {kind} {namespace}/{name}"
    original = document.data
    refused = weight_problems(original, kind)
    if refused:
        api = "Istio" if kind == "VirtualService" else "the Gateway API"
        raise RouteResolutionError([f"{where}: {problem} ({api} refuses it)" for problem in refused])
    resolved = resolve_route(original, kind=kind, namespace=namespace, target=target, where=where)
    rollback = copy.deepcopy(dict(original))
    steps: list[PlannedStep] = []
    problems: list[str] = []
    for weight in policy.spec.schedule.steps:
        try:
            steps.append(PlannedStep(weight, _step_object(rollback, resolved, target, weight, where=where)))
        except RouteResolutionError as exc:
            problems.extend(exc.problems)
    if problems:
        raise RouteResolutionError(problems)
    return Plan(kind=kind, name=name, namespace=namespace, resolved=resolved, steps=tuple(steps), rollback=rollback)


def _step_object(
    original: dict[str, Any], resolved: ResolvedRoute, target: Target, weight: int, *, where: str
) -> dict[str, Any]:
    """The object at one step: ``original`` with the selected route's weights moved.

    The weight math runs on a copy of the selected route alone, and the result shares every other route
    with ``original`` (a 10,000-route object is not copied whole at every step). Plans are read-only.
    """
    _, key = route_list_path(resolved.kind, resolved.ref.protocol)
    routes: list[Any] = original["spec"][key]
    index = resolved.ref.index
    alone = {"spec": {key: [*([None] * index), routes[index]]}}
    moved = with_canary_weight(alone, resolved, target, weight, where=where)["spec"][key][index]
    return {**original, "spec": {**original["spec"], key: [*routes[:index], moved, *routes[index + 1 :]]}}
