"""The canary Deployment: is it Available, and what is its pod template (its revision)?"""

from __future__ import annotations

from typing import Any

from controller.adapters.kubernetes.api import DEPLOYMENTS, KubeApi, metadata_of
from controller.errors import NotFoundError
from controller.ports import CanaryWorkload


class KubernetesWorkloadReader:
    """Reads Deployments from the workload cluster (the main API server, also with ASM)."""

    def __init__(self, api: KubeApi) -> None:
        self.api = api

    def canary(self, *, namespace: str, name: str) -> CanaryWorkload:
        """Ready when the rollout of its current generation is complete and it is Available."""
        try:
            deployment = self.api.get_obj(resource=DEPLOYMENTS, namespace=namespace, name=name)
        except NotFoundError:
            return CanaryWorkload(ready=False, message=f"Deployment {namespace}/{name} not found", template=None)
        spec = deployment.spec
        if spec is None:
            return CanaryWorkload(ready=False, message=f"Deployment {namespace}/{name} has no spec", template=None)
        template: dict[str, Any] = self.api.api_client.sanitize_for_serialization(  # type: ignore[no-untyped-call]
            spec.template
        )
        status = deployment.status
        conditions = {c.type: c for c in (status.conditions or [])} if status else {}
        available = conditions.get("Available")
        wanted = spec.replicas if spec.replicas is not None else 1
        observed = status.observed_generation if status else None
        generation = metadata_of(deployment).generation
        if observed is not None and generation is not None and observed < generation:
            return CanaryWorkload(
                ready=False, message="the Deployment's new generation is not observed yet", template=template
            )
        updated = (status.updated_replicas or 0) if status else 0
        ready_replicas = (status.available_replicas or 0) if status else 0
        if available is None or available.status != "True":
            reason = f"{available.reason}: {available.message}" if available is not None else "no Available condition"
            return CanaryWorkload(ready=False, message=f"not Available ({reason})", template=template)
        if updated < wanted or ready_replicas < wanted:
            return CanaryWorkload(
                ready=False,
                message=f"{ready_replicas}/{wanted} replicas available, {updated} updated",
                template=template,
            )
        return CanaryWorkload(ready=True, message="Available", template=template)
