"""Whether a route write has reached the data plane, read from the route object's own status.

On a cluster the API server accepting a write says nothing about Envoy. Where the platform reports
distribution, a step's analysis counts only once it does:

* **Istio VirtualService**: ``status.conditions[type=Reconciled]`` with ``status.observedGeneration`` equal
  to ``metadata.generation``. istiod writes them only with status reporting on (``PILOT_ENABLE_STATUS=true``
  and ``PILOT_ENABLE_CONFIG_DISTRIBUTION_TRACKING=true``; Istio's "Configuration Status Field" page, an
  experimental feature upstream). ``observedGeneration`` is "the resource generation to which the Reconciled
  condition refers. When this value is not equal to the object's metadata generation, reconciled condition
  calculation for the current generation is still in progress" (Istio's IstioStatus reference). While
  proxies still receive it, Reconciled is False with reason ``stillPropagating`` and a message such as
  ``61/122 complete``.
* **Gateway API TCPRoute**: ``status.parents[].conditions`` ``Accepted`` and ``ResolvedRefs``, each True
  at the route's current generation (``conditions[].observedGeneration``), for every parent that reports.

With neither (status reporting off, no implementation writing parent status) the answer is
``UNAVAILABLE``: the rollout says so once and goes on, as it did before such reporting existed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class DataPlane(StrEnum):
    """What the route's status says about the last write."""

    CONFIRMED = "confirmed"
    PENDING = "pending"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class DataPlaneReport:
    """The state, and in words what it rests on (for the status message and Events)."""

    state: DataPlane
    detail: str


ISTIO_STATUS_HINT = (
    "istiod reports distribution only with PILOT_ENABLE_STATUS=true and PILOT_ENABLE_CONFIG_DISTRIBUTION_TRACKING=true"
)


def _generation(value: Any) -> int | None:
    """A generation as the API stores it: an integer, or (int-or-string in Istio's CRD) a decimal string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _conditions(value: Any) -> list[Mapping[str, Any]]:
    return [c for c in value if isinstance(c, Mapping)] if isinstance(value, list) else []


def data_plane_report(obj: Mapping[str, Any], *, kind: str) -> DataPlaneReport:
    """What ``obj``'s status says about its current generation reaching the data plane."""
    generation = _generation(_mapping(obj.get("metadata")).get("generation"))
    status = _mapping(obj.get("status"))
    if generation is None:
        return DataPlaneReport(DataPlane.UNAVAILABLE, f"the {kind} has no metadata.generation")
    if kind == "TCPRoute":
        return _gateway_api(status, generation)
    return _istio(status, generation)


def _istio(status: Mapping[str, Any], generation: int) -> DataPlaneReport:
    reconciled = next((c for c in _conditions(status.get("conditions")) if c.get("type") == "Reconciled"), None)
    if reconciled is None:
        return DataPlaneReport(
            DataPlane.UNAVAILABLE, f"the VirtualService has no Reconciled condition; {ISTIO_STATUS_HINT}"
        )
    observed = _generation(status.get("observedGeneration"))
    if observed != generation:
        return DataPlaneReport(
            DataPlane.PENDING,
            f"istiod has not reported generation {generation} yet (its status is for generation {observed})",
        )
    if reconciled.get("status") != "True":
        said = reconciled.get("message") or reconciled.get("reason") or "not reconciled"
        return DataPlaneReport(DataPlane.PENDING, f"istiod is distributing generation {generation}: {said}")
    return DataPlaneReport(DataPlane.CONFIRMED, f"istiod reports generation {generation} reconciled")


def _gateway_api(status: Mapping[str, Any], generation: int) -> DataPlaneReport:
    parents = [p for p in status.get("parents") or [] if isinstance(p, Mapping)]
    if not parents:
        return DataPlaneReport(
            DataPlane.UNAVAILABLE, "the TCPRoute has no status.parents: no Gateway API implementation reports on it"
        )
    for parent in parents:
        ref = _mapping(parent.get("parentRef"))
        name = ref.get("name") or "a parent"
        by_type = {c.get("type"): c for c in _conditions(parent.get("conditions"))}
        for wanted in ("Accepted", "ResolvedRefs"):
            condition = by_type.get(wanted)
            if condition is None:
                return DataPlaneReport(DataPlane.PENDING, f"parent {name} has not reported {wanted}")
            observed = _generation(condition.get("observedGeneration"))
            if observed != generation:
                return DataPlaneReport(
                    DataPlane.PENDING,
                    f"parent {name} has not reported {wanted} for generation {generation} yet "
                    f"(it reports generation {observed})",
                )
            if condition.get("status") != "True":
                said = condition.get("message") or condition.get("reason") or "False"
                return DataPlaneReport(
                    DataPlane.PENDING, f"parent {name}: {wanted} is {condition.get('status')}: {said}"
                )
    names = ", ".join(str(_mapping(p.get("parentRef")).get("name") or "?") for p in parents)
    return DataPlaneReport(DataPlane.CONFIRMED, f"generation {generation} accepted by {names}")
