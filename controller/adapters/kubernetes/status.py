"""Where rollout status and manual commands live.

* CRD mode: the CanaryPolicy's ``status`` subresource; commands in its ``canaryctl.dev/commands``
  annotation.
* File mode: one ConfigMap per policy in the controller's namespace (``data.status``, JSON), commands in
  the same annotation on that ConfigMap.

Every write carries the ``resourceVersion`` it was decided from, so a concurrent writer (a second
replica, a command arriving) makes it fail with ``ConflictError`` instead of being lost. Commands are
appended the same way, so none is ever dropped; the controller records the ids it has consumed in the
status, and the CLI keeps the annotation to the last ``COMMANDS_KEPT`` entries.

A write may be stamped with its writer (``status.writer``: identity, process id, serial), which ``load``
reads back, so a controller can notice another one writing the same policy
(:mod:`controller.core.writers`). A missing or unreadable stamp reads as None, never as an error.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from controller.adapters.kubernetes.api import CONFIGMAPS, KubeApi, Resource, as_dict
from controller.adapters.kubernetes.informer import Informer
from controller.core.status import Command, CommandKind, RolloutStatus
from controller.core.writers import WriterStamp
from controller.errors import ApiError, ConflictError, NotFoundError
from controller.ports import LoadedStatus, PolicyRef

GROUP = "canaryctl.dev"
VERSION = "v1alpha1"
PLURAL = "canarypolicies"
COMMANDS_ANNOTATION = "canaryctl.dev/commands"
COMMANDS_KEPT = 20
LABEL_NAME = "canaryctl.dev/policy-name"
LABEL_NAMESPACE = "canaryctl.dev/policy-namespace"
CANARYPOLICIES = Resource(GROUP, PLURAL, (VERSION,))


def parse_commands(annotations: dict[str, str] | None, *, where: str) -> list[Command]:
    """Commands from the annotation; a malformed entry is skipped, never fatal to the others."""
    raw = (annotations or {}).get(COMMANDS_ANNOTATION)
    if not raw:
        return []
    try:
        entries = json.loads(raw)
    except ValueError:
        return []
    commands = []
    for entry in entries if isinstance(entries, list) else []:
        try:
            commands.append(Command.model_validate(entry))
        except ValidationError:
            continue
    return commands


def _with_command(annotations: dict[str, str] | None, command: Command) -> dict[str, str]:
    existing = [c.model_dump(mode="json", exclude_none=True) for c in parse_commands(annotations, where="")]
    existing.append(command.model_dump(mode="json", exclude_none=True))
    return {COMMANDS_ANNOTATION: json.dumps(existing[-COMMANDS_KEPT:], separators=(",", ":"))}


def retry_on_conflict(attempt: Callable[[], None], *, what: str, tries: int = 5) -> None:
    """Run a read-modify-write ``attempt`` until no other writer got in between (at most ``tries`` times)."""
    for _ in range(tries):
        try:
            attempt()
            return
        except ConflictError:
            continue
    raise ConflictError([f"{what}: too many concurrent writers"], code=409)


def new_command(kind: CommandKind, *, by: str | None) -> Command:
    """A command with a unique id and the current time."""
    return Command(id=uuid.uuid4().hex[:12], kind=kind, by=by, at=datetime.now(UTC))


WRITER_FIELD = "writer"


def _writer_from(raw: Any) -> WriterStamp | None:
    """The stamp of a stored status; None when absent or unreadable (a stamp only informs, it never blocks)."""
    if not isinstance(raw, dict) or WRITER_FIELD not in raw:
        return None
    try:
        return WriterStamp.model_validate(raw[WRITER_FIELD])
    except ValidationError:
        return None


def _stored(status: RolloutStatus, writer: WriterStamp | None) -> dict[str, Any]:
    stored = status.model_dump(mode="json", exclude_none=True)
    if writer is not None:
        stored[WRITER_FIELD] = writer.model_dump(mode="json")
    return stored


class ParsedStatuses:
    """The last status read per object, by its resourceVersion: a pass reads its status from the watch cache
    as the server's JSON, and parsing it (the JSON text, then the model) cost about a tenth of a pass at
    10,000 rollouts. An object's status is parsed once per version (or not at all when this process wrote it:
    ``put`` with the server's answer), and the parsed status is shared: callers never change it (a decision
    works on its own copy). Memory: one parsed status per policy, measured by the scale benchmark.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], tuple[str, LoadedStatus]] = {}

    def get(self, key: tuple[str, str], version: str | None) -> LoadedStatus | None:
        """The status parsed from ``version`` of object ``key``, if it is the last one parsed."""
        entry = self._entries.get(key)
        return entry[1] if entry is not None and version is not None and entry[0] == version else None

    def put(self, key: tuple[str, str], version: str | None, loaded: LoadedStatus) -> None:
        """Remember ``loaded`` as what ``version`` of ``key`` holds (nothing without a version)."""
        if version is not None:
            self._entries[key] = (version, loaded)

    def drop(self, key: tuple[str, str]) -> None:
        """Forget ``key`` (its object is gone)."""
        self._entries.pop(key, None)

    def prune(self, keep: Callable[[tuple[str, str]], bool]) -> None:
        """Forget every object ``keep`` says is gone (the policies deleted since)."""
        for key in [key for key in self._entries if not keep(key)]:
            self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


