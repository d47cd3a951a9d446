"""Responses of a real kube-apiserver, each built from the apiserver source that writes it (named beside it).

A ``ReplayServer`` answers a scripted conversation: each expected request (method and path) with the
response a real server gives it. A request out of order is answered 500 and recorded, so a test also checks
that the adapters ask what they ask of a cluster, in the same order.

Objects are the shared Istio and Gateway API examples as a server stores them: with ``uid``,
``resourceVersion``, ``generation``, ``creationTimestamp`` and ``managedFields`` (which the emulator does not
keep, so the adapters are tested against both).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from tests.support.http_server import StubHandler, StubHttpServer

NAMESPACE = "contract"
CRD_VERBS = ["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"]


def storage_version_hash(group: str, version: str, kind: str) -> str:
    """``storageversionhash.go`` ``StorageVersionHash``: base64 of the first 8 bytes of sha256(group/version/kind)."""
    return base64.b64encode(hashlib.sha256(f"{group}/{version}/{kind}".encode()).digest()[:8]).decode()


def resource_list(group: str, version: str, entries: list[tuple[str, str, list[str], list[str]]]) -> dict[str, Any]:
    """``customresource_discovery_controller.go`` ``sync``: an ``APIResourceList`` of a CRD group/version.

    Each CRD adds its resource (the CRD verbs, short names, categories, storage version hash) and, with a
    status subresource, ``<plural>/status`` with ``get``, ``patch``, ``update``.
    """
    resources: list[dict[str, Any]] = []
    for plural, kind, short_names, categories in entries:
        entry: dict[str, Any] = {
            "name": plural,
            "singularName": kind.lower(),
            "namespaced": True,
            "kind": kind,
            "verbs": CRD_VERBS,
        }
        if short_names:
            entry["shortNames"] = short_names
        if categories:
            entry["categories"] = categories
        entry["storageVersionHash"] = storage_version_hash(group, version, kind)
        resources.append(entry)
        resources.append(
            {
                "name": f"{plural}/status",
                "singularName": "",
                "namespaced": True,
                "kind": kind,
                "verbs": ["get", "patch", "update"],
            }
        )
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}", "resources": resources}


def status(code: int, reason: str, message: str, details: dict[str, Any]) -> dict[str, Any]:
    """A ``metav1.Status`` failure as ``responsewriters.ErrorNegotiated`` writes it."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details,
        "code": code,
    }


def not_found(group: str, plural: str, name: str) -> dict[str, Any]:
    """``errors.go`` ``NewNotFound(qualifiedResource, name)``, as ``Store.Get`` returns it for a missing key."""
    return status(
        404, "NotFound", f'{plural}.{group} "{name}" not found', {"name": name, "group": group, "kind": plural}
    )


# A group/version no CRD serves: the same body as an unknown path (KUBE-API.md, "Unknown path"); the adapters
# branch on the 404 alone.
PATH_NOT_FOUND = status(404, "NotFound", "the server could not find the requested resource", {})

# handlers/patch.go, jsonPatcher.applyJSPatch: a failed ``test`` (or an op on a missing path) becomes
# errors.NewGenericServerResponse(http.StatusUnprocessableEntity, "", schema.GroupResource{}, "", "", 0, false):
# reason Invalid, the generic message, empty details, no causes.
FAILED_TEST_OP = status(422, "Invalid", "the server rejected our request due to an error in our request", {})


def conflict(group: str, plural: str, name: str) -> dict[str, Any]:
    """``registry/generic/registry/store.go`` ``Store.Update``: a stale resourceVersion gives
    ``errors.NewConflict(qualifiedResource, name, fmt.Errorf(OptimisticLockErrorMsg))``."""
    return status(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {plural}.{group} "{name}": the object has been modified; please apply '
        "your changes to the latest version and try again",
        {"name": name, "group": group, "kind": plural},
    )


def invalid_weight(name: str) -> dict[str, Any]:
    """apiextensions-apiserver's schema validation of a VirtualService whose weight is a string:
    ``errors.NewInvalid(schema.GroupKind{Group, Kind}, name, errs)`` (``customresource_handler.go`` strategy
    ``Validate``), the cause from kube-openapi's type validator (``validate/type.go``): ``field.Invalid(path,
    "string", "... in body must be of type integer: \\"string\\"")``."""
    field_path = "spec.tcp[0].route[0].weight"
    detail = f'Invalid value: "string": {field_path} in body must be of type integer: "string"'
    return status(
        422,
        "Invalid",
        f'VirtualService.networking.istio.io "{name}" is invalid: {field_path}: {detail}',
        {
            "name": name,
            "group": "networking.istio.io",
            "kind": "VirtualService",
            "causes": [{"reason": "FieldValueInvalid", "message": detail, "field": field_path}],
        },
    )


def stored(
    obj: dict[str, Any], *, resource_version: str, generation: int = 1, manager: str = "kubectl-client-side-apply"
) -> dict[str, Any]:
    """An object as ``Store.Get`` returns it: the metadata the server sets, ``managedFields`` included."""
    out = copy.deepcopy(obj)
    meta = out.setdefault("metadata", {})
    meta.update(
        namespace=NAMESPACE,
        uid="6f1c2f0e-5d1b-4d0a-9a57-3c1d2b7e9a10",
        resourceVersion=resource_version,
        generation=generation,
        creationTimestamp="2026-12-03T18:59:26Z",
        managedFields=[
            {
                "manager": manager,
                "operation": "Update",
                "apiVersion": out.get("apiVersion", ""),
                "time": "2026-12-03T18:59:26Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {}},
            }
        ],
    )
    return out


@dataclass
class Exchange:
    """One expected request and the real server's answer (``body`` may be a function of the request body)."""

    method: str
    path: str
    code: int
    body: Any | Callable[[Any], Any]


@dataclass
class Conversation:
    """The script a ``ReplayServer`` follows, and what went differently."""

    exchanges: list[Exchange]
    position: int = 0
    surprises: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, method: str, path: str, request: Any) -> tuple[int, Any]:
        with self.lock:
            if self.position >= len(self.exchanges):
                self.surprises.append(f"{method} {path} after the end of the script")
                return 500, status(500, "InternalError", "unexpected request", {})
            expected = self.exchanges[self.position]
            self.position += 1
            if (expected.method, expected.path) != (method, path):
                self.surprises.append(f"{method} {path}, expected {expected.method} {expected.path}")
                return 500, status(500, "InternalError", "unexpected request", {})
            return expected.code, expected.body(request) if callable(expected.body) else expected.body

    @property
    def finished(self) -> bool:
        return self.position == len(self.exchanges)


class ReplayServer(StubHttpServer):
    """A loopback HTTP server answering one ``Conversation``."""

    def __init__(self, conversation: Conversation) -> None:
        self.conversation = conversation
        super().__init__()

    def handle(self, request: StubHandler) -> None:
        """Answer the request as the conversation says."""
        raw = request.body()
        body = json.loads(raw) if raw.strip() else None
        code, answer = self.conversation.answer(request.command, urlsplit(request.path).path, body)
        request.reply(code, json.dumps(answer, separators=(",", ":")).encode(), "application/json")
