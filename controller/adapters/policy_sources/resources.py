"""Policies from CanaryPolicy resources, listed and watched.

``CrdPolicySource`` serves CanaryPolicy resources from an in-memory cache kept by one background thread
per scope (the whole cluster, or each namespace given), doing what client-go's reflector does:

1. LIST the resources; the result replaces the scope's part of the cache and its ``resourceVersion`` is
   where the watch starts.
2. WATCH from that ``resourceVersion`` (``allowWatchBookmarks``, ``timeoutSeconds``), applying ``ADDED``,
   ``MODIFIED`` and ``DELETED`` to the cache and remembering the ``resourceVersion`` of every event,
   bookmarks included.
3. When the server ends the watch normally (its timeout, or a graceful close), WATCH again from the last
   ``resourceVersion`` seen: nothing is missed and nothing is listed again.
4. When the watch fails (a cut connection, an API error) or the server answers ``410 Gone``/``Expired``
   ("too old resource version": the history needed to resume is gone), LIST again: the cache is rebuilt
   from the list, so objects created or deleted in the meantime are right whatever the watch missed.
   The official client's ``Watch.stream`` retries once by itself after a 410, from the same stale
   version, unless ``timeout_seconds`` is passed; it is always passed here, so every 410 reaches this
   code as an ``ApiException`` and leads to a relist.
5. Failures are retried with an exponential backoff (``backoff_initial`` doubling up to ``backoff_max``,
   with a little jitter); a first 410 relists at once. The backoff starts over once a watch delivers an
   event, ends normally or stays open for ``backoff_max`` seconds. Nothing stops the thread but
   ``close()``; meanwhile ``snapshot()`` keeps serving the last state it knew.

Each cached object is validated as a policy file is (``controller.core.problems.validate_policy``): a
valid one is a ``SourcedPolicy``, an invalid one a ``SourceProblem`` naming each field at fault.
``on_change`` is called (from the watching thread) whenever what ``snapshot()`` returns changes, so writes
that change nothing the controller reads (its own status updates) do not wake it up.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from kubernetes import watch

from controller.adapters.kubernetes.api import KubeApi, as_dict
from controller.adapters.kubernetes.status import GROUP, PLURAL, VERSION
from controller.core.problems import validate_policy
from controller.errors import ApiError
from controller.ports import PolicyRef, PolicySnapshot, SourcedPolicy, SourceProblem

log = logging.getLogger(__name__)

HTTP_GONE = 410

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


class _Backoff:
    """Exponential delays between retries: ``initial``, doubled each time up to ``maximum``, with jitter."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self._next = initial

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        return min(delay * random.uniform(1.0, 1.1), self.maximum)

    def reset(self) -> None:
        self._next = self.initial