def _stored_json(status: RolloutStatus, writer: WriterStamp | None) -> str:
    """``_stored`` as compact JSON text, serialized by the model itself (a third of the cost of dumping to
    Python objects, then to text)."""
    text = status.model_dump_json(exclude_none=True)
    if writer is None:
        return text
    stamp = f'"{WRITER_FIELD}":{writer.model_dump_json()}'
    return f"{text[:-1]},{stamp}}}" if text != "{}" else f"{{{stamp}}}"


def _status_from(raw: Any, *, where: str) -> RolloutStatus:
    if not raw:
        return RolloutStatus()
    if isinstance(raw, dict):
        raw = {key: value for key, value in raw.items() if key != WRITER_FIELD}
    try:
        return RolloutStatus.model_validate(raw)
    except ValidationError as exc:
        raise ApiError(
            [
                f"{where}: the stored status cannot be read ({exc.error_count()} problems); "
                "fix or clear it (kubectl edit --subresource=status) to continue"
            ]
        ) from None


class CrdStatusStore:
    """Status in the CanaryPolicy resource's status subresource.

    Args:
        api: the API server holding CanaryPolicy resources.
        cache: their watch cache (the CRD policy source's); None to read each from the API.
    """

    def __init__(self, api: KubeApi, *, cache: Informer | None = None) -> None:
        self.api = api
        self.cache = cache
        self._parsed = ParsedStatuses()

    def _get(self, policy: PolicyRef) -> dict[str, Any]:
        cache = self.cache
        if cache is not None and cache.synced() and cache.covers(policy.namespace):
            obj = cache.get(policy.namespace, policy.name)
            if obj is None:
                raise NotFoundError([f"CanaryPolicy {policy.namespace}/{policy.name}: not found"], code=404)
            return obj
        return as_dict(self.api.get_obj(resource=CANARYPOLICIES, namespace=policy.namespace, name=policy.name))

    def load(self, *, policy: PolicyRef) -> LoadedStatus:
        """Status, resourceVersion and commands of the CanaryPolicy resource."""
        key = (policy.namespace, policy.name)
        try:
            obj = self._get(policy)
        except NotFoundError:
            self._parsed.drop(key)
            raise
        meta = obj.get("metadata") or {}
        version = meta.get("resourceVersion")
        parsed = self._parsed.get(key, version)
        if parsed is not None:
            return parsed
        where = f"CanaryPolicy {policy.namespace}/{policy.name}"
        loaded = LoadedStatus(
            status=_status_from(obj.get("status"), where=where),
            version=version,
            commands=parse_commands(meta.get("annotations"), where=where),
            writer=_writer_from(obj.get("status")),
        )
        self._parsed.put(key, version, loaded)
        return loaded

    def save(
        self, *, policy: PolicyRef, status: RolloutStatus, version: str | None, writer: WriterStamp | None = None
    ) -> str:
        """Replace the status subresource, conditionally on ``version``, stamped with ``writer``."""
        obj = dict(self._get(policy))  # a cached object is shared: change a copy
        if version is not None and obj["metadata"].get("resourceVersion") != version:
            raise ConflictError([f"CanaryPolicy {policy.namespace}/{policy.name} changed since it was read"], code=409)
        obj["status"] = _stored(status, writer)
        try:
            result = as_dict(
                self.api.replace_status(resource=CANARYPOLICIES, namespace=policy.namespace, name=policy.name, body=obj)
            )
        except ConflictError:
            if self.cache is not None:
                self.cache.refresh(policy.namespace, policy.name)
            raise
        if self.cache is not None:
            self.cache.upsert(result)
        meta = result["metadata"]
        version = str(meta["resourceVersion"])
        commands = parse_commands(meta.get("annotations"), where="")
        loaded = LoadedStatus(status=status, version=version, commands=commands, writer=writer)
        self._parsed.put((policy.namespace, policy.name), version, loaded)
        return version

    def add_command(self, *, policy: PolicyRef, command: Command) -> None:
        """Append a command to the resource's annotation (retried on conflict)."""

        def attempt() -> None:
            meta = self._get(policy).get("metadata") or {}
            patch = {
                "metadata": {
                    "resourceVersion": meta.get("resourceVersion"),
                    "annotations": _with_command(meta.get("annotations"), command),
                }
            }
            self.api.patch_obj(resource=CANARYPOLICIES, namespace=policy.namespace, name=policy.name, patch=patch)

        retry_on_conflict(attempt, what=f"CanaryPolicy {policy.namespace}/{policy.name}")


