"""``metav1.Status`` failures as the real kube-apiserver writes them.

Each constructor mirrors one helper of ``k8s.io/apimachinery/pkg/api/errors`` (``NewNotFound``,
``NewConflict``, ``NewInvalid``, ...) with the same ``reason``, ``code``, ``details`` and message
wording, so that clients that branch on them (the official Python client, kubectl, controllers)
behave as they would against a cluster.

Not emulated: ``Status`` objects in protobuf, and the ``Retry-After`` semantics of priority-and-fairness
beyond echoing a header.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

REASON_BY_CODE: dict[int, str] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Gone",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


@dataclass(frozen=True)
class Cause:
    """One entry of ``details.causes``: what is wrong with which field."""

    reason: str
    message: str
    field: str | None = None

    def to_dict(self) -> dict[str, str]:
        """The cause as the API server serialises it (``field`` omitted when empty)."""
        out = {"reason": self.reason, "message": self.message}
        if self.field:
            out["field"] = self.field
        return out


@dataclass(eq=False)
class ApiError(Exception):
    """A failed request, carried up to the HTTP layer and written as a ``Status`` body.

    Attributes:
        code: HTTP status code.
        reason: ``Status.reason`` (``NotFound``, ``Conflict``, ``Invalid``...).
        message: ``Status.message``, worded as the real server words it.
        details: ``Status.details`` without ``causes``.
        causes: ``Status.details.causes``.
        headers: extra response headers (``Retry-After``).
        always_details: write ``details`` even when empty (``"details":{}``), as helpers that set a
            ``StatusDetails`` with empty fields do (``NewGenericServerResponse``, ``NewNotFound``).
    """

    code: int
    reason: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    causes: list[Cause] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    always_details: bool = False

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.code} {self.reason}: {self.message}"

    def to_status(self) -> dict[str, Any]:
        """The ``Status`` object for the response body or a watch ``ERROR`` event."""
        details = {k: v for k, v in self.details.items() if v not in ("", None)}
        if self.causes:
            details["causes"] = [c.to_dict() for c in self.causes]
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if details or self.always_details:
            status["details"] = details
        status["code"] = self.code
        return status


def _details(group: str, kind: str, name: str) -> dict[str, Any]:
    return {"name": name, "group": group, "kind": kind}


def qualified(resource_or_kind: str, group: str) -> str:
    """``plural.group`` (or ``Kind.group``) as the server prints it; bare for the core group."""
    return f"{resource_or_kind}.{group}" if group else resource_or_kind


def not_found(group: str, plural: str, name: str) -> ApiError:
    """``NewNotFound``: ``virtualservices.networking.istio.io "x" not found``."""
    return ApiError(404, "NotFound", f'{qualified(plural, group)} "{name}" not found', _details(group, plural, name))


def already_exists(group: str, plural: str, name: str) -> ApiError:
    """``NewAlreadyExists``: ``configmaps "x" already exists``."""
    return ApiError(
        409,
        "AlreadyExists",
        f'{qualified(plural, group)} "{name}" already exists',
        _details(group, plural, name),
    )


def conflict(group: str, plural: str, name: str, why: str | None = None) -> ApiError:
    """``NewConflict`` for an optimistic-concurrency failure (stale ``resourceVersion``)."""
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified(plural, group)} "{name}": {why}',
        _details(group, plural, name),
    )


def invalid(group: str, kind: str, name: str, causes: list[Cause]) -> ApiError:
    """``NewInvalid``: ``VirtualService.networking.istio.io "x" is invalid: field: message``."""
    parts = [f"{c.field}: {c.message}" if c.field else c.message for c in causes]
    summary = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    return ApiError(
        422,
        "Invalid",
        f'{qualified(kind, group)} "{name}" is invalid: {summary}',
        _details(group, kind, name),
        list(causes),
    )


def invalid_patch(message: str) -> ApiError:
    """What the server answers when a JSON patch cannot be applied (a failed ``test``, a bad path).

    The real server wraps the json-patch library's error with ``NewGenericServerResponse(422, ...)``
    (``handlers/patch.go``, ``jsonPatcher.applyJSPatch``), which adds a cause only for an "unexpected
    response" and so drops the library's message: the body is the generic one, ``details: {}``, no causes.
    ``message`` is kept for the emulator's own logs only.
    """
    del message
    return ApiError(
        422, "Invalid", "the server rejected our request due to an error in our request", always_details=True
    )


def bad_request(message: str) -> ApiError:
    """``NewBadRequest``."""
    return ApiError(400, "BadRequest", message)


def forbidden(group: str, plural: str, name: str, why: str) -> ApiError:
    """``NewForbidden``: ``virtualservices.networking.istio.io "x" is forbidden: <why>``."""
    subject = qualified(plural, group)
    message = f'{subject} "{name}" is forbidden: {why}' if name else f"{subject} is forbidden: {why}"
    return ApiError(403, "Forbidden", message, _details(group, plural, name))


def internal(why: str) -> ApiError:
    """``NewInternalError``: ``Internal error occurred: <why>``."""
    return ApiError(500, "InternalError", f"Internal error occurred: {why}", causes=[Cause("", why)] if why else [])


def expired(message: str) -> ApiError:
    """``NewResourceExpired``, sent inside a watch as an ``ERROR`` event (``too old resource version``)."""
    return ApiError(410, "Expired", message)


def method_not_allowed(verb: str, group: str, plural: str) -> ApiError:
    """``NewMethodNotSupported``."""
    return ApiError(
        405,
        "MethodNotAllowed",
        f"{verb} is not supported on resources of kind {qualified(plural, group)!r}",
        {"group": group, "kind": plural},
    )


def unsupported_media_type(content_type: str, accepted: list[str]) -> ApiError:
    """What the server answers for a PATCH body type it does not take for this resource."""
    return ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: {', '.join(accepted)}",
        {"kind": content_type} if content_type else {},
    )


def path_not_found() -> ApiError:
    """A URL that names no API, group, version or resource."""
    return ApiError(404, "NotFound", "the server could not find the requested resource", always_details=True)


def generic(code: int, message: str | None = None, *, reason: str | None = None) -> ApiError:
    """Any other failure, with the reason the server would pick for that code."""
    reason = reason or REASON_BY_CODE.get(code, "Unknown")
    if message is None:
        try:
            message = HTTPStatus(code).phrase
        except ValueError:
            message = f"the server responded with the status code {code}"
    return ApiError(code, reason, message)


def success_status(group: str, plural: str, name: str, uid: str) -> dict[str, Any]:
    """The ``Status`` a built-in resource answers DELETE with."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {k: v for k, v in {**_details(group, plural, name), "uid": uid}.items() if v},
    }


def describe_value(value: Any) -> str:
    """A value the way apimachinery prints it in ``Invalid value: ...`` (strings quoted)."""
    if isinstance(value, str):
        return json.dumps(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)
