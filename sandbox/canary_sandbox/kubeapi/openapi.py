"""OpenAPI v2 and v3 documents for the served CRDs, as kube-apiserver publishes them.

Emulated (kubernetes/kubernetes, ``staging/src/k8s.io/apiextensions-apiserver/pkg/controller/openapi/``):

* definitions per served CRD version from ``builder.go`` (``BuildOpenAPIV2``/``BuildOpenAPIV3`` with
  ``Options{V2: true}`` / ``{V2: false}``): the name ``util.ToRESTFriendlyName("<group>/<version>/<kind>")``
  (``dev.canaryctl.v1alpha1.CanaryPolicy``), the schema with ``metadata`` as a reference to ObjectMeta and
  ``apiVersion``/``kind`` from TypeMeta (``buildKubeNative``), ``x-kubernetes-group-version-kind``, and the
  list kind (``buildListSchema``: ``items`` of references, ``metadata`` a ListMeta reference, ``required:
  [items]``); a root with ``x-kubernetes-preserve-unknown-fields`` is published as a bare ``object`` in v2;
* v2 conversion, ``v2/conversion.go`` ``ToStructuralOpenAPIV2``: junctors (``allOf``/``anyOf``/``oneOf``/
  ``not``) dropped, a ``nullable`` node loses ``type``, ``items`` and ``properties`` and leaves its parent's
  ``required``, an array without ``items`` loses its ``type``; defaults pruned (``handler.PruneDefaults``);
* v3: ``#/components/schemas/...`` references wrapped as ``allOf: [{$ref}]`` beside a description (kube-openapi
  ``builder3``), int-or-string unfolded into ``anyOf: [integer, string]`` (``Structural.Unfold``);
* ``/openapi/v2`` in JSON (``application/json``, ``*/*`` or no ``Accept``) or as the gnostic ``OpenAPIv2``
  protobuf (``application/com.github.proto-openapi.spec.v2@v1.0+protobuf`` or its dotted successor, both
  answered with ``Content-Type: application/com.github.proto-openapi.spec.v2.v1.0+protobuf``), with
  ``Etag`` the quoted upper-case hex SHA-512 of the JSON and ``Vary: Accept``, 406 for anything else
  (kube-openapi ``pkg/handler/handler.go``, ``RegisterOpenAPIVersionedService``); kubectl 1.20 asks for
  protobuf only (client-go ``DiscoveryClient.OpenAPISchema``). The protobuf is
  written by hand from ``openapiv2/OpenAPIv2.proto``'s field numbers (google/gnostic); only the messages
  used here are encoded;
* ``/openapi/v3`` discovery (``{"paths": {"apis/<group>/<version>": {"serverRelativeURL": ...?hash=<sha512>}}}``)
  and ``/openapi/v3/apis/<group>/<version>`` (kube-openapi ``pkg/handler3``).

Not emulated: the built-in kinds' definitions and paths (only the meta/v1 definitions CRDs reference are
present, with the fields their Go types have and no descriptions), paths other than each CRD's object
path with its ``get``/``patch`` operations (enough for kubectl's dry-run support check), conditional
requests on the ETag, ``hash`` redirects, gzip, protobuf for v3, OpenAPI v3 for the core group and built-in groups.
"""

from __future__ import annotations

import copy
import hashlib
import json
import struct
from collections.abc import Iterable, Mapping
from typing import Any

from canary_sandbox.kubeapi.resources import Registry, ResourceType

PROTOBUF_V2 = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
META = "io.k8s.apimachinery.pkg.apis.meta.v1"
_API_VERSION_DOC = (
    "APIVersion defines the versioned schema of this representation of an object. Servers should convert "
    "recognized schemas to the latest internal value, and may reject unrecognized values. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"
)
_KIND_DOC = (
    "Kind is a string value representing the REST resource this object represents. Servers may infer this "
    "from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"
)
_METADATA_DOC = (
    "Standard object's metadata. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)
_LIST_METADATA_DOC = (
    "Standard list metadata. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"
)
_STRING = {"type": "string"}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}


