"""Kubernetes Events for every rollout transition (reasons such as StepAdvanced, RolledBack)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from kubernetes import client as k8s

from controller.adapters.kubernetes.api import EVENTS, KubeApi
from controller.errors import CanaryError
from controller.ports import InvolvedObject

log = logging.getLogger(__name__)
COMPONENT = "canary-controller"


class KubernetesEventRecorder:
    """Records core/v1 Events on the CanaryPolicy (CRD mode) or on the target object (file mode).

    Args:
        api: the API to write Events to (the main cluster).
    """

    def __init__(self, api: KubeApi) -> None:
        self.api = api

    def record(self, *, involved: InvolvedObject, reason: str, message: str, event_type: str) -> None:
        """Create one Event; a failure is logged, never raised (events must not block rollouts)."""
        now = datetime.now(UTC)
        body = k8s.CoreV1Event(
            metadata=k8s.V1ObjectMeta(generate_name=f"{involved.name}.", namespace=involved.namespace),
            involved_object=k8s.V1ObjectReference(
                kind=involved.kind,
                api_version=involved.api_version,
                name=involved.name,
                namespace=involved.namespace,
            ),
            reason=reason,
            message=message[:1024],
            type=event_type,
            source=k8s.V1EventSource(component=COMPONENT),
            reporting_component=COMPONENT,
            first_timestamp=now,
            last_timestamp=now,
            count=1,
        )
        try:
            self.api.create_obj(resource=EVENTS, namespace=involved.namespace, body=body)
        except CanaryError as exc:
            log.warning("could not record event %s on %s/%s: %s", reason, involved.namespace, involved.name, exc)
