"""A watch cache (client-go's reflector and informer): one kind of object, listed and watched, kept in memory.

One background thread per scope (the whole cluster, or each namespace given) does what client-go's
reflector does:

1. LIST the scope; the result replaces the scope's part of the cache (the objects that vanished are
   reported deleted, the changed ones modified) and its ``resourceVersion`` is where the watch starts.
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
   ``close()``; meanwhile ``get()`` keeps serving the last state it knew.

Objects are kept as the server's JSON (dicts; the official client's watch is used without turning events
into its models, which costs more than the rest of a pass), after ``transform`` (by default
:func:`strip`, client-go's ``TransformFunc`` idiom: ``managedFields`` and kubectl's last-applied annotation,
often the largest part of an object, are dropped). A cached object is shared: callers must not change it.

Writes still go to the API server with their guards; the writer hands the server's answer to
:meth:`Informer.upsert` (write-through), so the next pass reads what it wrote, and the watch event of that
write, carrying the same ``resourceVersion``, changes nothing and notifies no one: a controller's own
writes do not wake it up. After a conflict the writer calls :meth:`Informer.refresh` to read the object
from the server.

Handlers (``add_handler``) are called from the watching thread, outside the lock, with the event type
(``ADDED``, ``MODIFIED``, ``DELETED``), the object's ``(namespace, name)`` and its old and new state.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

from kubernetes import watch

from controller.adapters.kubernetes.api import KubeApi, Resource, as_dict
from controller.errors import ApiError, NotFoundError

log = logging.getLogger(__name__)

HTTP_GONE = 410
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

Key = tuple[str, str]
Handler = Callable[[str, Key, "dict[str, Any] | None", "dict[str, Any] | None"], None]


def strip(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` without ``metadata.managedFields`` and kubectl's last-applied annotation (nothing here reads them)."""
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict) or (
        "managedFields" not in metadata and LAST_APPLIED not in (metadata.get("annotations") or {})
    ):
        return obj
    metadata = {key: value for key, value in metadata.items() if key != "managedFields"}
    annotations = metadata.get("annotations")
    if isinstance(annotations, dict) and LAST_APPLIED in annotations:
        metadata["annotations"] = {key: value for key, value in annotations.items() if key != LAST_APPLIED}
    return {**obj, "metadata": metadata}


def key_of(obj: dict[str, Any]) -> Key:
    """``(namespace, name)`` of a stored object."""
    metadata = obj.get("metadata") or {}
    return (str(metadata.get("namespace") or ""), str(metadata.get("name") or ""))