@dataclass(eq=False)
class _Scope:
    """One list/watch loop: the whole cluster (``namespace`` None) or one namespace."""

    namespace: str | None
    backoff: _Backoff
    synced: threading.Event = field(default_factory=threading.Event)
    watch: Any = None
    expired_in_a_row: int = 0
    thread: threading.Thread | None = None

    def holds(self, key: tuple[str, str]) -> bool:
        return self.namespace is None or key[0] == self.namespace


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
        self.api = api
        self.label_selector = label_selector
        self.watch_timeout_seconds = watch_timeout_seconds
        self._on_change = on_change
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._cache: dict[tuple[str, str], CacheEntry] = {}
        self._snapshot = PolicySnapshot()
        chosen: list[str | None] = list(dict.fromkeys(sorted(namespaces))) if namespaces else [None]
        self._scopes = [_Scope(namespace, _Backoff(backoff_initial, backoff_max)) for namespace in chosen]
        for scope in self._scopes:
            scope.thread = threading.Thread(
                target=self._run, args=(scope,), name=f"canarypolicy-watch-{scope.namespace or 'all'}", daemon=True
            )
            scope.thread.start()

    # ------------------------------------------------------------------ public

    def snapshot(self) -> PolicySnapshot:
        """The cached policies and problems (empty until the first list succeeded)."""
        with self._lock:
            return self._snapshot

    def wait_synced(self, timeout: float) -> bool:
        """Wait until every scope has been listed once; False if that took longer than ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        return all(scope.synced.wait(max(deadline - time.monotonic(), 0.0)) for scope in self._scopes)

    def synced(self) -> bool:
        """True once every scope has been listed at least once."""
        return all(scope.synced.is_set() for scope in self._scopes)

    @property
    def running(self) -> bool:
        """Whether a watching thread is still alive."""
        return any(scope.thread is not None and scope.thread.is_alive() for scope in self._scopes)

    def close(self, timeout: float = 2.0) -> None:
        """Stop the watching threads: open watches are cut, backoff waits end. Idempotent.

        A thread stuck in a LIST call ends when that call does (at most the API's request timeout); it
        is a daemon thread, so it never holds up the process.
        """
        self._stopping.set()
        deadline = time.monotonic() + timeout
        for scope in self._scopes:
            while scope.thread is not None and scope.thread.is_alive():
                with self._lock:
                    current = scope.watch
                if current is not None:
                    current.stop()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    log.warning("the CanaryPolicy watch of %s did not stop in time", scope.namespace or "the cluster")
                    break
                scope.thread.join(min(0.05, remaining))

    # ------------------------------------------------------------------ the list/watch loop

    def _run(self, scope: _Scope) -> None:
        where = f"namespace {scope.namespace}" if scope.namespace else "the cluster"
        resource_version: str | None = None
        while not self._stopping.is_set():
            delay = 0.0
            try:
                if resource_version is None:
                    resource_version = self._list(scope)
                resource_version = self._watch(scope, resource_version)
                scope.backoff.reset()
            except ApiError as exc:
                if self._stopping.is_set():
                    break
                resource_version = None
                if exc.code == HTTP_GONE:
                    scope.expired_in_a_row += 1
                    log.info("CanaryPolicy watch in %s expired (%s); listing again", where, exc)
                    delay = scope.backoff.next() if scope.expired_in_a_row > 1 else 0.0
                else:
                    delay = scope.backoff.next()
                    log.warning("CanaryPolicy list/watch in %s failed: %s; listing again in %.1fs", where, exc, delay)
            except Exception:
                if self._stopping.is_set():
                    break
                resource_version = None
                delay = scope.backoff.next()
                log.exception("CanaryPolicy list/watch in %s failed unexpectedly; listing again in %.1fs", where, delay)
            if delay:
                self._stopping.wait(delay)

    def _list_call(self, scope: _Scope) -> tuple[Callable[..., Any], tuple[str, ...]]:
        if scope.namespace is None:
            return self.api.custom.list_cluster_custom_object, (GROUP, VERSION, PLURAL)
        return self.api.custom.list_namespaced_custom_object, (GROUP, VERSION, scope.namespace, PLURAL)

    def _selector(self) -> dict[str, Any]:
        return {"label_selector": self.label_selector} if self.label_selector else {}

    def _list(self, scope: _Scope) -> str:
        """LIST the scope, replace its part of the cache; returns the list's resourceVersion."""
        function, args = self._list_call(scope)
        body = as_dict(
            self.api.call(
                lambda: function(*args, _request_timeout=self.api.timeout, **self._selector()),
                verb="list",
                resource=PLURAL,
                group=GROUP,
                namespace=scope.namespace or "",
            )
        )
        version = (body.get("metadata") or {}).get("resourceVersion")
        if not version:
            raise ApiError([f"list {PLURAL}.{GROUP}: the answer has no resourceVersion"])
        fresh: dict[tuple[str, str], CacheEntry] = {}
        for item in body.get("items") or []:
            if isinstance(item, dict):
                metadata = item.get("metadata") or {}
                fresh[(str(metadata.get("namespace") or ""), str(metadata.get("name") or ""))] = policy_from_resource(
                    item
                )
        with self._lock:
            cache = {key: entry for key, entry in self._cache.items() if not scope.holds(key)}
            cache.update(fresh)
            changed = self._set_cache(cache)
        scope.synced.set()
        if changed:
            self._notify()
        return str(version)

    def _watch(self, scope: _Scope, resource_version: str) -> str:
        """WATCH from ``resource_version`` until the server ends the watch; returns the last version seen.

        Raises:
            ApiError: the watch failed (code 410 when the version is too old).
        """
        current: Any = cast(Any, watch.Watch)()
        with self._lock:
            scope.watch = current
        function, args = self._list_call(scope)
        kwargs: dict[str, Any] = {
            "resource_version": resource_version,
            "allow_watch_bookmarks": True,
            # Passing timeout_seconds also stops Watch.stream from retrying by itself after a 410.
            "timeout_seconds": self.watch_timeout_seconds,
            "_request_timeout": (self.api.timeout, self.watch_timeout_seconds + self.api.timeout),
            **self._selector(),
        }

        def consume() -> str:
            version = resource_version
            stream = current.stream(function, *args, **kwargs)
            try:
                for event in stream:
                    if self._stopping.is_set():
                        break
                    version = self._apply(scope, event, version)
            finally:
                stream.close()
            return version

        opened = time.monotonic()
        try:
            if self._stopping.is_set():
                return resource_version
            return self.api.call(consume, verb="watch", resource=PLURAL, group=GROUP, namespace=scope.namespace or "")
        finally:
            with self._lock:
                scope.watch = None
            if time.monotonic() - opened >= scope.backoff.maximum:
                scope.backoff.reset()  # a watch that stayed open that long was healthy, events or not

    def _apply(self, scope: _Scope, event: Any, version: str) -> str:
        """Apply one watch event to the cache; returns the resourceVersion to resume from."""
        obj = event.get("raw_object") if isinstance(event, dict) else None
        if not isinstance(obj, dict):
            return version
        metadata = obj.get("metadata") or {}
        seen = str(metadata.get("resourceVersion") or version)
        kind = event.get("type")
        scope.backoff.reset()
        scope.expired_in_a_row = 0
        if kind == "BOOKMARK":
            return seen
        key = (str(metadata.get("namespace") or ""), str(metadata.get("name") or ""))
        with self._lock:
            cache = dict(self._cache)
            if kind in {"ADDED", "MODIFIED"}:
                cache[key] = policy_from_resource(obj)
            elif kind == "DELETED":
                cache.pop(key, None)
            else:
                log.debug("ignoring a %s watch event", kind)
                return seen
            changed = self._set_cache(cache)
        if changed:
            self._notify()
        return seen

    def _set_cache(self, cache: dict[tuple[str, str], CacheEntry]) -> bool:
        """Replace the cache and the snapshot; True when the snapshot changed. Caller holds the lock."""
        if cache == self._cache:
            return False
        self._cache = cache
        ordered = [cache[key] for key in sorted(cache)]
        self._snapshot = PolicySnapshot(
            policies=tuple(entry for entry in ordered if isinstance(entry, SourcedPolicy)),
            problems=tuple(entry for entry in ordered if isinstance(entry, SourceProblem)),
        )
        return True

    def _notify(self) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change()
        except Exception:
            log.exception("the CanaryPolicy on_change callback failed")
