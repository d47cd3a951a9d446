"""TokenReview and SubjectAccessReview answers from a configured table (docs/emulator.md).

The emulator has no authentication or RBAC of its own; a component that delegates both to the API server
(the dashboard in the cluster, as kube-rbac-proxy does) creates these two reviews. They are answered from
:class:`ReviewTable`: the tokens it knows, with their user and groups, and the access it grants.

As the real server (``pkg/registry/authentication/tokenreview/storage.go``,
``pkg/registry/authorization/subjectaccessreview/rest.go``), a create answers 201 with the request's spec
echoed and a ``status``: ``{"authenticated": true, "user": {...}}`` for a known token, ``{"user": {},
"error": "..."}`` for an unknown one; ``{"allowed": true|false, "reason": ...}`` for an access review. An
empty token is 400 (the TokenReview storage's ``NewBadRequest``), a review without ``resourceAttributes``
422 ``Invalid`` (``ValidateSubjectAccessReview``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from canary_sandbox.kubeapi.status import ApiError, Cause, bad_request, invalid

TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
REVIEW_PATHS = (TOKEN_REVIEWS, ACCESS_REVIEWS)


@dataclass(frozen=True)
class Grant:
    """Access granted to a user or a group: ``verb`` on ``group``/``resource`` in ``namespace`` ("*": any)."""

    subject: str
    verb: str = "*"
    group: str = "*"
    resource: str = "*"
    namespace: str = "*"

    def allows(self, user: str, groups: list[str], attributes: dict[str, Any]) -> bool:
        """Whether this grant covers the request's user (or one of its groups) and attributes."""
        if self.subject != user and self.subject not in groups:
            return False
        wanted = {
            "verb": attributes.get("verb") or "",
            "group": attributes.get("group") or "",
            "resource": attributes.get("resource") or "",
            "namespace": attributes.get("namespace") or "",
        }
        mine = {"verb": self.verb, "group": self.group, "resource": self.resource, "namespace": self.namespace}
        return all(value in ("*", wanted[key]) for key, value in mine.items())


@dataclass
class ReviewTable:
    """Known tokens and granted access; empty by default (every token rejected, nothing allowed).

    ``add_token("t0k3n", "alice", groups=["dev"])`` then ``grant("alice", verb="get", group="canaryctl.dev",
    resource="canarypolicies", namespace="shop")``.
    """

    tokens: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    grants: list[Grant] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_token(self, token: str, user: str, *, groups: list[str] | None = None) -> None:
        """Make ``token`` authenticate as ``user`` (in ``groups``, plus ``system:authenticated``)."""
        with self._lock:
            self.tokens[token] = (user, [*(groups or []), "system:authenticated"])

    def grant(self, subject: str, **attributes: str) -> None:
        """Allow a user or group what ``attributes`` say (verb, group, resource, namespace; default any)."""
        with self._lock:
            self.grants.append(Grant(subject, **attributes))

    def answer(self, path: str, body: Any) -> dict[str, Any]:
        """The created review for a POST to ``path``.

        Raises:
            ApiError: 400 for a body that is not an object, 422 for a review without what it needs.
        """
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        spec = body.get("spec")
        spec = spec if isinstance(spec, dict) else {}
        if path == TOKEN_REVIEWS:
            return {**_echo(body, "TokenReview", "authentication.k8s.io/v1"), "status": self._token(spec)}
        return {**_echo(body, "SubjectAccessReview", "authorization.k8s.io/v1"), "status": self._access(spec)}

    def _token(self, spec: dict[str, Any]) -> dict[str, Any]:
        token = spec.get("token")
        if not isinstance(token, str) or not token:
            raise bad_request("token is required for TokenReview in authentication")
        with self._lock:
            known = self.tokens.get(token)
        if known is None:
            return {"user": {}, "error": "[invalid bearer token, token lookup failed]"}
        user, groups = known
        return {
            "authenticated": True,
            "user": {"username": user, "uid": f"uid-{user}", "groups": list(groups)},
            "audiences": list(spec.get("audiences") or ["https://kubernetes.default.svc"]),
        }

    def _access(self, spec: dict[str, Any]) -> dict[str, Any]:
        attributes = spec.get("resourceAttributes")
        if not isinstance(attributes, dict):
            raise _invalid(
                "authorization.k8s.io",
                "SubjectAccessReview",
                "spec.resourceAttributes",
                "Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified",
            )
        user = str(spec.get("user") or "")
        groups = [str(group) for group in spec.get("groups") or []]
        with self._lock:
            allowed = any(grant.allows(user, groups, attributes) for grant in self.grants)
        if allowed:
            return {"allowed": True, "reason": "granted by the emulator's review table"}
        return {"allowed": False}


def _echo(body: dict[str, Any], kind: str, api_version: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "apiVersion": api_version,
        "metadata": {"creationTimestamp": None},
        "spec": body.get("spec") or {},
    }


def _invalid(group: str, kind: str, path: str, message: str) -> ApiError:
    return invalid(group, kind, "", [Cause("FieldValueRequired", message, path)])
