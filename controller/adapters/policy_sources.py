"""Where the daemon's policies come from: a directory of YAML files, CanaryPolicy resources, and both merged.

``DirectoryPolicySource`` serves the files of a directory, normally a ConfigMap mounted by the Helm chart.
Kubernetes updates such a volume by writing the new files into a hidden, timestamped directory and
swapping the ``..data`` symlink to it atomically; the visible files are symlinks through ``..data``. The
source therefore ignores hidden entries and follows the visible symlinks. Changes are noticed by a cheap
fingerprint (relative path, ``mtime_ns``, size and inode of each visible ``*.yaml`` / ``*.yml`` file),
taken at most every ``reload_interval`` seconds when ``snapshot()`` is called; only the files whose stat
changed are parsed again, by the source's own thread and within ``FILE_LIMITS`` (size, aliases, nodes,
depth, a time budget), so a hostile or slow file never holds up the caller or the other files. Each file is
linted as ``canaryctl lint`` does; a file with any finding is skipped as a whole (its findings are the
problems) and the other files are still served.

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

``merge_snapshots`` combines the snapshots of the sources. A policy namespace/name defined more than once,
by two sources or twice by one, is a clash: no definition runs, and each is reported with the others.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, cast

from kubernetes import watch

from controller.adapters.kubernetes.api import KubeApi, as_dict
from controller.adapters.kubernetes.status import GROUP, PLURAL, VERSION, configmap_name
from controller.adapters.policy_files import YAML_SUFFIXES, check_documents
from controller.adapters.yaml_documents import Finding, YamlDocument, YamlLimits, read_yaml_file
from controller.core.policy import DEFAULT_NAMESPACE
from controller.core.problems import validate_policy
from controller.errors import ApiError
from controller.ports import InvolvedObject, PolicyRef, PolicySnapshot, SourcedPolicy, SourceProblem

log = logging.getLogger(__name__)

KIND = "CanaryPolicy"
HTTP_GONE = 410

# ---------------------------------------------------------------------------------------------- merge


def _definition(policy: SourcedPolicy) -> str:
    if policy.ref.source == "crd":
        return "as a resource"
    return f"in {policy.ref.location}" if policy.ref.location else "in a file"


def _listed(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"


def _problem_location(policy: SourcedPolicy) -> str:
    if policy.ref.source == "crd":
        return f"{policy.ref.namespace}/{policy.ref.name}"
    return policy.ref.location


def merge_snapshots(*snapshots: PolicySnapshot) -> PolicySnapshot:
    """The policies and problems of all ``snapshots``, with name clashes taken out.

    A namespace/name defined more than once (by two sources, or twice by one) is a clash: every
    definition is removed, and each is reported by a ``SourceProblem`` at its own location that names
    the other definitions. Everything else is kept in order.

    Args:
        snapshots: the snapshots of the sources, in any order.

    Returns:
        One snapshot: the policies defined exactly once; every source's problems, then the clashes.
    """
    definitions: dict[tuple[str, str], list[SourcedPolicy]] = {}
    for snapshot in snapshots:
        for sourced in snapshot.policies:
            definitions.setdefault((sourced.ref.namespace, sourced.ref.name), []).append(sourced)
    policies = [defined[0] for defined in definitions.values() if len(defined) == 1]
    problems = [problem for snapshot in snapshots for problem in snapshot.problems]
    for (namespace, name), defined in definitions.items():
        if len(defined) < 2:
            continue
        for index, this in enumerate(defined):
            others = [_definition(other) for position, other in enumerate(defined) if position != index]
            if len(defined) == 2:
                what = f"is defined both {_definition(this)} and {others[0]}; neither runs until one is removed"
            else:
                what = f"is defined {_definition(this)}, and also {_listed(others)}; none runs until only one is left"
            problems.append(
                SourceProblem(
                    source=this.ref.source,
                    location=_problem_location(this),
                    message=f"{KIND} {namespace}/{name} {what}",
                    namespace=namespace,
                    name=name,
                )
            )
    return PolicySnapshot(policies=tuple(policies), problems=tuple(problems))


# ---------------------------------------------------------------------------------------------- files

FileStat = tuple[int, int, int]  # mtime_ns, size, inode; (-1, -1, -1) when the file cannot be stat'ed
Fingerprint = tuple[tuple[str, int, int, int], ...]

# The daemon's bounds on one policy file: those of ``canaryctl lint``, plus a time budget, so that one file
# can never hold up the reading of the others for long.
FILE_LIMITS = YamlLimits(max_seconds=10.0)


def _visible_files(root: Path) -> list[PurePath]:
    """Relative paths of the visible ``*.yaml`` / ``*.yml`` entries under ``root`` that are not directories, sorted.

    Hidden entries (``..data``, ``..2024_01_01...``, ``.git``) are skipped; visible symlinks, to files or
    to directories, are followed (each real directory is walked once). An entry named like a YAML file
    that is not a regular file (a FIFO, a device) is listed too, so that reading it reports it by name.

    Raises:
        OSError: ``root`` itself cannot be read (an unreadable subdirectory is skipped).
    """
    found: list[PurePath] = []
    walked: set[str] = set()

    def walk(directory: Path, relative: PurePath) -> None:
        real = os.path.realpath(directory)
        if real in walked:
            return
        walked.add(real)
        try:
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except OSError:
            if not relative.parts:
                raise
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir():
                    walk(Path(entry.path), relative / entry.name)
                elif entry.name.endswith(YAML_SUFFIXES):
                    found.append(relative / entry.name)
            except OSError:
                continue

    walk(root, PurePath())
    return sorted(found)


def _stat(path: Path) -> FileStat:
    try:
        stat = os.stat(path)
    except OSError:
        return (-1, -1, -1)
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


def _owner(documents: Sequence[YamlDocument], line: int) -> tuple[str | None, str | None]:
    """namespace/name of the document holding ``line``, when it says them."""
    for document in documents:
        start = int(document.node.start_mark.line) + 1
        end = int(document.node.end_mark.line) + 1
        if not start <= line <= end or not isinstance(document.data, dict):
            continue
        metadata = document.data.get("metadata")
        if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
            return None, None
        namespace = metadata.get("namespace")
        return (namespace if isinstance(namespace, str) else DEFAULT_NAMESPACE), metadata["name"]
    return None, None


def _file_problem(finding: Finding, documents: Sequence[YamlDocument]) -> SourceProblem:
    namespace, name = _owner(documents, finding.line)
    return SourceProblem(
        source="file",
        location=f"{finding.file}:{finding.line}",
        message=f"{finding.path}: {finding.message}",
        namespace=namespace,
        name=name,
    )


def file_problem_object(problem: SourceProblem, *, controller_namespace: str) -> InvolvedObject:
    """Where the Event about a bad policy file goes.

    On the policy's status ConfigMap when the file names the policy (where its other Events go when it is
    not served), else on the controller's own Pod (its host name, as in a Kubernetes pod).
    """
    if problem.namespace and problem.name:
        ref = PolicyRef(problem.namespace, problem.name, source="file")
        return InvolvedObject("ConfigMap", "v1", controller_namespace, configmap_name(ref))
    return InvolvedObject("Pod", "v1", controller_namespace, socket.gethostname())


@dataclass(frozen=True)
class _FileResult:
    """What one file gave, kept until the file's stat changes."""

    stat: FileStat
    policies: tuple[SourcedPolicy, ...]
    problems: tuple[SourceProblem, ...]