def _meta_definitions(ref: str) -> dict[str, Any]:
    """The meta/v1 definitions a CRD's schemas reference, with the fields of their Go types."""
    time = {"$ref": f"{ref}{META}.Time"}
    return {
        f"{META}.Time": {"type": "string", "format": "date-time"},
        f"{META}.FieldsV1": {"type": "object"},
        f"{META}.OwnerReference": {
            "type": "object",
            "required": ["apiVersion", "kind", "name", "uid"],
            "properties": {
                "apiVersion": _STRING,
                "blockOwnerDeletion": {"type": "boolean"},
                "controller": {"type": "boolean"},
                "kind": _STRING,
                "name": _STRING,
                "uid": _STRING,
            },
            "x-kubernetes-map-type": "atomic",
        },
        f"{META}.ManagedFieldsEntry": {
            "type": "object",
            "properties": {
                "apiVersion": _STRING,
                "fieldsType": _STRING,
                "fieldsV1": {"$ref": f"{ref}{META}.FieldsV1"},
                "manager": _STRING,
                "operation": _STRING,
                "subresource": _STRING,
                "time": time,
            },
        },
        f"{META}.ObjectMeta": {
            "type": "object",
            "properties": {
                "annotations": _STRING_MAP,
                "creationTimestamp": time,
                "deletionGracePeriodSeconds": {"type": "integer", "format": "int64"},
                "deletionTimestamp": time,
                "finalizers": {"type": "array", "items": _STRING},
                "generateName": _STRING,
                "generation": {"type": "integer", "format": "int64"},
                "labels": _STRING_MAP,
                "managedFields": {"type": "array", "items": {"$ref": f"{ref}{META}.ManagedFieldsEntry"}},
                "name": _STRING,
                "namespace": _STRING,
                "ownerReferences": {"type": "array", "items": {"$ref": f"{ref}{META}.OwnerReference"}},
                "resourceVersion": _STRING,
                "selfLink": _STRING,
                "uid": _STRING,
            },
        },
        f"{META}.ListMeta": {
            "type": "object",
            "properties": {
                "continue": _STRING,
                "remainingItemCount": {"type": "integer", "format": "int64"},
                "resourceVersion": _STRING,
                "selfLink": _STRING,
            },
        },
    }


def definition_name(group: str, version: str, kind: str) -> str:
    """``util.ToRESTFriendlyName``: the group's labels reversed, then version and kind."""
    return ".".join([*reversed(group.split(".")), version, kind])


def _gvk(group: str, version: str, kind: str) -> list[dict[str, str]]:
    return [{"group": group, "kind": kind, "version": version}]


def _to_v2(node: Any) -> Any:
    """``ToStructuralOpenAPIV2`` plus default pruning, on a plain schema dict."""
    if not isinstance(node, Mapping):
        return node
    out = {k: v for k, v in node.items() if k not in ("allOf", "anyOf", "oneOf", "not", "default")}
    if out.get("nullable") is True:
        for key in ("type", "nullable", "items", "properties"):
            out.pop(key, None)
    out.pop("nullable", None)
    if isinstance(out.get("items"), Mapping):
        out["items"] = _to_v2(out["items"])
    if out.get("type") == "array" and "items" not in out:
        del out["type"]
    if isinstance(out.get("additionalProperties"), Mapping):
        out["additionalProperties"] = _to_v2(out["additionalProperties"])
    properties = out.get("properties")
    if isinstance(properties, Mapping):
        nullable = {name for name, sub in properties.items() if isinstance(sub, Mapping) and sub.get("nullable")}
        out["properties"] = {name: _to_v2(sub) for name, sub in properties.items()}
        if nullable and isinstance(out.get("required"), list):
            out["required"] = [name for name in out["required"] if name not in nullable]
            if not out["required"]:
                del out["required"]
    return out


def _to_v3(node: Any) -> Any:
    """The v3 form: int-or-string unfolded into ``anyOf`` (``Structural.Unfold``)."""
    if not isinstance(node, Mapping):
        return node
    out = dict(node)
    if out.get("x-kubernetes-int-or-string") is True and "anyOf" not in out and "allOf" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    for key in ("items", "additionalProperties", "not"):
        if isinstance(out.get(key), Mapping):
            out[key] = _to_v3(out[key])
    if isinstance(out.get("properties"), Mapping):
        out["properties"] = {name: _to_v3(sub) for name, sub in out["properties"].items()}
    return out


