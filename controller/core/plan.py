"""What a rollout would write, step by step: the engine behind ``canaryctl plan``.

``select_target`` picks the policy's target among parsed documents (by kind, API group, name and
namespace); ``plan_rollout`` resolves the route and computes the whole object for every step of the
schedule, plus the rollback object (the original, unchanged).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.core.policy import CanaryPolicy
from controller.core.routes import (
    KIND_GROUPS,
    Kind,
    ResolvedRoute,
    resolve_route,
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
        """The documented ``canaryctl plan -o json`` shape."""
        return {
            "target": {"kind": self.kind, "name": self.name, "namespace": self.namespace},
            "route": {"protocol": self.resolved.ref.protocol, "index": self.resolved.ref.index},
            "steps": [{"weight": step.weight, "object": step.object} for step in self.steps],
            "rollback": {"object": self.rollback},
        }


def _group(api_version: Any) -> str | None:
    if not isinstance(api_version, str) or "/" not in api_version:
        return None
    return api_version.split("/", 1)[0]


def _metadata(data: Any) -> Mapping[str, Any]:
    meta = data.get("metadata") if isinstance(data, Mapping) else None
    return meta if isinstance(meta, Mapping) else {}


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
    elsewhere = [f"{_metadata(doc.data).get('namespace')} ({doc.where})" for doc in same]
    hint = ""
    if elsewhere:
        field = "tcpRoute" if kind == "TCPRoute" else "virtualService"
        hint = (
            f"; found in namespace {', '.join(elsewhere)}: set spec.target.{field}.namespace or the policy's namespace"
        )
    kinds = sorted(
        {
            f"{doc.data.get('kind')} {_metadata(doc.data).get('name')}"
            for doc in documents
            if isinstance(doc.data, Mapping)
        }
    )
    seen = f" (seen: {', '.join(kinds)})" if kinds and not elsewhere else ""
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
    resolved = resolve_route(original, kind=kind, namespace=namespace, target=target, where=where)
    steps: list[PlannedStep] = []
    problems: list[str] = []
    for weight in policy.spec.schedule.steps:
        try:
            steps.append(PlannedStep(weight, with_canary_weight(original, resolved, target, weight, where=where)))
        except RouteResolutionError as exc:
            problems.extend(exc.problems)
    if problems:
        raise RouteResolutionError(problems)
    return Plan(
        kind=kind,
        name=name,
        namespace=namespace,
        resolved=resolved,
        steps=tuple(steps),
        rollback=copy.deepcopy(dict(original)),
    )
