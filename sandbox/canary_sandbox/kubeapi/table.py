"""Server-side ``Table`` output (``Accept: application/json;as=Table;g=meta.k8s.io;v=v1``), as kubectl asks.

Emulates, for custom resources, apiextensions-apiserver's table convertor
(``apiextensions-apiserver/pkg/registry/customresource/tableconvertor/tableconvertor.go``,
``convertor.ConvertToTable``): a ``Name`` column (format ``name``), then the version's
``additionalPrinterColumns`` (``Age`` from ``.metadata.creationTimestamp`` when it declares none); a
``string`` column prints the JSONPath result as text, ``integer``/``number``/``boolean`` cells keep their
JSON type, a ``date`` cell is a human duration (``duration.HumanDuration``: ``45s``, ``3m10s``, ``5h``,
``2d``); a missing value is ``null``. Each row carries the object's metadata as a
``meta.k8s.io/v1`` ``PartialObjectMetadata`` (``includeObject=Metadata``, the default), or the whole
object with ``includeObject=Object``, or nothing with ``None``. Watch events carry one-row tables.

Deliberately not emulated: the built-in kinds' own printers (a ConfigMap's ``DATA``, a Namespace's
``STATUS``...): built-in kinds get ``Name`` and ``Created At`` as ``rest.DefaultTableConvertor`` gives
them; JSONPath beyond dotted fields and ``[n]`` indices (no filters, no wildcards).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from typing import Any

TABLE_API_VERSION = "meta.k8s.io/v1"
_NAME_DESCRIPTION = (
    "Name must be unique within a namespace. Is required when creating resources, although some resources "
    "may allow a client to request the generation of an appropriate name automatically. Name is primarily "
    "intended for creation idempotence and configuration definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
_CREATED_DESCRIPTION = (
    "CreationTimestamp is a timestamp representing the server time when this object was created. It is not "
    "guaranteed to be set in happens-before order across separate operations. Clients may not set this value. "
    "It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. "
    "More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)
DEFAULT_CRD_COLUMNS: tuple[dict[str, Any], ...] = (
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
)
_PATH_PART = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]")


def wants_table(accept: str | None) -> bool:
    """Whether an ``Accept`` header asks for a ``meta.k8s.io`` Table (v1 or v1beta1) first."""
    for media in (accept or "").split(","):
        params = dict(part.strip().split("=", 1) for part in media.split(";")[1:] if "=" in part)
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io" and params.get("v") in ("v1", "v1beta1"):
            return True
        if media.split(";")[0].strip() in ("application/json", "*/*"):
            return False
    return False


def human_duration(seconds: float) -> str:
    """``k8s.io/apimachinery/pkg/util/duration.HumanDuration``."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        rest = whole % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        rest = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if rest == 0 else f"{hours // 24 // 365}y{rest}d"
    return f"{hours // 24 // 365}y"


def _find(obj: Any, path: str) -> tuple[bool, Any]:
    node = obj
    for field_name, index in _PATH_PART.findall(path.strip().removeprefix("{").removesuffix("}")):
        if field_name:
            if not isinstance(node, Mapping) or field_name not in node:
                return False, None
            node = node[field_name]
        else:
            if not isinstance(node, list) or int(index) >= len(node):
                return False, None
            node = node[int(index)]
    return True, node


def _parse_time(text: str) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _cell(column: Mapping[str, Any], obj: Mapping[str, Any], now: dt.datetime) -> Any:
    found, value = _find(obj, str(column.get("jsonPath") or ""))
    if not found or value is None:
        return None
    kind = column.get("type")
    if kind == "string":
        return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    if kind == "date":
        moment = _parse_time(value) if isinstance(value, str) else None
        return human_duration((now - moment).total_seconds()) if moment else None
    if kind == "integer":
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    if kind == "number":
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if kind == "boolean":
        return value if isinstance(value, bool) else None
    return value


def column_definitions(columns: tuple[Mapping[str, Any], ...] | None) -> list[dict[str, Any]]:
    """The Table's ``columnDefinitions``: Name, then the printer columns (or Created At for built-ins)."""
    out = [{"name": "Name", "type": "string", "format": "name", "description": _NAME_DESCRIPTION, "priority": 0}]
    if columns is None:
        out.append(
            {"name": "Created At", "type": "date", "format": "", "description": _CREATED_DESCRIPTION, "priority": 0}
        )
        return out
    for column in columns:
        out.append(
            {
                "name": str(column.get("name") or ""),
                "type": str(column.get("type") or ""),
                "format": str(column.get("format") or ""),
                "description": str(column.get("description") or ""),
                "priority": int(column.get("priority") or 0),
            }
        )
    return out


def _row(obj: Mapping[str, Any], columns: tuple[Mapping[str, Any], ...] | None, include: str, now: dt.datetime) -> Any:
    metadata = obj.get("metadata") or {}
    cells: list[Any] = [metadata.get("name")]
    if columns is None:
        cells.append(metadata.get("creationTimestamp"))
    else:
        cells.extend(_cell(column, obj, now) for column in columns)
    row: dict[str, Any] = {"cells": cells}
    if include == "Object":
        row["object"] = dict(obj)
    elif include != "None":
        row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": TABLE_API_VERSION, "metadata": metadata}
    return row


def to_table(
    body: Mapping[str, Any],
    columns: tuple[Mapping[str, Any], ...] | None,
    *,
    include_object: str = "Metadata",
    no_headers: bool = False,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """An object or a list as a ``meta.k8s.io/v1`` Table.

    Args:
        body: the object, or the list (``items``) as the server would answer it.
        columns: the resource's printer columns; None for a built-in kind (Name and Created At).
        include_object: ``Metadata`` (default), ``Object`` or ``None``.
        no_headers: leave ``columnDefinitions`` out (``TableOptions.noHeaders``).
        now: the time ages are measured to (the current time when None).
    """
    moment = now or dt.datetime.now(dt.UTC)
    is_list = isinstance(body.get("items"), list)
    items = body["items"] if is_list else [body]
    metadata = body.get("metadata") or {}
    table_metadata = {k: metadata[k] for k in ("resourceVersion", "continue", "remainingItemCount") if k in metadata}
    if not is_list:
        table_metadata = {"resourceVersion": metadata.get("resourceVersion", "")}
    return {
        "kind": "Table",
        "apiVersion": TABLE_API_VERSION,
        "metadata": table_metadata,
        "columnDefinitions": [] if no_headers else column_definitions(columns),
        "rows": [_row(item, columns, include_object, moment) for item in items],
    }