def newer(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """Whether ``new`` is a later state of the object than ``old`` (a different one when their order is unknown).

    ``resourceVersion`` is opaque in the API's contract, but every API server backed by etcd (and the
    emulator) sets it to the etcd revision, an increasing integer. When both are integers, an event older
    than an object written through (:meth:`Informer.upsert`) never replaces it: the watch may still deliver
    another writer's earlier change of the object after this controller's own write.
    """
    before, after = version_of(old), version_of(new)
    if before is None or after is None or before == after:
        return before != after or old is None
    if before.isdigit() and after.isdigit():
        return int(after) > int(before)
    return True


def version_of(obj: dict[str, Any] | None) -> str | None:
    """``metadata.resourceVersion`` of an object, None for none."""
    if obj is None:
        return None
    version = (obj.get("metadata") or {}).get("resourceVersion")
    return str(version) if version else None


_Change = tuple[str, Key, "dict[str, Any] | None", "dict[str, Any] | None"]


class _RawWatch(watch.Watch):
    """The official client's watch, with each event's object left as the server's JSON (no model)."""

    def get_return_type(self, func: Any) -> None:
        del func


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

    def holds(self, key: Key) -> bool:
        return self.namespace is None or key[0] == self.namespace


@dataclass
class InformerStats:
    """Counts since the start, for metrics and the scale benchmark."""

    lists: int = 0
    events: dict[str, int] = field(default_factory=dict)


class Informer:
    """One kind of object, listed and watched in the background, served from memory (see the module docstring).

    Args:
        api: the Kubernetes API to watch.
        resource: the kind.
        namespaces: the namespaces to watch, each with its own watch; None (or empty) for the whole cluster.
        label_selector: only objects with these labels.
        field_selector: only objects matching these fields.
        transform: applied to every object before it is cached (default :func:`strip`).
        watch_timeout_seconds: ``timeoutSeconds`` of each watch; the watch is then opened again.
        backoff_initial: first delay, in seconds, before retrying a failed call.
        backoff_max: longest delay between retries.
        start: start the watching threads now (else call :meth:`start`).
    """

    def __init__(
        self,
        api: KubeApi,
        resource: Resource,
        *,
        namespaces: list[str] | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        transform: Callable[[dict[str, Any]], dict[str, Any]] = strip,
        watch_timeout_seconds: int = 300,
        backoff_initial: float = 0.2,
        backoff_max: float = 10.0,
        start: bool = True,
    ) -> None:
        self.api = api
        self.resource = resource
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.transform = transform
        self.watch_timeout_seconds = watch_timeout_seconds
        self.stats = InformerStats()
        self._handlers: list[Handler] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._objects: dict[Key, dict[str, Any]] = {}
        chosen: list[str | None] = list(dict.fromkeys(sorted(namespaces))) if namespaces else [None]
        self._scopes = [_Scope(namespace, _Backoff(backoff_initial, backoff_max)) for namespace in chosen]
        if start:
            self.start()

    @property
    def name(self) -> str:
        """``plural.group`` of the kind, for logs and metrics."""
        return f"{self.resource.plural}.{self.resource.group}" if self.resource.group else self.resource.plural

    def add_handler(self, handler: Handler) -> None:
        """Call ``handler(type, key, old, new)`` for every change from now on (from the watching thread)."""
        self._handlers.append(handler)

    def start(self) -> None:
        """Start one watching thread per scope (once)."""
        for scope in self._scopes:
            if scope.thread is None:
                scope.thread = threading.Thread(
                    target=self._run,
                    args=(scope,),
                    name=f"{self.resource.plural}-watch-{scope.namespace or 'all'}",
                    daemon=True,
                )
                scope.thread.start()

    # ------------------------------------------------------------------ reading

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The cached object (shared: do not change it), or None."""
        return self._objects.get((namespace, name))

    def __len__(self) -> int:
        return len(self._objects)

    def covers(self, namespace: str) -> bool:
        """Whether objects of ``namespace`` are watched (and so absent from the cache means absent)."""
        return any(scope.namespace is None or scope.namespace == namespace for scope in self._scopes)

    def synced(self) -> bool:
        """True once every scope has been listed at least once."""
        return all(scope.synced.is_set() for scope in self._scopes)

    def wait_synced(self, timeout: float) -> bool:
        """Wait until every scope has been listed once; False if that took longer than ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        return all(scope.synced.wait(max(deadline - time.monotonic(), 0.0)) for scope in self._scopes)

    @property
    def running(self) -> bool:
        """Whether a watching thread is still alive."""
        return any(scope.thread is not None and scope.thread.is_alive() for scope in self._scopes)

    # ------------------------------------------------------------------ writing through

    def upsert(self, obj: dict[str, Any]) -> None:
        """Store what the server answered to a write (write-through); handlers are not called for it."""
        stored = self.transform(obj)
        key = key_of(stored)
        with self._lock:
            if not any(scope.holds(key) for scope in self._scopes):
                return
            if not newer(self._objects.get(key), stored):
                return
            self._objects[key] = stored

    def refresh(self, namespace: str, name: str) -> dict[str, Any] | None:
        """Read the object from the server into the cache (after a conflict); returns it, None when gone.

        Raises:
            CanaryError: the read failed for another reason than the object being gone.
        """
        try:
            obj = self.api.get_obj(resource=self.resource, namespace=namespace, name=name)
        except NotFoundError:
            with self._lock:
                self._objects.pop((namespace, name), None)
            return None
        if not isinstance(obj, dict):
            obj = self.api.api_client.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]
        self.upsert(as_dict(obj))
        return self.get(namespace, name)

    # ------------------------------------------------------------------ stopping

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
                    log.warning("the %s watch of %s did not stop in time", self.name, scope.namespace or "the cluster")
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
                    log.info("%s watch in %s expired (%s); listing again", self.name, where, exc)
                    delay = scope.backoff.next() if scope.expired_in_a_row > 1 else 0.0
                else:
                    delay = scope.backoff.next()
                    log.warning("%s list/watch in %s failed: %s; listing again in %.1fs", self.name, where, exc, delay)
            except Exception:
                if self._stopping.is_set():
                    break
                resource_version = None
                delay = scope.backoff.next()
                log.exception(
                    "%s list/watch in %s failed unexpectedly; listing again in %.1fs", self.name, where, delay
                )
            if delay:
                self._stopping.wait(delay)

    def _list(self, scope: _Scope) -> str:
        """LIST the scope, replace its part of the cache; returns the list's resourceVersion."""
        body = self.api.list_raw(
            resource=self.resource,
            namespace=scope.namespace,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
        )
        version = (body.get("metadata") or {}).get("resourceVersion")
        if not version:
            raise ApiError([f"list {self.name}: the answer has no resourceVersion"])
        fresh: dict[Key, dict[str, Any]] = {}
        for item in body.get("items") or []:
            if isinstance(item, dict):
                stored = self.transform(item)
                fresh[key_of(stored)] = stored
        changes: list[_Change] = []
        with self._lock:
            self.stats.lists += 1
            for key, gone in list(self._objects.items()):
                if scope.holds(key) and key not in fresh:
                    del self._objects[key]
                    changes.append(("DELETED", key, gone, None))
            for key, new in fresh.items():
                old = self._objects.get(key)
                if old is None or newer(old, new):
                    changes.append(("ADDED" if old is None else "MODIFIED", key, old, new))
                    self._objects[key] = new
        scope.synced.set()
        self._notify(changes)
        return str(version)

    def _watch(self, scope: _Scope, resource_version: str) -> str:
        """WATCH from ``resource_version`` until the server ends the watch; returns the last version seen.

        Raises:
            ApiError: the watch failed (code 410 when the version is too old).
        """
        current: Any = cast(Any, _RawWatch)()
        with self._lock:
            scope.watch = current
        function, fixed = self.api.watch_call(resource=self.resource, namespace=scope.namespace)
        kwargs: dict[str, Any] = {
            **fixed,
            "resource_version": resource_version,
            "allow_watch_bookmarks": True,
            # Passing timeout_seconds also stops Watch.stream from retrying by itself after a 410.
            "timeout_seconds": self.watch_timeout_seconds,
            "_request_timeout": (self.api.timeout, self.watch_timeout_seconds + self.api.timeout),
        }
        if self.label_selector:
            kwargs["label_selector"] = self.label_selector
        if self.field_selector:
            kwargs["field_selector"] = self.field_selector

        def consume() -> str:
            version = resource_version
            stream: Iterator[Any] = current.stream(function, **kwargs)
            try:
                for event in stream:
                    if self._stopping.is_set():
                        break
                    version = self._apply(scope, event, version)
            finally:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()
            return version

        opened = time.monotonic()
        try:
            if self._stopping.is_set():
                return resource_version
            return self.api.call(
                consume,
                verb="watch",
                resource=self.resource.plural,
                group=self.resource.group,
                namespace=scope.namespace or "",
            )
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
        kind = str(event.get("type"))
        scope.backoff.reset()
        scope.expired_in_a_row = 0
        self.stats.events[kind] = self.stats.events.get(kind, 0) + 1
        if kind == "BOOKMARK":
            return seen
        stored = self.transform(obj)
        key = key_of(stored)
        change: _Change
        with self._lock:
            old = self._objects.get(key)
            if kind in {"ADDED", "MODIFIED"}:
                if old is not None and not newer(old, stored):
                    return seen  # already cached (our own write, written through), or older than it
                self._objects[key] = stored
                change = ("ADDED" if old is None else "MODIFIED", key, old, stored)
            elif kind == "DELETED":
                if self._objects.pop(key, None) is None:
                    return seen
                change = ("DELETED", key, old, None)
            else:
                log.debug("ignoring a %s watch event", kind)
                return seen
        self._notify([change])
        return seen

    def _notify(self, changes: list[_Change]) -> None:
        for change in changes:
            for handler in self._handlers:
                try:
                    handler(*change)
                except Exception:
                    log.exception("a %s watch handler failed", self.name)


