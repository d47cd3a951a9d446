"""``merge_snapshots`` combines the snapshots of the sources. A policy namespace/name defined more than once,
by two sources or twice by one, is a clash: no definition runs, and each is reported with the others.
"""

from __future__ import annotations

from collections.abc import Sequence

from controller.ports import PolicySnapshot, SourcedPolicy, SourceProblem

KIND = "CanaryPolicy"


def _definition(policy: SourcedPolicy) -> str:
    if policy.ref.source == "crd":
        return "as a resource"
    return f"in {policy.ref.location}" if policy.ref.location else "in a file"


def _listed(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"


def _problem_location(policy: SourcedPolicy) -> str:
    if policy.ref.source == "crd":
        return f"{policy.ref.namespace}/{policy.ref.name}"
    return policy.ref.location


def merge_snapshots(*snapshots: PolicySnapshot) -> PolicySnapshot:
    """The policies and problems of all ``snapshots``, with name clashes taken out.

    A namespace/name defined more than once (by two sources, or twice by one) is a clash: every
    definition is removed, and each is reported by a ``SourceProblem`` at its own location that names
    the other definitions. Everything else is kept in order.

    Args:
        snapshots: the snapshots of the sources, in any order.

    Returns:
        One snapshot: the policies defined exactly once; every source's problems, then the clashes.
    """
    definitions: dict[tuple[str, str], list[SourcedPolicy]] = {}
    for snapshot in snapshots:
        for sourced in snapshot.policies:
            definitions.setdefault((sourced.ref.namespace, sourced.ref.name), []).append(sourced)
    policies = [defined[0] for defined in definitions.values() if len(defined) == 1]
    problems = [problem for snapshot in snapshots for problem in snapshot.problems]
    for (namespace, name), defined in definitions.items():
        if len(defined) < 2:
            continue
        for index, this in enumerate(defined):
            others = [_definition(other) for position, other in enumerate(defined) if position != index]
            if len(defined) == 2:
                what = f"is defined both {_definition(this)} and {others[0]}; neither runs until one is removed"
            else:
                what = f"is defined {_definition(this)}, and also {_listed(others)}; none runs until only one is left"
            problems.append(
                SourceProblem(
                    source=this.ref.source,
                    location=_problem_location(this),
                    message=f"{KIND} {namespace}/{name} {what}",
                    namespace=namespace,
                    name=name,
                )
            )
    return PolicySnapshot(policies=tuple(policies), problems=tuple(problems))
