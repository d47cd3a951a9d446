"""The object store and the API machinery on top of it: the write semantics of kube-apiserver.

Emulates, for every resource type in the registry:

* one global ``resourceVersion`` counter (a string on the wire), bumped by every write that changes an
  object; a write that changes nothing is not stored and keeps the version, as etcd-backed storage does;
* create (201, ``AlreadyExists``, ``generateName``, ``uid``, ``creationTimestamp``, ``generation``), replace
  with optimistic concurrency (stale ``resourceVersion`` -> 409 ``Conflict``; missing on a custom resource ->
  422), merge / JSON / strategic-merge patch with ``resourceVersion`` inside a patch acting as a precondition,
  delete (with ``preconditions``, finalizers and ``deletionTimestamp``);
* the ``status`` subresource: writes to the main resource keep ``.status``, writes to ``/status`` change
  only ``.status``; ``generation`` moves only when something outside ``metadata`` (and ``status``) changes;
* structural-schema pruning, defaulting and validation of custom resources (see ``schema``);
* LIST with label and field selectors and ``limit``/``continue``; WATCH from a ``resourceVersion`` out of
  a bounded event history kept per resource type (one watch cache per resource, ``watch_cache.go``), so
  writes to one resource never expire another's watch; ``410 Expired`` inside the stream when the version
  is older than that resource's history; objects moving in or out of a selector appear as ``ADDED`` /
  ``DELETED``, as with the watch cache; with ``allowWatchBookmarks=true``, ``BOOKMARK`` events about once
  a minute and 2 s before the watch's timeout (``cache_watcher.go``, ``nextBookmarkTime``), carrying the
  server's current ``resourceVersion`` (as a cacher kept current by etcd progress notifications does);
* namespaces: creating in a missing namespace is ``NotFound`` (NamespaceLifecycle admission); deleting a
  namespace deletes its objects at once;
* CustomResourceDefinitions written through the API register (or re-register, or remove) their resource.

Everything runs under one lock, so every compare-and-swap is atomic: of two writers with the same
``resourceVersion`` exactly one wins.

Deliberately not emulated: admission webhooks, RBAC and authentication (403s come from fault injection),
``managedFields`` and server-side apply, ``deletecollection``, graceful deletion periods, the namespace
``Terminating`` phase, garbage collection of dependents, consistent snapshots for paginated LISTs (pages
are read from the current state) and LIST at an old ``resourceVersion`` (always served from the latest
state). Built-in kinds are checked for ObjectMeta only (plus a Deployment's selector), not against their
full OpenAPI schemas, and get only their most visible defaults.
"""

from __future__ import annotations

import base64
import binascii
import collections
import copy
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from canary_sandbox.kubeapi import meta as objmeta
from canary_sandbox.kubeapi.patch import (
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    MalformedPatchError,
    PatchError,
    json_patch,
    merge_patch,
)
from canary_sandbox.kubeapi.resources import (
    CRD_GROUP,
    Registry,
    ResourceType,
    builtin_resources,
    resource_from_crd,
    version_priority,
)
from canary_sandbox.kubeapi.selectors import Matcher, SelectorError, parse_field_selector, parse_label_selector
from canary_sandbox.kubeapi.status import (
    ApiError,
    Cause,
    already_exists,
    bad_request,
    conflict,
    expired,
    internal,
    invalid,
    invalid_patch,
    not_found,
    path_not_found,
    success_status,
    unsupported_media_type,
)

Obj = dict[str, Any]
ObjectKey = tuple[str, str]
INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
FIRST_RESOURCE_VERSION = 1000
DEFAULT_WATCH_HISTORY = 1000
DEFAULT_RECORD_LIMIT = 100_000
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


@dataclass(frozen=True)
class WriteRecord:
    """One successful write, for tests to inspect.

    Attributes:
        time: ``time.monotonic()`` when the write was committed.
        verb: ``POST``, ``PUT``, ``PATCH`` or ``DELETE``.
        resource: ``plural.group`` (``virtualservices.networking.istio.io``; ``configmaps`` for core).
        namespace: the object's namespace, None for cluster-scoped objects.
        name: the object's name.
        resource_version: the object's ``resourceVersion`` after the write.
        object: a deep copy of the stored object after the write (before it, for a delete).
        subresource: ``status`` for writes to ``/status``, else None.
        source: ``http`` for requests, ``python`` for the emulator's direct API.
        changed: False when the write changed nothing (no new ``resourceVersion``, no watch event).
        patch_type: the PATCH media type, None for other verbs.
        user_agent: the request's ``User-Agent`` header (tells writers apart), None for the Python API.
    """

    time: float
    verb: str
    resource: str
    namespace: str | None
    name: str
    resource_version: str
    object: Obj
    subresource: str | None = None
    source: str = "http"
    changed: bool = True
    patch_type: str | None = None
    user_agent: str | None = None


@dataclass(frozen=True)
class StoredEvent:
    """A change as the watch history keeps it (objects in storage form; never mutated)."""

    rv: int
    type: str
    resource: tuple[str, str]
    namespace: str
    obj: Obj
    old: Obj | None


