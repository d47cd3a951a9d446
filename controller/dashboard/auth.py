"""Who may see what on the dashboard.

Local mode (``canaryctl dashboard``): no login; the user's own kubeconfig, so their RBAC applies to every
read and command. Cluster mode (the daemon with ``CANARY_DASHBOARD=true``): every API request carries
``Authorization: Bearer <token>``; the token is checked with a TokenReview (``authentication.k8s.io/v1``)
and each namespace shown with a SubjectAccessReview (``authorization.k8s.io/v1``: verb ``get``, resource
``canarypolicies``, group ``canaryctl.dev``), the kube-rbac-proxy pattern. Answers are cached for
``cache_seconds`` (10 s) per token, so a page polling every 2 s costs the API server one review per
namespace every 10 s.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from kubernetes import client as k8s

from controller.adapters.kubernetes.api import KubeApi

POLICY_GROUP = "canaryctl.dev"
POLICY_RESOURCE = "canarypolicies"


@dataclass(frozen=True)
class Viewer:
    """An authenticated caller: ``username`` and ``groups`` as the TokenReview returned them."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


class AuthProblem(Exception):
    """A request refused: ``status`` 401 (no or rejected token) or 403 (RBAC), with a message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Gate(Protocol):
    """Checks a request's credentials and the namespaces its caller may see."""

    def viewer(self, authorization: str | None) -> Viewer | None:
        """The caller, None in local mode. Raises AuthProblem (401) for a missing or rejected token."""

    def may_see(self, viewer: Viewer | None, namespace: str) -> bool:
        """Whether the caller may ``get canarypolicies`` in ``namespace``."""


class LocalGate:
    """Local mode: the kubeconfig's own RBAC applies to every call; the page has no login."""

    def viewer(self, authorization: str | None) -> Viewer | None:
        """Nobody to check in local mode."""
        del authorization
        return None

    def may_see(self, viewer: Viewer | None, namespace: str) -> bool:
        """Everything the kubeconfig can read."""
        del viewer, namespace
        return True


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ReviewGate:
    """Cluster mode: TokenReview for the bearer token, SubjectAccessReview per namespace, both cached.

    Args:
        api: the controller's own API (its service account may create tokenreviews and subjectaccessreviews).
        audiences: the token audiences to ask for (empty: the API server's default).
        cache_seconds: how long an answer is reused.
    """

    def __init__(self, api: KubeApi, *, audiences: tuple[str, ...] = (), cache_seconds: float = 10.0) -> None:
        self.api = api
        self.audiences = audiences
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[float, Viewer | None]] = {}
        self._access: dict[tuple[str, str], tuple[float, bool]] = {}

    def _cached(self, cache: dict[Any, tuple[float, Any]], key: Any) -> tuple[bool, Any]:
        with self._lock:
            hit = cache.get(key)
            if hit is not None and time.monotonic() - hit[0] < self.cache_seconds:
                return True, hit[1]
            if len(cache) > 4096:
                cache.clear()
        return False, None

    def _plain(self, obj: object) -> dict[str, Any]:
        plain: Any = self.api.api_client.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]
        return plain if isinstance(plain, dict) else {}

    def viewer(self, authorization: str | None) -> Viewer | None:
        """The caller of a bearer token; raises AuthProblem(401) without one or when TokenReview rejects it."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthProblem(401, "a bearer token is required: Authorization: Bearer <token>")
        key = _digest(token)
        hit, cached = self._cached(self._tokens, key)
        if not hit:
            cached = self._review_token(token)
            with self._lock:
                self._tokens[key] = (time.monotonic(), cached)
        if cached is None:
            raise AuthProblem(401, "the token was rejected by the Kubernetes TokenReview")
        viewer: Viewer = cached
        return viewer

    def _review_token(self, token: str) -> Viewer | None:
        body = k8s.V1TokenReview(
            api_version="authentication.k8s.io/v1",
            kind="TokenReview",
            spec=k8s.V1TokenReviewSpec(token=token, audiences=list(self.audiences) or None),
        )
        authn = k8s.AuthenticationV1Api(self.api.api_client)
        answer = self._plain(
            self.api.call(
                lambda: authn.create_token_review(body, _request_timeout=self.api.timeout),
                verb="create",
                resource="tokenreviews",
                group="authentication.k8s.io",
                namespace="",
            )
        )
        status = answer.get("status") or {}
        if not status.get("authenticated"):
            return None
        user = status.get("user") or {}
        extra = user.get("extra") or {}
        return Viewer(
            username=str(user.get("username") or ""),
            uid=str(user.get("uid") or ""),
            groups=tuple(str(group) for group in user.get("groups") or ()),
            extra=tuple(sorted((str(k), tuple(str(x) for x in v or ())) for k, v in extra.items())),
        )

    def may_see(self, viewer: Viewer | None, namespace: str) -> bool:
        """Whether a SubjectAccessReview allows ``get canarypolicies.canaryctl.dev`` in ``namespace``."""
        if viewer is None:
            return False
        key = (f"{viewer.username}\0{viewer.uid}\0{','.join(viewer.groups)}", namespace)
        hit, cached = self._cached(self._access, key)
        if hit:
            allowed: bool = cached
            return allowed
        body = k8s.V1SubjectAccessReview(
            api_version="authorization.k8s.io/v1",
            kind="SubjectAccessReview",
            spec=k8s.V1SubjectAccessReviewSpec(
                user=viewer.username,
                uid=viewer.uid or None,
                groups=list(viewer.groups),
                extra={k: list(v) for k, v in viewer.extra} or None,
                resource_attributes=k8s.V1ResourceAttributes(
                    namespace=namespace, verb="get", group=POLICY_GROUP, resource=POLICY_RESOURCE
                ),
            ),
        )
        authz = k8s.AuthorizationV1Api(self.api.api_client)
        answer = self._plain(
            self.api.call(
                lambda: authz.create_subject_access_review(body, _request_timeout=self.api.timeout),
                verb="create",
                resource="subjectaccessreviews",
                group="authorization.k8s.io",
                namespace="",
            )
        )
        allowed = bool((answer.get("status") or {}).get("allowed"))
        with self._lock:
            self._access[key] = (time.monotonic(), allowed)
        return allowed
