"""VirtualServices and TCPRoutes: read them, and change one route's destination list safely.

Writes are JSON patches whose first operation ``test``s that the destination list still equals what the
controller decided from; the API server applies them atomically, so a concurrent edit of that list makes
the write fail (``ConflictError``) instead of being overwritten, while edits elsewhere in the object (other
routes, labels, another tool's fields) never conflict. Nothing but that one list is ever sent.

With watch caches (``cache_for``, one :class:`~controller.adapters.kubernetes.informer.Informer` per kind), a
read comes from memory once the cache has synced, a write's answer is written through to it, and a
conflict reads the object from the server into it again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from controller.adapters.kubernetes.api import KubeApi, Resource, as_dict
from controller.adapters.kubernetes.informer import Informer
from controller.errors import ApiError, ConflictError, NotFoundError

# Versions in order of preference; the first whose resource list has the kind is used, discovered again after
# a 404 (the CRD may have been upgraded to serve another version since).
KINDS: dict[str, Resource] = {
    "VirtualService": Resource("networking.istio.io", "virtualservices", ("v1", "v1beta1", "v1alpha3")),
    "TCPRoute": Resource("gateway.networking.k8s.io", "tcproutes", ("v1", "v1beta1", "v1alpha2")),
}


def _at(obj: Any, pointer: str) -> tuple[bool, Any]:
    """The value at a JSON pointer: (True, value), or (False, None) when the path is gone."""
    node = obj
    for raw in pointer.strip("/").split("/") if pointer.strip("/") else []:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                return False, None
            node = node[int(part)]
        elif isinstance(node, dict):
            if part not in node:
                return False, None
            node = node[part]
        else:
            return False, None
    return True, node


class KubernetesTrafficRouter:
    """TrafficRouter over the Kubernetes API holding the mesh config (ASM: a separate API server).

    Args:
        api: the API holding VirtualServices and TCPRoutes.
        cache_for: the watch cache of a kind (``VirtualService``, ``TCPRoute``), made when first asked for; None
            (or a kind without one, or one not synced yet) reads from the API.
    """

    def __init__(self, api: KubeApi, *, cache_for: Callable[[str], Informer | None] | None = None) -> None:
        self.api = api
        self.cache_for = cache_for or (lambda kind: None)

    def _cache(self, kind: str, namespace: str) -> Informer | None:
        cache = self.cache_for(kind)
        return cache if cache is not None and cache.synced() and cache.covers(namespace) else None

    def get(self, *, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object as stored (from the watch cache once synced: shared, not to be changed), or None."""
        cache = self._cache(kind, namespace)
        if cache is not None:
            return cache.get(namespace, name)
        return self._read(kind=kind, namespace=namespace, name=name)

    def _read(self, *, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object as the API server has it now (into the cache too), or None."""
        cache = self.cache_for(kind)
        if cache is not None and cache.synced() and cache.covers(namespace):
            return cache.refresh(namespace, name)
        try:
            obj = self.api.get_obj(resource=KINDS[kind], namespace=namespace, name=name)
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
        patch = [
            {"op": "test", "path": pointer, "value": expect},
            {"op": "replace", "path": pointer, "value": destinations},
        ]
        try:
            written = self.api.patch_obj(
                resource=KINDS[kind], namespace=namespace, name=name, patch=patch, patch_type="json"
            )
        except ApiError as exc:
            if exc.code != 422:
                raise
            # A real server answers a failed ``test`` with a bare 422 ("the server rejected our request due to
            # an error in our request", no cause). Tell it from a schema violation by what is stored now.
            live = self._read(kind=kind, namespace=namespace, name=name)
            found, current = _at(live, pointer) if live is not None else (False, None)
            if not found or current != expect:
                where = f"{kind} {namespace}/{name} at {pointer}"
                state = "is gone" if not found else "changed since it was read"
                raise ConflictError(
                    [f"{where}: conflict: the destination list {state}; nothing written"], code=422
                ) from None
            raise
        cache = self.cache_for(kind)
        if cache is not None and isinstance(written, dict):
            cache.upsert(written)