def _ref(target: str, description: str, *, v2: bool) -> dict[str, Any]:
    if v2:
        return {"$ref": f"#/definitions/{target}", "description": description}
    return {"allOf": [{"$ref": f"#/components/schemas/{target}"}], "description": description}


def _kind_schema(resource: ResourceType, version: str, *, v2: bool) -> dict[str, Any]:
    """``buildKubeNative``: the CRD's schema with TypeMeta and ObjectMeta, tagged with its GVK."""
    compiled = resource.schemas.get(version)
    raw = copy.deepcopy(dict(compiled.raw)) if compiled is not None else None
    gvk = {"x-kubernetes-group-version-kind": _gvk(resource.group, version, resource.kind)}
    if raw is None or (v2 and raw.get("x-kubernetes-preserve-unknown-fields") is True):
        return {"type": "object", **gvk}
    schema: dict[str, Any] = _to_v2(raw) if v2 else _to_v3(raw)
    properties = dict(schema.get("properties") or {})
    properties["metadata"] = _ref(f"{META}.ObjectMeta", _METADATA_DOC, v2=v2)
    properties["apiVersion"] = {"description": _API_VERSION_DOC, "type": "string"}
    properties["kind"] = {"description": _KIND_DOC, "type": "string"}
    schema["properties"] = dict(sorted(properties.items()))
    schema.update(gvk)
    return schema


def _list_schema(resource: ResourceType, version: str, *, v2: bool) -> dict[str, Any]:
    """``buildListSchema``."""
    item_ref = definition_name(resource.group, version, resource.kind)
    prefix = "#/definitions/" if v2 else "#/components/schemas/"
    return {
        "description": f"{resource.list_kind} is a list of {resource.kind}",
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"description": _API_VERSION_DOC, "type": "string"},
            "items": {
                "description": f"List of {resource.plural}. More info: "
                "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md",
                "type": "array",
                "items": {"$ref": prefix + item_ref},
            },
            "kind": {"description": _KIND_DOC, "type": "string"},
            "metadata": _ref(f"{META}.ListMeta", _LIST_METADATA_DOC, v2=v2),
        },
        "x-kubernetes-group-version-kind": _gvk(resource.group, version, resource.list_kind),
    }


def _object_path(resource: ResourceType, version: str) -> str:
    scope = "/namespaces/{namespace}" if resource.namespaced else ""
    return f"/apis/{resource.group}/{version}{scope}/{resource.plural}/{{name}}"


def _query(name: str, description: str) -> dict[str, Any]:
    return {"uniqueItems": True, "type": "string", "description": description, "name": name, "in": "query"}


def _operations(resource: ResourceType, version: str, *, v2: bool) -> dict[str, Any]:
    """The object path's ``get`` and ``patch`` operations, as ``buildRoute`` declares them."""
    gvk = {"group": resource.group, "kind": resource.kind, "version": version}
    namespaced = "Namespaced" if resource.namespaced else ""
    ref = ("#/definitions/" if v2 else "#/components/schemas/") + definition_name(
        resource.group, version, resource.kind
    )
    dry_run = _query(
        "dryRun",
        "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun "
        "directive will result in an error response and no further processing of the request. Valid values are: "
        "- All: all dry run stages will be processed",
    )
    ok = {"description": "OK", "schema": {"$ref": ref}} if v2 else {"description": "OK"}

    def operation(action: str, verb: str, description: str, params: list[dict[str, Any]]) -> dict[str, Any]:
        op: dict[str, Any] = {
            "description": description,
            "operationId": f"{verb}{namespaced}{resource.kind}",
            "responses": {"200": ok, "401": {"description": "Unauthorized"}},
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
        }
        if v2:
            op["parameters"] = params
        return op

    return {
        "get": operation("get", "read", f"read the specified {resource.kind}", []),
        "patch": operation(
            "patch",
            "patch",
            f"partially update the specified {resource.kind}",
            [
                dry_run,
                _query(
                    "fieldManager", "fieldManager is a name associated with the actor or entity making these changes."
                ),
                _query(
                    "fieldValidation", "fieldValidation instructs the server on how to handle objects in the request."
                ),
            ],
        ),
    }