class Informers:
    """A daemon's watch caches: added ones, and lazy ones made and started the first time they are asked for
    (a cluster without TCPRoutes never has them listed). Handlers given to :meth:`on_create` are added to
    each lazy cache before it starts, so none of its events is missed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._all: dict[str, Informer] = {}
        self._hooks: list[Callable[[str, Informer], None]] = []
        self._closed = False

    def add(self, informer: Informer) -> Informer:
        """Hold ``informer`` (not started here) so it is counted and closed with the others."""
        with self._lock:
            self._all[f"{informer.name}/{len(self._all)}"] = informer
        return informer

    def on_create(self, hook: Callable[[str, Informer], None]) -> None:
        """Call ``hook(name, informer)`` for every lazy cache made from now on, before it starts."""
        self._hooks.append(hook)

    def lazy(self, factory: Callable[[str], Informer]) -> Callable[[str], Informer | None]:
        """A getter by name: the first call with a name makes ``factory(name)``, runs the hooks and starts it."""

        def get(name: str) -> Informer | None:
            with self._lock:
                if self._closed:
                    return None
                informer = self._all.get(name)
                if informer is None:
                    informer = self._all[name] = factory(name)
                    for hook in self._hooks:
                        hook(name, informer)
                    informer.start()
            return informer

        return get

    def all(self) -> list[Informer]:
        """Every cache made so far."""
        with self._lock:
            return list(self._all.values())

    def close(self) -> None:
        """Stop every cache; none is made afterwards."""
        with self._lock:
            self._closed = True
            informers = list(self._all.values())
        for informer in informers:
            informer.close()
