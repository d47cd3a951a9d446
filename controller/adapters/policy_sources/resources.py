"""Policies from CanaryPolicy resources, listed and watched.

``CrdPolicySource`` serves CanaryPolicy resources from the watch cache of
:class:`~controller.adapters.kubernetes.informer.Informer` (client-go's reflector: LIST, WATCH from its
``resourceVersion`` with bookmarks, WATCH again after a normal end, LIST again after a failure or a
``410 Gone``, with an exponential backoff; read that module for the details).

Each cached object is validated as a policy file is (``controller.core.problems.validate_policy``): a
valid one is a ``SourcedPolicy``, an invalid one a ``SourceProblem`` naming each field at fault. A change
that leaves what is validated alone (a status write: the controller's own, at every refresh) is not
validated again, and the snapshot is rebuilt only when read after a change, so a status write costs
one comparison, not a validation and a sort of every policy. ``on_change`` is called (from the watching
thread) whenever what ``snapshot()`` returns changes, so writes that change nothing the controller reads
(its own status updates) do not wake it up.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from controller.adapters.kubernetes.api import KubeApi
from controller.adapters.kubernetes.informer import Informer, Key
from controller.adapters.kubernetes.status import CANARYPOLICIES
from controller.core.problems import validate_policy
from controller.ports import PolicyRef, PolicySnapshot, SourcedPolicy, SourceProblem

log = logging.getLogger(__name__)

CacheEntry = SourcedPolicy | SourceProblem


def policy_from_resource(obj: dict[str, Any]) -> CacheEntry:
    """Validate a CanaryPolicy resource as the controller reads it (metadata reduced to what policies carry).

    Returns:
        The policy with a ref to the resource (uid, generation), or a problem naming every field at fault.
    """
    metadata = obj.get("metadata") or {}
    namespace = str(metadata.get("namespace") or "")
    name = str(metadata.get("name") or "")
    document: dict[str, Any] = {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": {key: metadata[key] for key in ("name", "namespace", "labels", "annotations") if key in metadata},
    }
    if "spec" in obj:
        document["spec"] = obj["spec"]
    policy, problems = validate_policy(document)
    if policy is None:
        return SourceProblem(
            source="crd",
            location=f"{namespace}/{name}",
            message="; ".join(f"{problem.dotted}: {problem.message}" for problem in problems),
            namespace=namespace,
            name=name,
        )
    generation = metadata.get("generation")
    ref = PolicyRef(
        namespace,
        name,
        source="crd",
        location=str(metadata.get("uid") or ""),
        generation=generation if isinstance(generation, int) else None,
    )
    return SourcedPolicy(policy, ref)


def validated_part(obj: dict[str, Any]) -> tuple[Any, ...]:
    """What ``policy_from_resource`` reads: a change elsewhere (the status) needs no new validation."""
    metadata = obj.get("metadata") or {}
    return (
        obj.get("apiVersion"),
        obj.get("kind"),
        obj.get("spec"),
        metadata.get("labels"),
        metadata.get("annotations"),
        metadata.get("generation"),
        metadata.get("uid"),
    )


class CrdPolicySource:
    """CanaryPolicy resources, listed and watched in the background (see the module docstring).

    Args:
        api: the Kubernetes API to watch.
        namespaces: the namespaces to watch, each with its own watch; None (or empty) for the whole cluster.
        label_selector: only resources with these labels (``team=shop,tier!=test``).
        on_change: called from the watching thread whenever what ``snapshot()`` returns has changed.
        watch_timeout_seconds: ``timeoutSeconds`` of each watch; the watch is then opened again.
        backoff_initial: first delay, in seconds, before retrying a failed call.
        backoff_max: longest delay between retries.
    """

    def __init__(
        self,
        api: KubeApi,
        *,
        namespaces: list[str] | None = None,
        label_selector: str | None = None,
        on_change: Callable[[], None] | None = None,
        watch_timeout_seconds: int = 300,
        backoff_initial: float = 0.2,
        backoff_max: float = 10.0,
    ) -> None:
        self._on_change = on_change
        self._lock = threading.Lock()
        self._entries: dict[Key, tuple[tuple[Any, ...], CacheEntry]] = {}
        self._snapshot: PolicySnapshot | None = PolicySnapshot()
        self.informer = Informer(
            api,
            CANARYPOLICIES,
            namespaces=namespaces,
            label_selector=label_selector,
            watch_timeout_seconds=watch_timeout_seconds,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            start=False,
        )
        self.informer.add_handler(self._changed)
        self.informer.start()

    # ------------------------------------------------------------------ public

    def snapshot(self) -> PolicySnapshot:
        """The cached policies and problems (empty until the first list succeeded)."""
        with self._lock:
            if self._snapshot is None:
                ordered = [self._entries[key][1] for key in sorted(self._entries)]
                self._snapshot = PolicySnapshot(
                    policies=tuple(entry for entry in ordered if isinstance(entry, SourcedPolicy)),
                    problems=tuple(entry for entry in ordered if isinstance(entry, SourceProblem)),
                )
            return self._snapshot

    def wait_synced(self, timeout: float) -> bool:
        """Wait until every scope has been listed once; False if that took longer than ``timeout`` seconds."""
        return self.informer.wait_synced(timeout)

    def synced(self) -> bool:
        """True once every scope has been listed at least once."""
        return self.informer.synced()

    @property
    def running(self) -> bool:
        """Whether a watching thread is still alive."""
        return self.informer.running

    def close(self, timeout: float = 2.0) -> None:
        """Stop watching (see :meth:`Informer.close`). Idempotent."""
        self.informer.close(timeout)

    # ------------------------------------------------------------------ the cache's changes

    def _changed(self, kind: str, key: Key, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        del old
        with self._lock:
            if new is None:
                changed = self._entries.pop(key, None) is not None
            else:
                part = validated_part(new)
                known = self._entries.get(key)
                if known is not None and known[0] == part:
                    return  # the status (or nothing validated) changed
                entry = policy_from_resource(new)
                changed = known is None or known[1] != entry
                self._entries[key] = (part, entry)
            if changed:
                self._snapshot = None
        if changed and self._on_change is not None:
            try:
                self._on_change()
            except Exception:
                log.exception("the CanaryPolicy on_change callback failed")