def negotiate_v2(accept: str | None) -> str | None:
    """The media type kube-openapi's handler picks for ``/openapi/v2``, or None for 406 Not Acceptable.

    Clauses are tried by falling ``q`` (goautoneg), each against JSON then protobuf; ``*`` matches either.
    """
    clauses: list[tuple[float, int, str]] = []
    for index, clause in enumerate((accept or "*/*").split(",")):
        media, *params = [part.strip() for part in clause.split(";")]
        quality = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    quality = float(param[2:])
                except ValueError:
                    quality = 0.0
        if media:
            clauses.append((-quality, index, media.lower()))
    # The deprecated "@" subtype is answered with the dotted Content-Type, which Go's mime package parses.
    offered = (
        ("application", "json", "application/json"),
        ("application", "com.github.proto-openapi.spec.v2@v1.0+protobuf", PROTOBUF_V2),
        ("application", "com.github.proto-openapi.spec.v2.v1.0+protobuf", PROTOBUF_V2),
    )
    for _, _, media in sorted(clauses):
        kind, _, sub = media.partition("/")
        for offered_kind, offered_sub, returned in offered:
            if kind in (offered_kind, "*") and sub in (offered_sub, "*"):
                return returned
    return None


def _crd_versions(registry: Registry) -> Iterable[tuple[ResourceType, str]]:
    for resource in sorted(registry.all(), key=lambda r: (r.group, r.plural)):
        if resource.custom:
            for version in resource.versions:
                yield resource, version


def v2_document(registry: Registry) -> dict[str, Any]:
    """The ``/openapi/v2`` Swagger document for every served CRD version."""
    definitions = _meta_definitions("#/definitions/")
    paths: dict[str, Any] = {}
    for resource, version in _crd_versions(registry):
        definitions[definition_name(resource.group, version, resource.kind)] = _kind_schema(resource, version, v2=True)
        definitions[definition_name(resource.group, version, resource.list_kind)] = _list_schema(
            resource, version, v2=True
        )
        paths[_object_path(resource, version)] = _operations(resource, version, v2=True)
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.31.0"},
        "paths": dict(sorted(paths.items())),
        "definitions": dict(sorted(definitions.items())),
    }


def v3_document(registry: Registry, group: str, version: str) -> dict[str, Any] | None:
    """The ``/openapi/v3/apis/<group>/<version>`` document, or None when no CRD serves that group/version."""
    schemas: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    for resource, served in _crd_versions(registry):
        if resource.group != group or served != version:
            continue
        schemas[definition_name(group, version, resource.kind)] = _kind_schema(resource, version, v2=False)
        schemas[definition_name(group, version, resource.list_kind)] = _list_schema(resource, version, v2=False)
        paths[_object_path(resource, version)] = _operations(resource, version, v2=False)
    if not schemas:
        return None
    schemas.update(_meta_definitions("#/components/schemas/"))
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes CRD Swagger", "version": "v0.1.0"},
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": dict(sorted(schemas.items()))},
    }


def v3_discovery(registry: Registry) -> dict[str, Any]:
    """The ``/openapi/v3`` index: one entry per CRD group/version, its URL carrying the document's hash."""
    entries: dict[str, Any] = {}
    for group, versions in registry.group_versions().items():
        for version in versions:
            document = v3_document(registry, group, version)
            if document is None:
                continue
            digest = hashlib.sha512(json.dumps(document, separators=(",", ":")).encode()).hexdigest().upper()
            entries[f"apis/{group}/{version}"] = {
                "serverRelativeURL": f"/openapi/v3/apis/{group}/{version}?hash={digest}"
            }
    return {"paths": entries}


# ---------------------------------------------------------------------------- gnostic OpenAPIv2 protobuf


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2): strings and embedded messages."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _string(number: int, value: str) -> bytes:
    return _field(number, value.encode()) if value else b""


def _bool(number: int, value: bool) -> bytes:
    return _varint(number << 3) + b"\x01" if value else b""