@dataclass
class Request:
    """One API call, already routed: what the machinery needs to serve it.

    Attributes:
        verb: ``GET``, ``LIST``, ``WATCH``, ``POST``, ``PUT``, ``PATCH`` or ``DELETE``.
        resource: the resource type.
        version: the API version the client used (responses are served in it).
        namespace: namespace from the URL (None for cluster-scoped or all-namespace requests).
        name: object name from the URL.
        subresource: ``status`` or None.
        query: query parameters (last value wins).
        body: the parsed JSON body, or None.
        content_type: the body's media type without parameters.
        source: ``http`` or ``python``.
        user_agent: the ``User-Agent`` header of an HTTP request.
    """

    verb: str
    resource: ResourceType
    version: str
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None
    query: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    content_type: str = ""
    source: str = "http"
    user_agent: str | None = None


@dataclass
class Result:
    """What to answer: status code, JSON body and ``Warning`` header texts."""

    code: int
    body: Obj
    warnings: list[str] = field(default_factory=list)


def _metadata(obj: Mapping[str, Any]) -> Obj:
    value = obj.get("metadata")
    return value if isinstance(value, dict) else {}


def _object_key(obj: Mapping[str, Any]) -> ObjectKey:
    metadata = _metadata(obj)
    return (str(metadata.get("namespace") or ""), str(metadata.get("name") or ""))


def _without(obj: Mapping[str, Any], *keys: str) -> Obj:
    return {k: v for k, v in obj.items() if k not in keys}


class Watch:
    """One open watch: replays, then waits for, the events a WATCH request should see.

    Created by :meth:`ObjectStore.open_watch`; the HTTP layer writes :attr:`initial`, then calls
    :meth:`next_events` until it returns ``None``.
    """

    def __init__(
        self,
        store: ObjectStore,
        request: Request,
        matches: Matcher,
        cursor: int,
        initial: list[Obj],
        deadline: float,
    ) -> None:
        self._store = store
        self._request = request
        self._matches = matches
        self._cursor = cursor
        self._deadline = deadline
        self._epoch = store.watch_epoch
        self.initial = initial
        self.end_reason = ""
        self._bookmarks = request.query.get("allowWatchBookmarks", "").lower() in ("true", "1")
        self._next_bookmark = self._bookmark_after(time.monotonic())

    def _bookmark_after(self, now: float) -> float | None:
        """``cache_watcher.go`` ``nextBookmarkTime``: a minute on, or 2 s before the deadline if sooner."""
        if not self._bookmarks:
            return None
        due = min(now + self._store.bookmark_seconds, self._deadline - 2.0)
        return due if due > now else None

    def _bookmark(self) -> Obj:
        """A BOOKMARK: an object of the watched kind holding only the current ``resourceVersion``."""
        rtype = self._request.resource
        metadata: Obj = {"resourceVersion": str(self._store.resource_version)}
        if not rtype.custom:
            metadata["creationTimestamp"] = None
        return {
            "type": "BOOKMARK",
            "object": {
                "kind": rtype.kind,
                "apiVersion": rtype.api_version(self._request.version),
                "metadata": metadata,
            },
        }

    def next_events(self, poll_seconds: float) -> list[Obj] | None:
        """Events after the cursor, waiting up to ``poll_seconds`` for some.

        Returns:
            A possibly empty list of watch events, or None when the watch is over; then
            :attr:`end_reason` is ``timeout``, ``shutdown``, ``dropped``, ``dropped-graceful`` or ``lagging``.
        """
        store = self._store
        key = self._request.resource.key
        with store.cond:
            now = time.monotonic()
            remaining = self._deadline - now
            if self._next_bookmark is not None:
                remaining = min(remaining, self._next_bookmark - now)
            if remaining > 0 and store.last_event_rv <= self._cursor and not self._ended():
                store.cond.wait(min(poll_seconds, remaining))
            if self._ended():
                return None
            if store.compacted_rv_of(key) > self._cursor:
                self.end_reason = "lagging"
                return None
            events = store.events_since(self._cursor, self._request, self._matches)
            self._cursor = max(self._cursor, store.last_event_rv)
            now = time.monotonic()
            if self._next_bookmark is not None and now >= self._next_bookmark:
                events.append(self._bookmark())
                self._next_bookmark = self._bookmark_after(now)
        if not events and now >= self._deadline:
            self.end_reason = "timeout"
            return None
        return events

    def _ended(self) -> bool:
        store = self._store
        if store.stopping:
            self.end_reason = "shutdown"
        elif store.watch_epoch != self._epoch:
            self.end_reason = "dropped-graceful" if store.last_drop_graceful else "dropped"
        return bool(self.end_reason)


