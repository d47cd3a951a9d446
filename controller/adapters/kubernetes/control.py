"""Manual control and status, for ``canaryctl``: where a policy's status lives, recording commands, listing.

A policy is either a CanaryPolicy resource (CRD mode: status in its status subresource) or a policy file
the controller reads (file mode: status in a ConfigMap in the controller's namespace, labelled with the
policy's namespace and name). Commands go where the controller reads them (``controller.adapters.kubernetes
.status``): the ``canaryctl.dev/commands`` annotation of the resource, or of the ConfigMap.

Nothing here prints: the CLI turns the results and the project's errors into lines and exit codes. Only the
commands annotation is ever read from an object's annotations.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from controller.adapters.kubernetes.api import (
    CONFIGMAPS,
    NAMESPACES,
    KubeApi,
    as_dict,
    metadata_of,
)
from controller.adapters.kubernetes.status import (
    CANARYPOLICIES,
    LABEL_NAME,
    LABEL_NAMESPACE,
    ConfigMapStatusStore,
    CrdStatusStore,
    configmap_name,
    new_command,
    parse_commands,
)
from controller.core.status import Command, CommandKind, RolloutStatus
from controller.core.status_view import StatusRow, status_row
from controller.errors import ForbiddenError, NotFoundError
from controller.ports import PolicyRef

DEFAULT_CONTROLLER_NAMESPACE = "canary-system"


def close_kube_api(api: KubeApi) -> None:
    """Close the API's client, its thread pool and its pooled connections."""
    closable: Any = api.api_client
    closable.close()
    closable.rest_client.pool_manager.clear()


def server_url(api: KubeApi) -> str:
    """The API server's address, for messages."""
    return str(api.api_client.configuration.host)


# -- commands ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyLocation:
    """Where a policy's status and commands live.

    Attributes:
        ref: the policy (``source`` is ``crd`` or ``file``).
        where: the object holding them, for people: ``CanaryPolicy shop/tcp-echo`` or
            ``ConfigMap canary-system/canary-shop-tcp-echo``.
        controller_namespace: the namespace of file-mode status ConfigMaps.
    """

    ref: PolicyRef
    where: str
    controller_namespace: str


@dataclass(frozen=True)
class RecordedCommand:
    """A command appended to a policy's commands annotation."""

    command: Command
    location: PolicyLocation


def _exists(read: Callable[[], object]) -> bool:
    try:
        read()
    except NotFoundError:
        return False
    return True


def locate_policy(api: KubeApi, *, namespace: str, name: str, controller_namespace: str) -> PolicyLocation:
    """Where policy ``namespace/name`` keeps its status: its CanaryPolicy resource, else its status ConfigMap.

    Raises:
        NotFoundError: neither exists.
        ForbiddenError, UnavailableError, ApiError: the API server refused or did not answer.
    """
    crd_ref = PolicyRef(namespace=namespace, name=name, source="crd")
    if _exists(lambda: api.get_obj(resource=CANARYPOLICIES, namespace=namespace, name=name)):
        return PolicyLocation(crd_ref, f"CanaryPolicy {namespace}/{name}", controller_namespace)
    file_ref = PolicyRef(namespace=namespace, name=name, source="file")
    configmap = configmap_name(file_ref)
    if _exists(lambda: api.get_obj(resource=CONFIGMAPS, namespace=controller_namespace, name=configmap)):
        return PolicyLocation(file_ref, f"ConfigMap {controller_namespace}/{configmap}", controller_namespace)
    raise NotFoundError(
        [
            f"no CanaryPolicy {namespace}/{name} (neither a resource nor a file-mode status in namespace "
            f"{controller_namespace})"
        ],
        code=404,
    )


def record_command(
    api: KubeApi,
    *,
    namespace: str,
    name: str,
    kind: CommandKind,
    by: str | None,
    controller_namespace: str = DEFAULT_CONTROLLER_NAMESPACE,
) -> RecordedCommand:
    """Append a command for the controller to the policy's commands annotation (kept to the last 20).

    Args:
        api: the API.
        namespace: the policy's namespace.
        name: the policy's name.
        kind: what to ask for.
        by: who asks (recorded with the command and in the controller's history).
        controller_namespace: where file-mode status ConfigMaps live.

    Returns:
        The command (with its new unique id) and where it was recorded.

    Raises:
        NotFoundError: no such policy in either mode.
        ForbiddenError: RBAC forbids reading or patching the object (the message names the permission).
        UnavailableError, ConflictError, ApiError: the API server did not answer, or kept changing the object.
    """
    location = locate_policy(api, namespace=namespace, name=name, controller_namespace=controller_namespace)
    command = new_command(kind, by=by)
    if location.ref.source == "crd":
        CrdStatusStore(api).add_command(policy=location.ref, command=command)
    else:
        ConfigMapStatusStore(api, namespace=controller_namespace).add_command(policy=location.ref, command=command)
    return RecordedCommand(command=command, location=location)


# -- status -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredStatus:
    """One policy's status as stored, before it is turned into a row.

    Attributes:
        namespace: the policy's namespace.
        name: the policy's name.
        source: ``crd`` or ``file``.
        status: the status, or None when none was recorded (or it cannot be read: see ``problem``).
        commands: the commands annotation's entries, oldest first.
        step_count: how many steps the schedule has (CRD mode, where the spec is at hand), else None.
        problem: why the stored status cannot be read, if it cannot.
    """

    namespace: str
    name: str
    source: str
    status: RolloutStatus | None
    commands: list[Command]
    step_count: int | None = None
    problem: str | None = None