def configmap_name(policy: PolicyRef) -> str:
    """``canary-<namespace>-<name>``, shortened with a hash when too long for a name."""
    name = f"canary-{policy.namespace}-{policy.name}"
    if len(name) <= 253:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[:242]}-{digest}"


class ConfigMapStatusStore:
    """Status in one ConfigMap per policy, in the controller's namespace (file mode).

    Args:
        api: the main API server.
        namespace: the controller's namespace.
        cache: a watch cache of the ConfigMaps of ``namespace``; None to read each from the API.
    """

    def __init__(self, api: KubeApi, *, namespace: str, cache: Informer | None = None) -> None:
        self.api = api
        self.namespace = namespace
        self.cache = cache
        self._parsed = ParsedStatuses()

    def _cached(self) -> Informer | None:
        cache = self.cache
        return cache if cache is not None and cache.synced() and cache.covers(self.namespace) else None

    def _get(self, policy: PolicyRef, *, fresh: bool = False) -> dict[str, Any] | None:
        """The ConfigMap as JSON, from the cache unless ``fresh``; None when it does not exist."""
        name = configmap_name(policy)
        cache = self._cached()
        if cache is not None:
            return cache.refresh(self.namespace, name) if fresh else cache.get(self.namespace, name)
        try:
            configmap = self.api.get_obj(resource=CONFIGMAPS, namespace=self.namespace, name=name)
        except NotFoundError:
            return None
        return _json(self.api, configmap)

    def load(self, *, policy: PolicyRef) -> LoadedStatus:
        """Status, resourceVersion and commands; a fresh status when the ConfigMap does not exist yet."""
        cm = self._get(policy)
        key = (self.namespace, configmap_name(policy))
        if cm is None:
            self._parsed.drop(key)
            return LoadedStatus(status=RolloutStatus(), version=None, commands=[])
        meta = cm.get("metadata") or {}
        version = meta.get("resourceVersion")
        parsed = self._parsed.get(key, version)
        if parsed is not None:
            return parsed
        where = f"ConfigMap {self.namespace}/{meta.get('name')}"
        raw = json.loads((cm.get("data") or {}).get("status") or "null")
        loaded = LoadedStatus(
            status=_status_from(raw, where=where),
            version=version,
            commands=parse_commands(meta.get("annotations"), where=where),
            writer=_writer_from(raw),
        )
        self._remember(key, version, loaded)
        return loaded

    def _remember(self, key: tuple[str, str], version: str | None, loaded: LoadedStatus) -> None:
        """Keep ``loaded`` as the parsed status of ``version``; now and then forget the ConfigMaps deleted."""
        self._parsed.put(key, version, loaded)
        cache = self._cached()
        if cache is not None and len(self._parsed) > len(cache) + 64:
            self._parsed.prune(lambda known: cache.get(*known) is not None)

    def _body(
        self,
        policy: PolicyRef,
        status: RolloutStatus | None,
        annotations: dict[str, str] | None,
        version: str | None,
        writer: WriterStamp | None = None,
    ) -> dict[str, Any]:
        """The ConfigMap as the client would send its ``V1ConfigMap`` (unset fields left out), built as the JSON
        itself: building and serializing the client's model cost as much as the rest of a pass."""
        metadata: dict[str, Any] = {
            "name": configmap_name(policy),
            "namespace": self.namespace,
            "labels": {
                LABEL_NAME: policy.name,
                LABEL_NAMESPACE: policy.namespace,
                "app.kubernetes.io/managed-by": "canary-controller",
            },
        }
        if version is not None:
            metadata["resourceVersion"] = version
        if annotations is not None:
            metadata["annotations"] = annotations
        body: dict[str, Any] = {"metadata": metadata}
        if status is not None:
            body["data"] = {"status": _stored_json(status, writer)}
        return body

    def _written(self, answer: dict[str, Any], status: RolloutStatus, writer: WriterStamp | None) -> str:
        """Write the server's answer through to the cache, and the status it holds to the parsed statuses (the
        next pass does not parse what this one wrote); its resourceVersion."""
        if self.cache is not None:
            self.cache.upsert(answer)
        meta = answer.get("metadata") or {}
        version = str(meta.get("resourceVersion"))
        commands = parse_commands(meta.get("annotations"), where="")
        loaded = LoadedStatus(status=status, version=version, commands=commands, writer=writer)
        self._remember((self.namespace, str(meta.get("name"))), version, loaded)
        return version

    def save(
        self, *, policy: PolicyRef, status: RolloutStatus, version: str | None, writer: WriterStamp | None = None
    ) -> str:
        """Create or replace the ConfigMap, conditionally on ``version`` (None: must not exist yet)."""
        name = configmap_name(policy)
        try:
            if version is None:
                created = self.api.create_obj(
                    resource=CONFIGMAPS,
                    namespace=self.namespace,
                    body=self._body(policy, status, None, None, writer),
                    raw=True,
                )
                return self._written(created, status, writer)
            current = self._get(policy)
            meta = (current or {}).get("metadata") or {}
            if self._cached() is not None and meta.get("resourceVersion") != version:
                # The cache has moved on since the load: the write would fail on the server too.
                raise ConflictError([f"ConfigMap {self.namespace}/{name} changed since it was read"], code=409)
            replaced = self.api.replace_obj(
                resource=CONFIGMAPS,
                namespace=self.namespace,
                name=name,
                body=self._body(policy, status, meta.get("annotations"), version, writer),
                raw=True,
            )
        except ConflictError:
            if self._cached() is not None:
                self._get(policy, fresh=True)
            raise
        return self._written(replaced, status, writer)

    def add_command(self, *, policy: PolicyRef, command: Command) -> None:
        """Append a command to the ConfigMap's annotation, creating the ConfigMap if needed."""
        name = configmap_name(policy)

        def attempt() -> None:
            current = self._get(policy, fresh=True)
            if current is None:
                body = self._body(policy, None, _with_command(None, command), None)
                self.api.create_obj(resource=CONFIGMAPS, namespace=self.namespace, body=body)
                return
            meta = current.get("metadata") or {}
            patch = {
                "metadata": {
                    "resourceVersion": meta.get("resourceVersion"),
                    "annotations": _with_command(meta.get("annotations"), command),
                }
            }
            self.api.patch_obj(resource=CONFIGMAPS, namespace=self.namespace, name=name, patch=patch)

        retry_on_conflict(attempt, what=f"ConfigMap {self.namespace}/{name}")


def _json(api: KubeApi, obj: Any) -> dict[str, Any]:
    """A client model (or a dict) as the server's JSON."""
    if isinstance(obj, dict):
        return obj
    return as_dict(api.api_client.sanitize_for_serialization(obj))  # type: ignore[no-untyped-call]
