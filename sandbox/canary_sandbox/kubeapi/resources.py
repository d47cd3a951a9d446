"""The resource types the emulator serves, built-in or defined by CustomResourceDefinitions, and discovery.

Built in: core/v1 ``namespaces`` (cluster-scoped), ``configmaps``, ``secrets``, ``services``, ``events``;
apps/v1 ``deployments``; coordination.k8s.io/v1 ``leases``; events.k8s.io/v1 ``events``;
apiextensions.k8s.io/v1 ``customresourcedefinitions``. Each carries the strategy flags of its real
registry that a client can observe: whether it has a status subresource, whether ``metadata.generation``
is tracked, whether an update without ``resourceVersion`` is allowed, whether PUT may create, and
whether DELETE answers with the object or with a ``Status``.

A CRD yields one resource type with every served version, its scope, per-version status subresource,
per-version structural schema and deprecation warning. Objects are stored once per resource and served
in any served version by rewriting ``apiVersion``: no conversion webhooks, no field conversion.

A CRD version's ``additionalPrinterColumns`` drive Table output (see ``table``).

A CRD is refused with the real 422 when apiextensions-apiserver would refuse its schemas (see
``crd_checks``); its OpenAPI documents are built in ``openapi``.

Deliberately not emulated: the ``scale`` subresource, aggregated discovery (``apidiscovery.k8s.io/v2``).
Core ``events`` and
``events.k8s.io`` events are stored separately (a real cluster shares one storage between them).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from canary_sandbox.kubeapi.crd_checks import check_schema
from canary_sandbox.kubeapi.schema import SchemaCompileError, StructuralSchema
from canary_sandbox.kubeapi.status import ApiError, Cause, invalid
from canary_sandbox.kubeapi.table import DEFAULT_CRD_COLUMNS

CRD_GROUP = "apiextensions.k8s.io"
STANDARD_VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")
_VERSION_RE = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")
_SCHEMA_CACHE: dict[str, StructuralSchema] = {}
_SCHEMA_CACHE_LOCK = threading.Lock()


def compile_schema(openapi_v3_schema: Mapping[str, Any]) -> StructuralSchema:
    """A compiled schema, shared between identical CRD versions (compiling a large CRD takes a while).

    Raises:
        SchemaCompileError: the schema is not usable.
    """
    key = json.dumps(openapi_v3_schema, sort_keys=True)
    with _SCHEMA_CACHE_LOCK:
        cached = _SCHEMA_CACHE.get(key)
    if cached is None:
        cached = StructuralSchema(openapi_v3_schema)
        with _SCHEMA_CACHE_LOCK:
            _SCHEMA_CACHE[key] = cached
    return cached


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key giving Kubernetes version priority: GA before beta before alpha, newer first."""
    match = _VERSION_RE.match(version)
    if not match:
        return (3, 0, 0, version)
    major, stage, minor = match.groups()
    rank = {None: 0, "beta": 1, "alpha": 2}[stage]
    return (rank, -int(major), -int(minor or 0), version)


