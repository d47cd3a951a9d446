"""VirtualServices and TCPRoutes: read them, and change one route's destination list safely.

Writes are JSON patches whose first operation ``test``s that the destination list still equals what the
controller decided from; the API server applies them atomically, so a concurrent edit of that list makes
the write fail (``ConflictError``) instead of being overwritten, while edits elsewhere in the object (other
routes, labels, another tool's fields) never conflict. Nothing but that one list is ever sent.
"""

from __future__ import annotations

from typing import Any

from controller.adapters.kubernetes.api import KubeApi, as_dict
from controller.errors import NotFoundError

KINDS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "VirtualService": ("networking.istio.io", "virtualservices", ("v1", "v1beta1", "v1alpha3")),
    "TCPRoute": ("gateway.networking.k8s.io", "tcproutes", ("v1", "v1alpha2")),
}


class KubernetesTrafficRouter:
    """TrafficRouter over the Kubernetes API holding the mesh config (ASM: a separate API server).

    Args:
        api: the API holding VirtualServices and TCPRoutes.
    """

    def __init__(self, api: KubeApi) -> None:
        self.api = api

    def _resource(self, kind: str) -> tuple[str, str, str]:
        group, plural, candidates = KINDS[kind]
        return group, self.api.preferred_version(group, candidates=candidates), plural

    def get(self, *, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object as stored, or None when it does not exist."""
        group, version, plural = self._resource(kind)
        try:
            obj = self.api.call(
                lambda: self.api.custom.get_namespaced_custom_object(
                    group, version, namespace, plural, name, _request_timeout=self.api.timeout
                ),
                verb="get",
                resource=plural,
                group=group,
                namespace=namespace,
                name=name,
            )
        except NotFoundError:
            return None
        return as_dict(obj)

    def replace_route(
        self, *, kind: str, namespace: str, name: str, pointer: str, expect: list[Any], destinations: list[Any]
    ) -> None:
        """Replace the list at ``pointer`` if it still equals ``expect``.

        Raises:
            ConflictError: the list changed since it was read (or the object was replaced).
        """
        if expect == destinations:
            return
        group, version, plural = self._resource(kind)
        patch = [
            {"op": "test", "path": pointer, "value": expect},
            {"op": "replace", "path": pointer, "value": destinations},
        ]
        self.api.call(
            lambda: self.api.custom.patch_namespaced_custom_object(
                group,
                version,
                namespace,
                plural,
                name,
                patch,
                _content_type="application/json-patch+json",
                _request_timeout=self.api.timeout,
            ),
            verb="patch",
            resource=plural,
            group=group,
            namespace=namespace,
            name=name,
        )