def load_policy_file(
    path: Path, *, limits: YamlLimits = FILE_LIMITS
) -> tuple[list[SourcedPolicy], list[SourceProblem]]:
    """The policies of one file, or its problems (a file with any finding is skipped as a whole). Never raises."""
    try:
        documents, findings = read_yaml_file(path, display=str(path), limits=limits)
        report = check_documents(documents)
    except Exception as exc:  # the last guard: a file ends in problems, never in an exception
        log.exception("reading policy file %s failed unexpectedly", path)
        return [], [SourceProblem(source="file", location=f"{path}:1", message=f"(file): cannot read: {exc!r}"[:300])]
    findings = sorted([*findings, *report.findings], key=lambda finding: finding.line)
    if findings:
        return [], [_file_problem(finding, documents) for finding in findings]
    policies = []
    for loaded in report.policies:
        metadata = loaded.policy.metadata
        ref = PolicyRef(metadata.namespace, metadata.name, source="file", location=loaded.document.where)
        policies.append(SourcedPolicy(loaded.policy, ref))
    return policies, []


class DirectoryPolicySource:
    """Policies from the YAML files of a directory (a mounted ConfigMap), re-read when they change.

    The files are read by a thread of the source's own, never by the caller of ``snapshot()``: a look for
    changes is asked for at most every ``reload_interval`` seconds, and ``snapshot()`` waits for it at most
    ``wait_seconds`` before returning the last complete snapshot. Each changed file is read within the
    limits of ``limits`` (size, aliases, nodes, depth and a time budget per file); unchanged files are not
    read again, so one slow or hostile file is read once, reported, and never delays the others again.

    Args:
        path: the directory; locations are shown under it (``<path>/tcp-echo.yaml:3``).
        reload_interval: the least time, in seconds, between two looks for changes.
        clock: monotonic seconds (injected by tests).
        limits: the bounds on each file.
        wait_seconds: the longest ``snapshot()`` waits for a look it asked for.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        reload_interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        limits: YamlLimits = FILE_LIMITS,
        wait_seconds: float = 1.0,
    ) -> None:
        self.path = Path(path)
        self.reload_interval = reload_interval
        self.limits = limits
        self.wait_seconds = wait_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._looked = threading.Condition(self._lock)
        self._checked_at: float | None = None
        self._requested = 0
        self._done = 0
        self._stopping = False
        self._fingerprint: Fingerprint | None = None
        self._files: dict[PurePath, _FileResult] = {}
        self._snapshot = PolicySnapshot()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="policy-files", daemon=True)
        self._thread.start()
        self._ask()

    def snapshot(self) -> PolicySnapshot:
        """The policies of the files, asking for a look if ``reload_interval`` has passed since the last one.

        Waits at most ``wait_seconds`` for that look; never raises (an unreadable directory or file is a
        problem in the snapshot).
        """
        with self._lock:
            now = self._clock()
            due = self._checked_at is None or now - self._checked_at >= self.reload_interval
            if due:
                self._checked_at = now
        if due:
            self._wait(self._ask(), self.wait_seconds)
        with self._lock:
            return self._snapshot

    def reload(self, timeout: float = 60.0) -> PolicySnapshot:
        """Look for changes now, whatever ``reload_interval`` says; wait up to ``timeout`` s for the result."""
        with self._lock:
            self._checked_at = self._clock()
        self._wait(self._ask(), timeout)
        with self._lock:
            return self._snapshot

    def synced(self) -> bool:
        """True once every file has been looked at once (each within its time budget)."""
        with self._lock:
            return self._done >= 1

    def close(self, timeout: float = 1.0) -> None:
        """Stop the reading thread (a file being read is given up at its time budget; the thread is a daemon)."""
        with self._lock:
            self._stopping = True
        self._wake.set()
        self._thread.join(timeout)

    def _ask(self) -> int:
        with self._lock:
            self._requested += 1
            ticket = self._requested
        self._wake.set()
        return ticket

    def _wait(self, ticket: int, timeout: float) -> None:
        with self._looked:
            self._looked.wait_for(lambda: self._done >= ticket or self._stopping, timeout)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                if self._stopping:
                    return
                target = self._requested
            try:
                snapshot = self._refresh()
            except Exception as exc:  # never lose the thread: the look is reported and tried again next time
                log.exception("reading policy directory %s failed unexpectedly", self.path)
                snapshot = PolicySnapshot(
                    problems=(
                        SourceProblem(source="file", location=str(self.path), message=f"(directory): {exc!r}"[:300]),
                    )
                )
                self._fingerprint = None
            with self._looked:
                self._snapshot = snapshot
                self._done = max(self._done, target)
                self._looked.notify_all()

    def _refresh(self) -> PolicySnapshot:
        if not self.path.is_dir():
            missing: Fingerprint = (("", -1, -1, -1),)
            if self._fingerprint != missing:
                self._fingerprint = missing
                self._files = {}
                reason = "is not a directory" if self.path.exists() else "no such directory"
                log.warning("policy directory %s: %s", self.path, reason)
                return PolicySnapshot(
                    problems=(SourceProblem(source="file", location=str(self.path), message=f"(directory): {reason}"),)
                )
            return self._snapshot
        try:
            files = _visible_files(self.path)
        except OSError as exc:
            self._fingerprint = None
            return PolicySnapshot(
                problems=(
                    SourceProblem(
                        source="file", location=str(self.path), message=f"(directory): cannot read: {exc.strerror}"
                    ),
                )
            )
        stats = {relative: _stat(self.path / relative) for relative in files}
        fingerprint: Fingerprint = tuple((relative.as_posix(), *stats[relative]) for relative in files)
        if fingerprint == self._fingerprint:
            return self._snapshot
        results: dict[PurePath, _FileResult] = {}
        for relative in files:
            cached = self._files.get(relative)
            if cached is not None and cached.stat == stats[relative]:
                results[relative] = cached
                continue
            started = time.monotonic()
            policies, problems = load_policy_file(self.path / relative, limits=self.limits)
            results[relative] = _FileResult(stats[relative], tuple(policies), tuple(problems))
            log.debug("policy file %s read in %.3f s", self.path / relative, time.monotonic() - started)
        # Stored only once every file has its result: a look that fails part-way is done again next time.
        self._files = results
        self._fingerprint = fingerprint
        snapshot = PolicySnapshot(
            policies=tuple(policy for result in results.values() for policy in result.policies),
            problems=tuple(problem for result in results.values() for problem in result.problems),
        )
        log.info(
            "policy directory %s read: %d policies, %d problems",
            self.path,
            len(snapshot.policies),
            len(snapshot.problems),
        )
        return snapshot


# ---------------------------------------------------------------------------------------------- resources

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