@dataclass(frozen=True)
class StatusListing:
    """The statuses found, sorted by namespace, name and source, and what could not be listed."""

    statuses: list[StoredStatus] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _read_status(raw: Any, *, where: str) -> tuple[RolloutStatus | None, str | None]:
    if not raw:
        return None, None
    try:
        return RolloutStatus.model_validate(raw), None
    except ValidationError as exc:
        return None, f"{where}: the stored status cannot be read ({exc.error_count()} problems)"


def _from_resource(obj: dict[str, Any]) -> StoredStatus:
    meta = obj.get("metadata") or {}
    namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
    where = f"CanaryPolicy {namespace}/{name}"
    steps = ((obj.get("spec") or {}).get("schedule") or {}).get("steps")
    status, problem = _read_status(obj.get("status"), where=where)
    return StoredStatus(
        namespace=namespace,
        name=name,
        source="crd",
        status=status,
        commands=parse_commands(meta.get("annotations"), where=where),
        step_count=len(steps) if isinstance(steps, list) else None,
        problem=problem,
    )


def _from_configmap(cm: Any) -> StoredStatus | None:
    meta = metadata_of(cm)
    labels = meta.labels or {}
    namespace, name = labels.get(LABEL_NAMESPACE), labels.get(LABEL_NAME)
    if not namespace or not name:
        return None
    where = f"ConfigMap {meta.namespace}/{meta.name}"
    raw = (cm.data or {}).get("status")
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        return StoredStatus(namespace, name, "file", None, [], problem=f"{where}: data.status is not JSON")
    status, problem = _read_status(parsed, where=where)
    return StoredStatus(
        namespace=namespace,
        name=name,
        source="file",
        status=status,
        commands=parse_commands(meta.annotations, where=where),
        problem=problem,
    )


def _list_resources(api: KubeApi, *, namespace: str | None, name: str | None) -> list[StoredStatus]:
    selector = f"metadata.name={name}" if name else None
    try:
        listed = api.list_objs(resource=CANARYPOLICIES, namespace=namespace, field_selector=selector)
    except NotFoundError:
        return []  # the CRD is not installed: file mode only
    items = as_dict(listed).get("items") or []
    return [_from_resource(as_dict(item)) for item in items]


def _list_configmaps(
    api: KubeApi, *, namespace: str | None, name: str | None, controller_namespace: str
) -> list[StoredStatus]:
    by_namespace = f"{LABEL_NAMESPACE}={namespace}" if namespace else LABEL_NAMESPACE
    by_name = f"{LABEL_NAME}={name}" if name else LABEL_NAME
    selector = f"{by_namespace},{by_name}"
    listed = api.list_objs(resource=CONFIGMAPS, namespace=controller_namespace, label_selector=selector)
    found = (_from_configmap(cm) for cm in listed.items or [])
    return [stored for stored in found if stored is not None]


def list_statuses(
    api: KubeApi,
    *,
    namespace: str | None,
    name: str | None = None,
    controller_namespace: str = DEFAULT_CONTROLLER_NAMESPACE,
) -> StatusListing:
    """The statuses of CanaryPolicy resources and of file-mode policies, merged and sorted.

    A policy that exists in both modes appears twice, once per source. When RBAC forbids one of the two
    lists, the other is still returned, with a warning naming the missing permission.

    Args:
        api: the API.
        namespace: the policies' namespace; None for every namespace.
        name: only the policies with this name.
        controller_namespace: where file-mode status ConfigMaps live.

    Returns:
        The statuses and the warnings.

    Raises:
        ForbiddenError: both lists are forbidden.
        UnavailableError, ApiError: the API server did not answer, or failed.
    """
    statuses: list[StoredStatus] = []
    forbidden: list[ForbiddenError] = []
    warnings: list[str] = []
    try:
        statuses += _list_resources(api, namespace=namespace, name=name)
    except ForbiddenError as exc:
        forbidden.append(exc)
        warnings += [f"CanaryPolicy resources not shown: {problem}" for problem in exc.problems]
    try:
        statuses += _list_configmaps(api, namespace=namespace, name=name, controller_namespace=controller_namespace)
    except ForbiddenError as exc:
        forbidden.append(exc)
        warnings += [f"file-mode statuses not shown: {problem}" for problem in exc.problems]
    if len(forbidden) == 2:
        raise ForbiddenError([p for exc in forbidden for p in exc.problems], code=403)
    statuses.sort(key=lambda s: (s.namespace, s.name, s.source))
    return StatusListing(statuses=statuses, warnings=warnings)


def namespace_exists(api: KubeApi, name: str) -> bool | None:
    """Whether namespace ``name`` exists; None when RBAC does not let us look (nothing is concluded then).

    Raises:
        UnavailableError, ApiError: the API server did not answer, or failed.
    """
    try:
        api.get_obj(resource=NAMESPACES, namespace="", name=name)
    except NotFoundError:
        return False
    except ForbiddenError:
        return None
    return True


def status_rows(listing: StatusListing, *, now: datetime) -> list[StatusRow]:
    """The rows ``canaryctl status`` shows, computed at ``now``."""
    return [
        status_row(
            namespace=stored.namespace,
            name=stored.name,
            source=stored.source,
            status=stored.status,
            commands=stored.commands,
            now=now,
            step_count=stored.step_count,
            problem=stored.problem,
        )
        for stored in listing.statuses
    ]