def _int64(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(int(value))


def _double(number: int, value: float) -> bytes:
    return _varint(number << 3 | 1) + struct.pack("<d", float(value))


def _any(number: int, value: Any) -> bytes:
    """A gnostic ``Any`` (field 2: ``yaml``); JSON text is YAML."""
    return _field(number, _string(2, json.dumps(value, separators=(",", ":"))))


def _extensions(number: int, node: Mapping[str, Any]) -> bytes:
    """``repeated NamedAny vendor_extension``: every ``x-`` key."""
    return b"".join(
        _field(number, _string(1, key) + _any(2, value)) for key, value in node.items() if key.startswith("x-")
    )


def _schema(node: Mapping[str, Any]) -> bytes:
    """A gnostic ``Schema`` message."""
    out = bytearray()
    out += _string(1, str(node.get("$ref") or ""))
    out += _string(2, str(node.get("format") or ""))
    out += _string(3, str(node.get("title") or ""))
    out += _string(4, str(node.get("description") or ""))
    if "default" in node:
        out += _any(5, node["default"])
    for number, key in ((6, "multipleOf"), (7, "maximum"), (9, "minimum")):
        if isinstance(node.get(key), (int, float)) and not isinstance(node.get(key), bool):
            out += _double(number, node[key])
    out += _bool(8, node.get("exclusiveMaximum") is True)
    out += _bool(10, node.get("exclusiveMinimum") is True)
    for number, key in (
        (11, "maxLength"),
        (12, "minLength"),
        (14, "maxItems"),
        (15, "minItems"),
        (17, "maxProperties"),
        (18, "minProperties"),
    ):
        if isinstance(node.get(key), int):
            out += _int64(number, node[key])
    out += _string(13, str(node.get("pattern") or ""))
    out += _bool(16, node.get("uniqueItems") is True)
    for name in node.get("required") or []:
        out += _string(19, str(name))
    for value in node.get("enum") or []:
        out += _any(20, value)
    additional = node.get("additionalProperties")
    if isinstance(additional, Mapping):
        out += _field(21, _field(1, _schema(additional)))
    elif isinstance(additional, bool):
        out += _field(21, _varint(2 << 3) + (b"\x01" if additional else b"\x00"))
    kind = node.get("type")
    if kind:
        out += _field(22, b"".join(_string(1, t) for t in ([kind] if isinstance(kind, str) else kind)))
    items = node.get("items")
    if isinstance(items, Mapping):
        out += _field(23, _field(1, _schema(items)))
    for sub in node.get("allOf") or []:
        if isinstance(sub, Mapping):
            out += _field(24, _schema(sub))
    properties = node.get("properties")
    if isinstance(properties, Mapping):
        out += _field(
            25, b"".join(_field(1, _string(1, name) + _field(2, _schema(sub))) for name, sub in properties.items())
        )
    if "example" in node:
        out += _any(30, node["example"])
    out += _extensions(31, node)
    return bytes(out)


def _query_parameter(param: Mapping[str, Any]) -> bytes:
    """``ParametersItem{parameter: Parameter{non_body_parameter: {query_parameter_sub_schema}}}``."""
    query = (
        _string(2, str(param.get("in") or ""))
        + _string(3, str(param.get("description") or ""))
        + _string(4, str(param.get("name") or ""))
        + _string(6, str(param.get("type") or ""))
        + _bool(20, param.get("uniqueItems") is True)
    )
    return _field(1, _field(2, _field(3, query)))


def _operation(op: Mapping[str, Any]) -> bytes:
    out = _string(3, str(op.get("description") or "")) + _string(5, str(op.get("operationId") or ""))
    for param in op.get("parameters") or []:
        out += _field(8, _query_parameter(param))
    return out + _extensions(13, op)


def v2_protobuf(document: Mapping[str, Any]) -> bytes:
    """The document as gnostic's ``openapi_v2.Document`` wire format (what kubectl's ``OpenAPISchema`` reads)."""
    info = document.get("info") or {}
    out = bytearray(_string(1, str(document.get("swagger") or "2.0")))
    out += _field(2, _string(1, str(info.get("title") or "")) + _string(2, str(info.get("version") or "")))
    paths = b""
    for path, item in (document.get("paths") or {}).items():
        value = b""
        for number, method in ((2, "get"), (3, "put"), (4, "post"), (5, "delete"), (8, "patch")):
            if isinstance(item.get(method), Mapping):
                value += _field(number, _operation(item[method]))
        paths += _field(2, _string(1, path) + _field(2, value))
    out += _field(8, paths)
    out += _field(
        9,
        b"".join(
            _field(1, _string(1, name) + _field(2, _schema(schema)))
            for name, schema in (document.get("definitions") or {}).items()
        ),
    )
    return bytes(out)