class ObjectStore:
    """All objects of the emulated cluster, and the verbs that read and write them.

    Args:
        watch_history: how many events the watch history of each resource type keeps (older ones are
            compacted away).
        record_limit: how many :class:`WriteRecord` entries are kept.
        clock: monotonic clock for history timestamps.
    """

    def __init__(
        self,
        *,
        watch_history: int = DEFAULT_WATCH_HISTORY,
        record_limit: int = DEFAULT_RECORD_LIMIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if watch_history < 1:
            raise ValueError("watch_history must be at least 1")
        self.registry = Registry(builtin_resources())
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self._objects: dict[tuple[str, str], dict[ObjectKey, Obj]] = collections.defaultdict(dict)
        self._rv = FIRST_RESOURCE_VERSION
        # One history per resource type, as kube-apiserver keeps one watch cache per resource
        # (storage/cacher/watch_cache.go): writes to Leases never expire a quiet CanaryPolicy watch.
        self._watch_history = watch_history
        self._events: dict[tuple[str, str], collections.deque[StoredEvent]] = {}
        self._compacted: dict[tuple[str, str], int] = {}
        self.compacted_rv = FIRST_RESOURCE_VERSION
        self.last_event_rv = FIRST_RESOURCE_VERSION
        self.bookmark_seconds = 60.0
        self._records: collections.deque[WriteRecord] = collections.deque(maxlen=record_limit)
        self._clock = clock
        self._next_cluster_ip = 10
        self.stopping = False
        self.watch_epoch = 0
        self.last_drop_graceful = False
        self.expire_next_watches = 0
        for name in INITIAL_NAMESPACES:
            self.create(self._python_request("namespaces", {"metadata": {"name": name}}))

    # ------------------------------------------------------------------ helpers

    @property
    def resource_version(self) -> int:
        """The latest ``resourceVersion`` handed out."""
        with self.lock:
            return self._rv

    def _python_request(self, resource: str, body: Obj | None = None, **fields: Any) -> Request:
        rtype = self.registry.resolve(resource)
        return Request("POST", rtype, rtype.storage_version, body=body, source="python", **fields)

    def present(self, obj: Mapping[str, Any], rtype: ResourceType, version: str) -> Obj:
        """A copy of a stored object as served in ``version``."""
        out = copy.deepcopy(dict(obj))
        out["apiVersion"] = rtype.api_version(version)
        out["kind"] = rtype.kind
        return {"apiVersion": out.pop("apiVersion"), "kind": out.pop("kind"), **out}

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _append_event(self, event: StoredEvent) -> None:
        history = self._events.setdefault(event.resource, collections.deque(maxlen=self._watch_history))
        if len(history) == history.maxlen:
            self._compacted[event.resource] = history[0].rv
        history.append(event)
        self.last_event_rv = event.rv
        self.cond.notify_all()

    def _record(self, request: Request, verb: str, obj: Obj, *, changed: bool = True) -> None:
        rtype = request.resource
        metadata = _metadata(obj)
        self._records.append(
            WriteRecord(
                time=self._clock(),
                verb=verb,
                resource=rtype.group_resource,
                namespace=str(metadata.get("namespace")) if rtype.namespaced else None,
                name=str(metadata.get("name") or ""),
                resource_version=str(metadata.get("resourceVersion") or ""),
                object=copy.deepcopy(obj),
                subresource=request.subresource,
                source=request.source,
                changed=changed,
                patch_type=request.content_type if verb == "PATCH" else None,
                user_agent=request.user_agent,
            )
        )

    def records(self) -> list[WriteRecord]:
        """Every kept write record, oldest first."""
        with self.lock:
            return list(self._records)

    def clear_records(self) -> None:
        """Forget the write records (the objects stay)."""
        with self.lock:
            self._records.clear()

    def compacted_rv_of(self, key: tuple[str, str]) -> int:
        """The oldest ``resourceVersion`` a watch of that resource can no longer start from."""
        return max(self.compacted_rv, self._compacted.get(key, FIRST_RESOURCE_VERSION))

    def compact(self) -> int:
        """Drop the whole watch history, as an etcd compaction does; returns the compacted version."""
        with self.cond:
            self._events.clear()
            self._compacted.clear()
            self.compacted_rv = self._rv
            self.cond.notify_all()
            return self._rv

    def stop(self) -> None:
        """End every open watch (used at shutdown)."""
        with self.cond:
            self.stopping = True
            self.cond.notify_all()

    def drop_watches(self, *, graceful: bool) -> None:
        """End every open watch now, cleanly or by cutting the connection."""
        with self.cond:
            self.watch_epoch += 1
            self.last_drop_graceful = graceful
            self.cond.notify_all()

    def _bucket(self, rtype: ResourceType) -> dict[ObjectKey, Obj]:
        return self._objects[rtype.key]

    def _namespace(self, request: Request) -> str:
        return (request.namespace or "") if request.resource.namespaced else ""

    def _current(self, request: Request) -> Obj:
        key = (self._namespace(request), request.name or "")
        current = self._bucket(request.resource).get(key)
        if current is None:
            rtype = request.resource
            raise not_found(rtype.group, rtype.plural, request.name or "")
        return current

    def get_stored(self, rtype: ResourceType, namespace: str, name: str) -> Obj | None:
        """The stored object (not a copy: never mutate it), or None."""
        with self.lock:
            return self._bucket(rtype).get((namespace if rtype.namespaced else "", name))

    def warnings_for(self, request: Request) -> list[str]:
        """``Warning`` texts every answer to this request carries (version deprecation)."""
        deprecation = request.resource.deprecations.get(request.version)
        return [deprecation] if deprecation else []

    # ------------------------------------------------------------------ reads

    def get(self, request: Request) -> Result:
        """GET one object (or its ``status`` subresource, which serves the whole object)."""
        with self.lock:
            self._check_subresource(request)
            current = self._current(request)
            return Result(200, self.present(current, request.resource, request.version), self.warnings_for(request))

    def _selection(self, request: Request) -> Matcher:
        try:
            labels = parse_label_selector(request.query.get("labelSelector"))
            fields = parse_field_selector(request.query.get("fieldSelector"))
        except SelectorError as exc:
            raise bad_request(str(exc)) from exc
        namespace = request.namespace if request.resource.namespaced else None

        def matches(obj: Mapping[str, Any]) -> bool:
            if namespace and _metadata(obj).get("namespace") != namespace:
                return False
            return labels(obj) and fields(obj)

        return matches

    def list_collection(self, request: Request) -> Result:
        """LIST a collection, filtered by namespace and selectors, sorted like etcd keys."""
        rtype = request.resource
        matches = self._selection(request)
        limit = _int_param(request.query, "limit")
        start: list[str] | None = None
        if request.query.get("continue"):
            try:
                start = json.loads(base64.urlsafe_b64decode(request.query["continue"]))["start"]
            except (ValueError, KeyError, TypeError, binascii.Error) as exc:
                raise bad_request(f"continue key is not valid: {exc}") from exc
        with self.lock:
            keys = sorted(k for k, obj in self._bucket(rtype).items() if matches(obj))
            if start is not None:
                keys = [k for k in keys if list(k) > start]
            metadata: Obj = {"resourceVersion": str(self._rv)}
            if limit and len(keys) > limit:
                last = keys[limit - 1]
                metadata["continue"] = base64.urlsafe_b64encode(json.dumps({"start": list(last)}).encode()).decode()
                metadata["remainingItemCount"] = len(keys) - limit
                keys = keys[:limit]
            items = [self.present(self._bucket(rtype)[k], rtype, request.version) for k in keys]
        if not rtype.custom:
            items = [_without(item, "apiVersion", "kind") for item in items]
        body = {
            "apiVersion": rtype.api_version(request.version),
            "kind": rtype.list_kind,
            "metadata": metadata,
            "items": items,
        }
        return Result(200, body, self.warnings_for(request))

    def open_watch(self, request: Request) -> Watch | ApiError:
        """Start a WATCH: synthetic ``ADDED`` events without ``resourceVersion`` (or with ``0``), else a
        replay of the history after it.

        Returns:
            The watch, or the ``Expired`` error to send as the stream's only ``ERROR`` event.

        Raises:
            ApiError: bad selectors or parameters (answered as a plain HTTP error).
        """
        matches = self._selection(request)
        timeout = _int_param(request.query, "timeoutSeconds") or 1800
        raw_rv = request.query.get("resourceVersion") or ""
        if raw_rv and not raw_rv.isdigit():
            raise bad_request(f"invalid resource version: {raw_rv!r}")
        since = int(raw_rv) if raw_rv else 0
        deadline = time.monotonic() + timeout
        rtype = request.resource
        with self.cond:
            if self.expire_next_watches > 0:
                self.expire_next_watches -= 1
                return expired(f"too old resource version: {since or self._rv} ({self._rv})")
            compacted = self.compacted_rv_of(rtype.key)
            if since and since < compacted:
                return expired(f"too old resource version: {since} ({compacted})")
            if since:
                initial = self.events_since(since, request, matches)
            else:
                initial = [
                    {"type": "ADDED", "object": self.present(obj, rtype, request.version)}
                    for _, obj in sorted(self._bucket(rtype).items())
                    if matches(obj)
                ]
            return Watch(self, request, matches, max(since, self.last_event_rv), initial, deadline)

    def events_since(self, cursor: int, request: Request, matches: Matcher) -> list[Obj]:
        """Watch events for one request after ``cursor``, with selector transitions. Caller holds the lock."""
        rtype = request.resource
        fresh: list[StoredEvent] = []
        for event in reversed(self._events.get(rtype.key, ())):
            if event.rv <= cursor:
                break
            if event.resource == rtype.key:
                fresh.append(event)
        out: list[Obj] = []
        for event in reversed(fresh):
            now = event.type != "DELETED" and matches(event.obj)
            before = matches(event.old if event.type == "MODIFIED" and event.old else event.obj)
            if event.type == "ADDED":
                kind = "ADDED" if now else ""
            elif event.type == "DELETED":
                kind = "DELETED" if before else ""
            else:
                kind = {(True, True): "MODIFIED", (False, True): "ADDED", (True, False): "DELETED"}.get(
                    (before, now), ""
                )
            if kind:
                out.append({"type": kind, "object": self.present(event.obj, rtype, request.version)})
        return out

    # ------------------------------------------------------------------ writes

    def _check_subresource(self, request: Request) -> None:
        if request.subresource and (
            request.subresource != "status" or not request.resource.has_status(request.version)
        ):
            raise path_not_found()

    def _check_type_meta(self, obj: Obj, request: Request) -> None:
        rtype = request.resource
        expected = rtype.api_version(request.version)
        if rtype.custom and (not obj.get("kind") or not obj.get("apiVersion")):
            missing = "Kind" if not obj.get("kind") else "APIVersion"
            raise bad_request(f"Object '{missing}' is missing in '{json.dumps(obj, separators=(',', ':'))[:200]}'")
        api_version = obj.setdefault("apiVersion", expected)
        kind = obj.setdefault("kind", rtype.kind)
        if api_version != expected:
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version ({expected})"
            )
        if kind != rtype.kind:
            raise bad_request(f"the kind in the data ({kind}) does not match the expected kind ({rtype.kind})")

    def _parse_body(self, request: Request) -> tuple[Obj, Obj]:
        if not isinstance(request.body, dict):
            raise bad_request("the body of the request must be a JSON object")
        obj = copy.deepcopy(request.body)
        self._check_type_meta(obj, request)
        metadata = obj.setdefault("metadata", {})
        if not isinstance(metadata, dict):
            raise bad_request("json: cannot unmarshal into Go struct field of type v1.ObjectMeta")
        problem = objmeta.type_problems(metadata)
        if problem:
            raise bad_request(problem)
        return obj, metadata

    def _field_validation(self, request: Request, unknown: list[str]) -> list[str]:
        mode = request.query.get("fieldValidation", "Warn")
        if not unknown or mode == "Ignore":
            return []
        messages = [f'unknown field "{path}"' for path in unknown]
        if mode == "Strict":
            raise bad_request("strict decoding error: " + ", ".join(messages))
        return messages

    def _admit_custom(self, obj: Obj, request: Request, unknown: list[str]) -> list[Cause]:
        schema = request.resource.schemas.get(request.version)
        if schema is None:
            return []
        unknown.extend(schema.prune(obj))
        schema.apply_defaults(obj)
        return schema.validate(obj)

    def _ensure_namespace(self, request: Request) -> None:
        if not request.resource.namespaced:
            return
        if not request.namespace:
            raise bad_request("the server could not find the requested resource: a namespace is required")
        namespaces = self.registry.get("", "namespaces")
        assert namespaces is not None
        if ("", request.namespace) not in self._bucket(namespaces):
            if request.source == "python":
                self.create(self._python_request("namespaces", {"metadata": {"name": request.namespace}}))
            else:
                raise not_found("", "namespaces", request.namespace)

    def create(self, request: Request) -> Result:
        """POST: create an object (201), or 409 ``AlreadyExists``, 422 ``Invalid``, 404 for a missing namespace."""
        rtype = request.resource
        with self.lock:
            if request.subresource:
                raise bad_request("the server does not allow this method on the requested resource")
            obj, metadata = self._parse_body(request)
            namespace = self._namespace(request)
            if rtype.namespaced:
                if metadata.get("namespace") and metadata["namespace"] != namespace:
                    raise bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request"
                    )
                self._ensure_namespace(request)
                metadata["namespace"] = namespace
            else:
                metadata.pop("namespace", None)
            unknown = objmeta.prune_unknown(metadata)
            causes: list[Cause] = []
            if not metadata.get("name"):
                if metadata.get("generateName"):
                    metadata["name"] = self._generated_name(rtype, namespace, str(metadata["generateName"]))
                else:
                    causes.append(
                        Cause("FieldValueRequired", "Required value: name or generateName is required", "metadata.name")
                    )
            name = str(metadata.get("name") or "")
            if name:
                causes.extend(objmeta.name_problems(name, rtype.name_rule))
            causes.extend(objmeta.validation_problems(metadata))
            if metadata.get("resourceVersion"):
                raise internal("resourceVersion should not be set on objects to be created")
            for system_field in ("deletionTimestamp", "deletionGracePeriodSeconds", "generation", "selfLink"):
                metadata.pop(system_field, None)
            metadata["uid"] = str(uuid.uuid4())
            metadata["creationTimestamp"] = objmeta.now_rfc3339()
            if rtype.has_status(request.version):
                obj.pop("status", None)
            if rtype.tracks_generation:
                metadata["generation"] = 1
            causes.extend(self._prepare(obj, request, None))
            causes.extend(self._admit_custom(obj, request, unknown))
            if causes:
                raise invalid(rtype.group, rtype.kind, name, causes)
            warnings = self.warnings_for(request) + self._field_validation(request, unknown)
            if (namespace, name) in self._bucket(rtype):
                raise already_exists(rtype.group, rtype.plural, name)
            if request.query.get("dryRun"):
                return Result(201, self.present(obj, rtype, request.version), warnings)
            obj["apiVersion"] = rtype.api_version()
            metadata["resourceVersion"] = str(self._next_rv())
            self._bucket(rtype)[(namespace, name)] = obj
            self._append_event(StoredEvent(self._rv, "ADDED", rtype.key, namespace, obj, None))
            self._record(request, "POST", obj)
            self._after_write(rtype, None, obj)
            return Result(201, self.present(obj, rtype, request.version), warnings)

    def _generated_name(self, rtype: ResourceType, namespace: str, prefix: str) -> str:
        for _ in range(100):
            candidate = objmeta.generate_name(prefix)
            if (namespace, candidate) not in self._bucket(rtype):
                return candidate
        raise already_exists(rtype.group, rtype.plural, prefix)

    def replace(self, request: Request) -> Result:
        """PUT: replace an object (or its status) with optimistic concurrency."""
        rtype = request.resource
        with self.lock:
            self._check_subresource(request)
            obj, metadata = self._parse_body(request)
            namespace = self._namespace(request)
            if metadata.get("name") != request.name:
                body_name = metadata.get("name") or ""
                raise bad_request(
                    f"the name of the object ({body_name}) does not match the name on the URL ({request.name})"
                )
            if rtype.namespaced:
                if metadata.get("namespace") and metadata["namespace"] != namespace:
                    raise bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request"
                    )
                metadata["namespace"] = namespace
            else:
                metadata.pop("namespace", None)
            if (
                (namespace, request.name) not in self._bucket(rtype)
                and rtype.allow_create_on_update
                and not request.subresource
            ):
                metadata.pop("resourceVersion", None)
                return self.create(request_with(request, body=obj, verb="POST"))
            old = self._current(request)
            if (
                not metadata.get("resourceVersion")
                and not rtype.allow_unconditional_update
                and request.source == "http"
            ):
                raise invalid(
                    rtype.group,
                    rtype.kind,
                    str(request.name),
                    [
                        Cause(
                            "FieldValueInvalid",
                            "Invalid value: 0x0: must be specified for an update",
                            "metadata.resourceVersion",
                        )
                    ],
                )
            return self._update(request, old, obj, verb="PUT")

    def patch(self, request: Request) -> Result:
        """PATCH: merge, JSON or (for built-in kinds) strategic-merge patch, then the update path."""
        rtype = request.resource
        with self.lock:
            self._check_subresource(request)
            old = self._current(request)
            current = self.present(old, rtype, request.version)
            content_type = request.content_type
            # Server-side apply (APPLY_PATCH) is not emulated, so it is refused like any unknown type.
            accepted = [JSON_PATCH, MERGE_PATCH] if rtype.custom else [JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH]
            if content_type not in accepted:
                raise unsupported_media_type(content_type, accepted)
            try:
                if content_type == JSON_PATCH:
                    patched = json_patch(current, request.body)
                else:
                    if not isinstance(request.body, dict):
                        raise bad_request("json: cannot unmarshal into Go value of type map[string]interface {}")
                    patched = merge_patch(current, request.body)
            except MalformedPatchError as exc:
                raise bad_request(str(exc)) from exc
            except PatchError as exc:
                raise invalid_patch(str(exc)) from exc
            if not isinstance(patched, dict):
                raise bad_request("the patched object is not a JSON object")
            metadata = patched.get("metadata")
            if not isinstance(metadata, dict):
                raise bad_request("the patch removed metadata")
            if not metadata.get("resourceVersion"):
                metadata["resourceVersion"] = _metadata(old).get("resourceVersion")
            problem = objmeta.type_problems(metadata)
            if problem:
                raise bad_request(problem)
            self._check_type_meta(patched, request)
            for field_name in ("name", "namespace"):
                if metadata.get(field_name) != _metadata(old).get(field_name):
                    value = metadata.get(field_name)
                    raise invalid(
                        rtype.group,
                        rtype.kind,
                        str(request.name),
                        [
                            Cause(
                                "FieldValueInvalid",
                                f'Invalid value: "{value}": field is immutable',
                                f"metadata.{field_name}",
                            )
                        ],
                    )
            return self._update(request, old, patched, verb="PATCH")

    def _update(self, request: Request, old: Obj, new: Obj, *, verb: str) -> Result:
        rtype = request.resource
        metadata = _metadata(new)
        old_meta = _metadata(old)
        name = str(request.name)
        wanted_rv = metadata.get("resourceVersion")
        if wanted_rv and str(wanted_rv) != old_meta.get("resourceVersion"):
            raise conflict(rtype.group, rtype.plural, name)
        if metadata.get("uid") and metadata["uid"] != old_meta.get("uid"):
            raise invalid(
                rtype.group,
                rtype.kind,
                name,
                [Cause("FieldValueInvalid", f'Invalid value: "{metadata["uid"]}": field is immutable', "metadata.uid")],
            )
        unknown = objmeta.prune_unknown(metadata)
        for system_field in (
            "uid",
            "creationTimestamp",
            "generation",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ):
            if system_field in old_meta:
                metadata[system_field] = old_meta[system_field]
            else:
                metadata.pop(system_field, None)
        metadata["resourceVersion"] = old_meta.get("resourceVersion")
        metadata.pop("selfLink", None)
        causes = objmeta.validation_problems(metadata)
        if old_meta.get("deletionTimestamp"):
            added = sorted(set(metadata.get("finalizers") or []) - set(old_meta.get("finalizers") or []))
            if added:
                causes.append(
                    Cause(
                        "FieldValueForbidden",
                        "Forbidden: no new finalizers can be added if the object is being deleted, "
                        f"found new finalizers {json.dumps(added)}",
                        "metadata.finalizers",
                    )
                )
        if request.subresource == "status":
            status = new.get("status")
            new = copy.deepcopy(old)
            new.pop("status", None)
            if status is not None:
                new["status"] = status
        elif rtype.has_status(request.version):
            new.pop("status", None)
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
        causes.extend(self._prepare(new, request, old))
        causes.extend(self._admit_custom(new, request, unknown))
        if causes:
            raise invalid(rtype.group, rtype.kind, name, causes)
        warnings = self.warnings_for(request) + self._field_validation(request, unknown)
        new["apiVersion"] = rtype.api_version()
        new_meta = _metadata(new)
        ignored = ("metadata", "status") if rtype.has_status(request.version) else ("metadata",)
        if rtype.tracks_generation and _without(new, *ignored) != _without(old, *ignored):
            new_meta["generation"] = int(old_meta.get("generation") or 0) + 1
        if new == old:
            if not request.query.get("dryRun"):
                self._record(request, verb, old, changed=False)
            return Result(200, self.present(old, rtype, request.version), warnings)
        if request.query.get("dryRun"):
            return Result(200, self.present(new, rtype, request.version), warnings)
        key = _object_key(old)
        if new_meta.get("deletionTimestamp") and not new_meta.get("finalizers"):
            return self._remove(request, old, verb=verb, last_state=new)
        new_meta["resourceVersion"] = str(self._next_rv())
        self._bucket(rtype)[key] = new
        self._append_event(StoredEvent(self._rv, "MODIFIED", rtype.key, key[0], new, old))
        self._record(request, verb, new)
        self._after_write(rtype, old, new)
        return Result(200, self.present(new, rtype, request.version), warnings)

    def delete(self, request: Request) -> Result:
        """DELETE: remove an object, or mark it for deletion when it has finalizers."""
        rtype = request.resource
        with self.lock:
            if request.subresource:
                raise bad_request("the server does not allow this method on the requested resource")
            old = self._current(request)
            old_meta = _metadata(old)
            options = request.body if isinstance(request.body, dict) else {}
            preconditions = options.get("preconditions") or {}
            for field_name, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
                wanted = preconditions.get(field_name)
                if wanted and wanted != old_meta.get(field_name):
                    raise conflict(
                        rtype.group,
                        rtype.plural,
                        str(request.name),
                        f"Precondition failed: {label} in precondition: {wanted}, "
                        f"{label} in object meta: {old_meta.get(field_name)}",
                    )
            warnings = self.warnings_for(request)
            if old_meta.get("finalizers"):
                if old_meta.get("deletionTimestamp") or request.query.get("dryRun"):
                    return Result(200, self.present(old, rtype, request.version), warnings)
                new = copy.deepcopy(old)
                new_meta = _metadata(new)
                new_meta["deletionTimestamp"] = objmeta.now_rfc3339()
                new_meta["deletionGracePeriodSeconds"] = 0
                if rtype.tracks_generation:
                    new_meta["generation"] = int(old_meta.get("generation") or 0) + 1
                new_meta["resourceVersion"] = str(self._next_rv())
                key = _object_key(old)
                self._bucket(rtype)[key] = new
                self._append_event(StoredEvent(self._rv, "MODIFIED", rtype.key, key[0], new, old))
                self._record(request, "DELETE", new)
                return Result(200, self.present(new, rtype, request.version), warnings)
            if request.query.get("dryRun"):
                return self._deleted_result(request, old, warnings)
            return self._remove(request, old, verb="DELETE", last_state=old)

    def _deleted_result(self, request: Request, old: Obj, warnings: list[str]) -> Result:
        rtype = request.resource
        if rtype.return_deleted_object:
            return Result(200, self.present(old, rtype, request.version), warnings)
        old_meta = _metadata(old)
        body = success_status(rtype.group, rtype.plural, str(old_meta.get("name")), str(old_meta.get("uid") or ""))
        return Result(200, body, warnings)

    def _remove(self, request: Request, old: Obj, *, verb: str, last_state: Obj) -> Result:
        rtype = request.resource
        key = _object_key(old)
        del self._bucket(rtype)[key]
        gone = copy.deepcopy(last_state)
        _metadata(gone)["resourceVersion"] = str(self._next_rv())
        self._append_event(StoredEvent(self._rv, "DELETED", rtype.key, key[0], gone, old))
        self._record(request, verb, gone)
        self._after_delete(rtype, old)
        return self._deleted_result(request, last_state, self.warnings_for(request))

    # ------------------------------------------------------------------ kind-specific behaviour

    def _prepare(self, obj: Obj, request: Request, old: Obj | None) -> list[Cause]:
        """Strategy hooks of the built-in kinds: defaults the server fills in, and a few checks."""
        rtype = request.resource
        spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else None
        metadata = _metadata(obj)
        if rtype.key == ("", "namespaces"):
            metadata["labels"] = {**(metadata.get("labels") or {}), "kubernetes.io/metadata.name": metadata.get("name")}
            if old is None:
                obj["spec"] = {"finalizers": ["kubernetes"], **(spec or {})}
                obj["status"] = {"phase": "Active"}
        elif rtype.key == ("", "secrets"):
            obj.setdefault("type", "Opaque")
            string_data = obj.pop("stringData", None)
            if isinstance(string_data, dict):
                data = obj.setdefault("data", {})
                for key, value in string_data.items():
                    data[key] = base64.b64encode(str(value).encode()).decode()
        elif rtype.key == ("", "services"):
            return self._prepare_service(obj, spec, old)
        elif rtype.key == ("apps", "deployments"):
            return _prepare_deployment(spec, old)
        elif rtype.key == ("coordination.k8s.io", "leases"):
            _decode_lease_spec(spec)
        elif rtype.key == (CRD_GROUP, "customresourcedefinitions"):
            obj["status"] = _crd_status(obj, old)
        return []

    def _prepare_service(self, obj: Obj, spec: Obj | None, old: Obj | None) -> list[Cause]:
        if spec is None:
            return [Cause("FieldValueRequired", "Required value", "spec.ports")]
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        old_spec = (old or {}).get("spec") or {}
        if old_spec.get("clusterIP") and not spec.get("clusterIP"):
            spec["clusterIP"] = old_spec["clusterIP"]
            spec["clusterIPs"] = list(old_spec.get("clusterIPs") or [old_spec["clusterIP"]])
        if spec["type"] != "ExternalName" and not spec.get("clusterIP"):
            self._next_cluster_ip += 1
            address = f"10.96.{self._next_cluster_ip // 250}.{self._next_cluster_ip % 250}"
            spec["clusterIP"] = address
            spec["clusterIPs"] = [address]
        for port in spec.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
                port.setdefault("targetPort", port.get("port"))
        return []

    def _after_write(self, rtype: ResourceType, old: Obj | None, new: Obj) -> None:
        if rtype.key == (CRD_GROUP, "customresourcedefinitions"):
            resource = resource_from_crd(new)
            if old is not None:
                previous = resource_from_crd(old)
                if previous.key != resource.key:
                    self.registry.remove(previous.key)
            self.registry.add(resource)

    def _after_delete(self, rtype: ResourceType, old: Obj) -> None:
        if rtype.key == ("", "namespaces"):
            namespace = str(_metadata(old).get("name"))
            for resource in self.registry.all():
                if resource.namespaced:
                    self._purge(resource, lambda key, ns=namespace: key[0] == ns)  # type: ignore[misc]
        elif rtype.key == (CRD_GROUP, "customresourcedefinitions"):
            resource = resource_from_crd(old)
            self._purge(resource, lambda key: True)
            self.registry.remove(resource.key)

    def _purge(self, rtype: ResourceType, selected: Callable[[ObjectKey], bool]) -> None:
        bucket = self._bucket(rtype)
        for key in sorted(k for k in bucket if selected(k)):
            old = bucket.pop(key)
            gone = copy.deepcopy(old)
            _metadata(gone)["resourceVersion"] = str(self._next_rv())
            self._append_event(StoredEvent(self._rv, "DELETED", rtype.key, key[0], gone, old))
            self._record(Request("DELETE", rtype, rtype.storage_version, source="cascade"), "DELETE", gone)


