"""Policies from a directory of YAML files.

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
"""

from __future__ import annotations

import logging
import operator
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from controller.adapters.kubernetes.status import configmap_name
from controller.adapters.policy_files import YAML_SUFFIXES, check_documents
from controller.adapters.yaml_documents import Finding, YamlDocument, YamlLimits, read_yaml_file
from controller.core.policy import DEFAULT_NAMESPACE
from controller.ports import InvolvedObject, PolicyRef, PolicySnapshot, SourcedPolicy, SourceProblem

log = logging.getLogger(__name__)

FileStat = tuple[int, int, int]  # mtime_ns, size, inode; (-1, -1, -1) when the file cannot be stat'ed
Fingerprint = tuple[tuple[str, int, int, int], ...]

# The daemon's bounds on one policy file: those of ``canaryctl lint``, plus a time budget, so that one file
# can never hold up the reading of the others for long.
FILE_LIMITS = YamlLimits(max_seconds=10.0)


def _visible_files(root: Path) -> list[str]:
    """Relative paths (``/``-separated) of the visible ``*.yaml`` / ``*.yml`` entries under ``root`` that are not
    directories, sorted as paths.

    Hidden entries (``..data``, ``..2024_01_01...``, ``.git``) are skipped; visible symlinks, to files or
    to directories, are followed (each real directory is walked once). An entry named like a YAML file
    that is not a regular file (a FIFO, a device) is listed too, so that reading it reports it by name.
    Plain strings, not ``pathlib`` objects: the directory is looked at every couple of seconds, and with
    10,000 files building paths cost more than the ``stat`` calls.

    Raises:
        OSError: ``root`` itself cannot be read (an unreadable subdirectory is skipped).
    """
    found: list[str] = []
    walked: set[str] = set()

    def walk(directory: str, relative: str) -> None:
        real = os.path.realpath(directory)
        if real in walked:
            return
        walked.add(real)
        try:
            entries = sorted(os.scandir(directory), key=_entry_name)
        except OSError:
            if not relative:
                raise
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir():
                    walk(entry.path, f"{relative}{entry.name}/")
                elif entry.name.endswith(YAML_SUFFIXES):
                    found.append(relative + entry.name)
            except OSError:
                continue

    walk(str(root), "")
    if len(walked) == 1:
        return found  # one directory: already in name order
    return sorted(found, key=lambda relative: relative.split("/"))


_entry_name = operator.attrgetter("name")


def _stat(path: str | Path) -> FileStat:
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
        self._files: dict[str, _FileResult] = {}
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
        root = str(self.path)
        stats = {relative: _stat(os.path.join(root, relative)) for relative in files}
        fingerprint: Fingerprint = tuple((relative, *stats[relative]) for relative in files)
        if fingerprint == self._fingerprint:
            return self._snapshot
        results: dict[str, _FileResult] = {}
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