@dataclass
class ResourceType:
    """One REST resource (``virtualservices.networking.istio.io``), in all of its served versions.

    Attributes:
        group: API group, ``""`` for the core group.
        plural: resource name in URLs (``virtualservices``).
        singular: singular name (``virtualservice``).
        kind: object kind (``VirtualService``).
        list_kind: kind of LIST responses (``VirtualServiceList``).
        namespaced: true for namespaced resources, false for cluster-scoped ones.
        versions: served versions, highest priority first.
        storage_version: the version objects are stored in.
        status_versions: versions that have the ``status`` subresource.
        schemas: structural schema per version (custom resources only).
        deprecations: deprecation warning per deprecated version.
        short_names: kubectl short names (``vs``).
        categories: discovery categories.
        custom: true when defined by a CRD.
        tracks_generation: ``metadata.generation`` is set on create and bumped on spec changes.
        allow_unconditional_update: PUT without ``metadata.resourceVersion`` is allowed.
        allow_create_on_update: PUT of a missing object creates it.
        return_deleted_object: DELETE answers with the object rather than a success ``Status``.
        name_rule: ``subdomain`` (RFC 1123), ``label`` (RFC 1123 label) or ``dns1035`` (RFC 1035 label).
        printer_columns: a CRD version's ``additionalPrinterColumns`` (``Age`` when it declares none), for
            Table output; absent for built-in kinds.
    """

    group: str
    plural: str
    singular: str
    kind: str
    list_kind: str
    namespaced: bool
    versions: tuple[str, ...]
    storage_version: str
    status_versions: frozenset[str] = frozenset()
    schemas: dict[str, StructuralSchema] = field(default_factory=dict)
    deprecations: dict[str, str] = field(default_factory=dict)
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    custom: bool = False
    tracks_generation: bool = False
    allow_unconditional_update: bool = True
    allow_create_on_update: bool = False
    return_deleted_object: bool = False
    name_rule: str = "subdomain"
    printer_columns: dict[str, tuple[dict[str, Any], ...]] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        """``(group, plural)``: the identity of the resource across versions."""
        return (self.group, self.plural)

    @property
    def group_resource(self) -> str:
        """``plural.group`` as messages print it (``configmaps`` for the core group)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def api_version(self, version: str | None = None) -> str:
        """``group/version`` (``v1`` for the core group) of a served version, storage by default."""
        version = version or self.storage_version
        return f"{self.group}/{version}" if self.group else version

    def has_status(self, version: str) -> bool:
        """Whether the ``status`` subresource is enabled in that version."""
        return version in self.status_versions


def resource_type(
    group: str,
    version: str,
    plural: str,
    kind: str,
    *,
    namespaced: bool = True,
    status: bool = False,
    short_names: tuple[str, ...] = (),
    **flags: Any,
) -> ResourceType:
    """A resource type served in one version (``flags``: the other :class:`ResourceType` fields)."""
    return ResourceType(
        group=group,
        plural=plural,
        singular=kind.lower(),
        kind=kind,
        list_kind=f"{kind}List",
        namespaced=namespaced,
        versions=(version,),
        storage_version=version,
        status_versions=frozenset({version}) if status else frozenset(),
        short_names=short_names,
        **flags,
    )


def builtin_resources() -> list[ResourceType]:
    """The built-in resource types, with the flags of their real registry strategies."""
    return [
        resource_type(
            "", "v1", "namespaces", "Namespace", namespaced=False, status=True, short_names=("ns",), name_rule="label"
        ),
        resource_type("", "v1", "configmaps", "ConfigMap", short_names=("cm",)),
        resource_type("", "v1", "secrets", "Secret"),
        resource_type("", "v1", "services", "Service", status=True, short_names=("svc",), name_rule="dns1035"),
        resource_type("", "v1", "events", "Event", short_names=("ev",), allow_create_on_update=True),
        resource_type(
            "apps", "v1", "deployments", "Deployment", status=True, short_names=("deploy",), tracks_generation=True
        ),
        resource_type("coordination.k8s.io", "v1", "leases", "Lease"),
        resource_type("events.k8s.io", "v1", "events", "Event", short_names=("ev",), allow_create_on_update=True),
        resource_type(
            CRD_GROUP,
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            namespaced=False,
            status=True,
            short_names=("crd", "crds"),
            tracks_generation=True,
        ),
    ]


def _crd_invalid(name: str, causes: list[Cause]) -> ApiError:
    return invalid(CRD_GROUP, "CustomResourceDefinition", name, causes)


def resource_from_crd(crd: Mapping[str, Any]) -> ResourceType:
    """Build the resource type a CustomResourceDefinition (apiextensions.k8s.io/v1) defines.

    Raises:
        ApiError: 422 Invalid when the CRD is not one the real server would accept, in the parts this
            emulator relies on (names, scope, versions, schemas).
    """
    name = str((crd.get("metadata") or {}).get("name") or "")
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = str(spec.get("group") or "")
    plural = str(names.get("plural") or "")
    kind = str(names.get("kind") or "")
    causes: list[Cause] = []
    if not group:
        causes.append(Cause("FieldValueRequired", "Required value", "spec.group"))
    if not plural:
        causes.append(Cause("FieldValueRequired", "Required value", "spec.names.plural"))
    if not kind:
        causes.append(Cause("FieldValueRequired", "Required value", "spec.names.kind"))
    if group and plural and name != f"{plural}.{group}":
        causes.append(
            Cause(
                "FieldValueInvalid",
                f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group',
                "metadata.name",
            )
        )
    scope = spec.get("scope")
    if scope not in ("Namespaced", "Cluster"):
        causes.append(
            Cause(
                "FieldValueNotSupported",
                f'Unsupported value: "{scope}": supported values: "Cluster", "Namespaced"',
                "spec.scope",
            )
        )
    versions = spec.get("versions") or []
    storage = [v.get("name") for v in versions if isinstance(v, Mapping) and v.get("storage")]
    if not versions:
        causes.append(Cause("FieldValueRequired", "Required value: must have at least one version", "spec.versions"))
    elif len(storage) != 1:
        causes.append(
            Cause(
                "FieldValueInvalid",
                "Invalid value: must have exactly one version marked as storage version",
                "spec.versions",
            )
        )
    schemas: dict[str, StructuralSchema] = {}
    deprecations: dict[str, str] = {}
    status_versions: set[str] = set()
    printer_columns: dict[str, tuple[dict[str, Any], ...]] = {}
    served: list[str] = []
    for index, version in enumerate(versions):
        if not isinstance(version, Mapping) or not version.get("name"):
            causes.append(Cause("FieldValueRequired", "Required value", f"spec.versions[{index}].name"))
            continue
        vname = str(version["name"])
        # apiextensions validates every version's schema, served or not (validateCustomResourceDefinitionVersion).
        raw_schema = (version.get("schema") or {}).get("openAPIV3Schema")
        schema_causes = (
            check_schema(raw_schema, f"spec.versions[{index}].schema.openAPIV3Schema")
            if isinstance(raw_schema, Mapping)
            else []
        )
        causes.extend(schema_causes)
        if not version.get("served"):
            continue
        served.append(vname)
        columns = version.get("additionalPrinterColumns")
        printer_columns[vname] = (
            tuple(dict(c) for c in columns if isinstance(c, Mapping))
            if isinstance(columns, list) and columns
            else DEFAULT_CRD_COLUMNS
        )
        if "status" in (version.get("subresources") or {}):
            status_versions.add(vname)
        if version.get("deprecated"):
            deprecations[vname] = str(version.get("deprecationWarning") or f"{group}/{vname} {kind} is deprecated")
        if not isinstance(raw_schema, Mapping):
            causes.append(
                Cause(
                    "FieldValueRequired",
                    "Required value: schemas are required",
                    f"spec.versions[{index}].schema.openAPIV3Schema",
                )
            )
            continue
        if schema_causes:
            continue
        try:
            schemas[vname] = compile_schema(raw_schema)
        except SchemaCompileError as exc:
            causes.append(
                Cause("FieldValueInvalid", f"Invalid value: {exc}", f"spec.versions[{index}].schema.openAPIV3Schema")
            )
    if causes:
        raise _crd_invalid(name, causes)
    return ResourceType(
        group=group,
        plural=plural,
        singular=str(names.get("singular") or kind.lower()),
        kind=kind,
        list_kind=str(names.get("listKind") or f"{kind}List"),
        namespaced=scope == "Namespaced",
        versions=tuple(sorted(served, key=version_priority)),
        storage_version=str(storage[0]),
        status_versions=frozenset(status_versions),
        schemas=schemas,
        deprecations=deprecations,
        short_names=tuple(names.get("shortNames") or ()),
        categories=tuple(names.get("categories") or ()),
        custom=True,
        tracks_generation=True,
        allow_unconditional_update=False,
        return_deleted_object=True,
        printer_columns=printer_columns,
    )


class Registry:
    """The resource types currently served, looked up by URL parts or by the names people use.

    Safe to read from any thread while one writer (holding the store's lock) adds or removes types.
    """

    def __init__(self, resources: Iterable[ResourceType] = ()) -> None:
        self._by_key: dict[tuple[str, str], ResourceType] = {}
        for resource in resources:
            self.add(resource)

    def add(self, resource: ResourceType) -> None:
        """Serve a resource type, replacing an earlier definition of the same ``(group, plural)``."""
        # Copy on write: request threads read the registry without a lock, so the dict they iterate is
        # never changed under them; writers hold the store's lock.
        self._by_key = {**self._by_key, resource.key: resource}

    def remove(self, key: tuple[str, str]) -> ResourceType | None:
        """Stop serving a resource type."""
        remaining = dict(self._by_key)
        removed = remaining.pop(key, None)
        self._by_key = remaining
        return removed

    def get(self, group: str, plural: str) -> ResourceType | None:
        """The resource type for ``(group, plural)`` regardless of version."""
        return self._by_key.get((group, plural))

    def all(self) -> list[ResourceType]:
        """Every served resource type."""
        return list(self._by_key.values())

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        """The resource type a URL names, if that version of it is served."""
        resource = self._by_key.get((group, plural))
        if resource is None or version not in resource.versions:
            return None
        return resource

    def for_api_version_kind(self, api_version: str, kind: str) -> tuple[ResourceType, str] | None:
        """The resource type and version for an object's ``apiVersion`` and ``kind``."""
        group, _, version = api_version.rpartition("/")
        for resource in self._by_key.values():
            if resource.group == group and resource.kind == kind and version in resource.versions:
                return resource, version
        return None

    def resolve(self, name: str) -> ResourceType:
        """Find a resource type the way kubectl does: ``virtualservices``, ``vs``, ``VirtualService``,
        ``virtualservices.networking.istio.io``. The core group wins ties (``events``).

        Raises:
            KeyError: nothing matches.
        """
        candidates = []
        for resource in self._by_key.values():
            spellings = {resource.plural, resource.singular, resource.kind.lower(), *resource.short_names}
            qualified = {f"{s}.{resource.group}" for s in spellings} if resource.group else set()
            if name.lower() in spellings or name.lower() in qualified:
                candidates.append(resource)
        if not candidates:
            raise KeyError(f"the server doesn't have a resource type {name!r}")
        candidates.sort(key=lambda r: (r.custom, r.group != "", r.group))
        return candidates[0]

    def group_versions(self) -> dict[str, list[str]]:
        """Served versions of every non-core group, highest priority first."""
        groups: dict[str, set[str]] = {}
        for resource in self._by_key.values():
            if resource.group:
                groups.setdefault(resource.group, set()).update(resource.versions)
        return {g: sorted(v, key=version_priority) for g, v in sorted(groups.items())}

    def api_group(self, group: str) -> dict[str, Any] | None:
        """The ``APIGroup`` discovery document of one group."""
        versions = self.group_versions().get(group)
        if not versions:
            return None
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": group,
            "versions": entries,
            "preferredVersion": entries[0],
        }

    def api_group_list(self) -> dict[str, Any]:
        """The ``APIGroupList`` served at ``/apis``."""
        groups = [self.api_group(g) for g in self.group_versions()]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [g for g in groups if g]}

    def api_resource_list(self, group: str, version: str) -> dict[str, Any] | None:
        """The ``APIResourceList`` of one group/version, or None when nothing is served there."""
        resources: list[dict[str, Any]] = []
        for resource in sorted(self._by_key.values(), key=lambda r: r.plural):
            if resource.group != group or version not in resource.versions:
                continue
            entry: dict[str, Any] = {
                "name": resource.plural,
                "singularName": resource.singular,
                "namespaced": resource.namespaced,
                "kind": resource.kind,
                "verbs": list(STANDARD_VERBS),
            }
            if resource.short_names:
                entry["shortNames"] = list(resource.short_names)
            if resource.categories:
                entry["categories"] = list(resource.categories)
            resources.append(entry)
            if resource.has_status(version):
                resources.append(
                    {
                        "name": f"{resource.plural}/status",
                        "singularName": "",
                        "namespaced": resource.namespaced,
                        "kind": resource.kind,
                        "verbs": ["get", "patch", "update"],
                    }
                )
        if not resources:
            return None
        group_version = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}