def _crd_status(crd: Obj, old: Obj | None) -> Obj:
    """The status the apiextensions controllers would write: names accepted, established."""
    resource = resource_from_crd(crd)
    old_status = (old or {}).get("status") or {}
    now = objmeta.now_rfc3339()
    conditions = old_status.get("conditions") or [
        {
            "type": "NamesAccepted",
            "status": "True",
            "reason": "NoConflicts",
            "message": "no conflicts found",
            "lastTransitionTime": now,
        },
        {
            "type": "Established",
            "status": "True",
            "reason": "InitialNamesAccepted",
            "message": "the initial names have been accepted",
            "lastTransitionTime": now,
        },
    ]
    stored = sorted({resource.storage_version, *old_status.get("storedVersions", [])}, key=version_priority)
    return {
        "conditions": conditions,
        "acceptedNames": (crd.get("spec") or {}).get("names") or {},
        "storedVersions": stored,
    }


# Go's time.RFC3339Micro layout "2006-01-02T15:04:05.000000Z07:00": exactly six fractional digits.
_RFC3339_MICRO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}(Z|[+-]\d{2}:\d{2})$")
_LEASE_INT32_FIELDS = (
    ("leaseDurationSeconds", "LeaseSpec.spec.leaseDurationSeconds"),
    ("leaseTransitions", "LeaseSpec.spec.leaseTransitions"),
)


