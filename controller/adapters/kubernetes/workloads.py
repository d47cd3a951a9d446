"""The canary Deployment: is it Available, and what is its pod template (its revision)?

With a watch cache of Deployments, the answer comes from memory, worked out once per version of the
Deployment. A cached Deployment goes through the official client's model exactly as one read from the API
does, so its pod template, and with it the rollout's revision hash, is the same either way (the server's
JSON differs from the model's: ``creationTimestamp: null``, timestamps' spelling).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from controller.adapters.kubernetes.api import DEPLOYMENTS, KubeApi, metadata_of
from controller.adapters.kubernetes.informer import Informer, version_of
from controller.errors import NotFoundError
from controller.ports import CanaryWorkload


class KubernetesWorkloadReader:
    """Reads Deployments from the workload cluster (the main API server, also with ASM).

    Args:
        api: the API server holding the workloads.
        cache_for: the watch cache of Deployments, made when first asked for; None (or one not synced yet)
            reads each from the API.
    """

    def __init__(self, api: KubeApi, *, cache_for: Callable[[], Informer | None] | None = None) -> None:
        self.api = api
        self.cache_for = cache_for or (lambda: None)
        self._known: dict[tuple[str, str], tuple[str, CanaryWorkload]] = {}
        self._lock = threading.Lock()

    def canary(self, *, namespace: str, name: str) -> CanaryWorkload:
        """Ready when the rollout of its current generation is complete and it is Available."""
        cache = self.cache_for()
        if cache is None or not cache.synced() or not cache.covers(namespace):
            try:
                deployment = self.api.get_obj(resource=DEPLOYMENTS, namespace=namespace, name=name)
            except NotFoundError:
                return CanaryWorkload(ready=False, message=f"Deployment {namespace}/{name} not found", template=None)
            return self._judge(deployment, namespace=namespace, name=name)
        raw = cache.get(namespace, name)
        if raw is None:
            return CanaryWorkload(ready=False, message=f"Deployment {namespace}/{name} not found", template=None)
        version = version_of(raw) or ""
        with self._lock:
            known = self._known.get((namespace, name))
        if known is not None and known[0] == version:
            return known[1]
        model = self.api.api_client.deserialize(json.dumps(raw), "V1Deployment", "application/json")
        answer = self._judge(model, namespace=namespace, name=name)
        with self._lock:
            self._known[(namespace, name)] = (version, answer)
        return answer

    def _judge(self, deployment: Any, *, namespace: str, name: str) -> CanaryWorkload:
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