def _decode_lease_spec(spec: Obj | None) -> None:
    """Fail as the JSON decoding of a ``coordination.k8s.io/v1`` Lease fails: 400 before any validation.

    ``acquireTime`` and ``renewTime`` are ``metav1.MicroTime``, parsed with ``time.RFC3339Micro``
    (apimachinery ``micro_time.go``, ``UnmarshalJSON``); the counters are ``int32``. The handler turns a
    decoding error into ``NewBadRequest("Lease in version \"v1\" cannot be handled as a Lease: ...")``
    (apiserver ``handlers/rest.go``, ``transformDecodeError``).
    """
    if not spec:
        return
    prefix = 'Lease in version "v1" cannot be handled as a Lease: '
    for field_name in ("acquireTime", "renewTime"):
        value = spec.get(field_name)
        if value is None:
            continue
        if not isinstance(value, str) or not _RFC3339_MICRO.match(value):
            raise bad_request(
                f'{prefix}parsing time "{value}" as "2006-01-02T15:04:05.000000Z07:00": '
                f"cannot parse {json.dumps(value)} as RFC3339Micro"
            )
    for field_name, go_field in _LEASE_INT32_FIELDS:
        value = spec.get(field_name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            type_name = "string" if isinstance(value, str) else "number" if isinstance(value, float) else "value"
            raise bad_request(
                f"{prefix}json: cannot unmarshal {type_name} into Go struct field {go_field} of type int32"
            )
        if not INT32_MIN <= value <= INT32_MAX:
            raise bad_request(
                f"{prefix}json: cannot unmarshal number {value} into Go struct field {go_field} of type int32"
            )


def _prepare_deployment(spec: Obj | None, old: Obj | None) -> list[Cause]:
    if spec is None:
        return [Cause("FieldValueRequired", "Required value", "spec.selector")]
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    spec.setdefault(
        "strategy", {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    )
    selector = spec.get("selector")
    if not isinstance(selector, dict) or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        return [Cause("FieldValueRequired", "Required value", "spec.selector")]
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    wanted = selector.get("matchLabels") or {}
    if any(labels.get(k) != v for k, v in wanted.items()):
        shown = ", ".join(f'"{k}":"{v}"' for k, v in sorted(labels.items()))
        return [
            Cause(
                "FieldValueInvalid",
                f"Invalid value: map[string]string{{{shown}}}: `selector` does not match template `labels`",
                "spec.template.metadata.labels",
            )
        ]
    if old is not None and (old.get("spec") or {}).get("selector") != selector:
        return [
            Cause("FieldValueInvalid", f"Invalid value: {json.dumps(selector)}: field is immutable", "spec.selector")
        ]
    return []


def request_with(request: Request, **changes: Any) -> Request:
    """A copy of a request with some fields changed."""
    values = {name: getattr(request, name) for name in Request.__dataclass_fields__}
    values.update(changes)
    return Request(**values)


def _int_param(query: Mapping[str, str], name: str) -> int:
    raw = query.get(name)
    if not raw:
        return 0
    try:
        value = int(raw)
    except ValueError as exc:
        raise bad_request(f"invalid value for {name}: {raw!r}") from exc
    if value < 0:
        raise bad_request(f"{name} must be non-negative")
    return value
