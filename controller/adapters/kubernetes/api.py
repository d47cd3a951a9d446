"""One wrapper around a kubernetes ``ApiClient``: error translation, discovery, request timeouts."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from controller.errors import ApiError, ConflictError, ForbiddenError, NotFoundError, UnavailableError

T = TypeVar("T")
MAX_BODY = 300


def load_api_client(*, kubeconfig: str | None = None, context: str | None = None) -> k8s.ApiClient:
    """An ApiClient from a kubeconfig file/context, or from the in-cluster service account.

    With neither ``kubeconfig`` nor ``context``, the usual resolution applies: ``KUBECONFIG`` or
    ``~/.kube/config``, then in-cluster.
    """
    configuration = k8s.Configuration()
    if kubeconfig or context:
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context, client_configuration=configuration
        )
    else:
        try:
            k8s_config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except k8s_config.ConfigException:
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return k8s.ApiClient(configuration)


def _server_message(exc: ApiException) -> str:
    """The Status message and its causes (the specifics of a 422 live in ``details.causes``), cut short."""
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str) or not body:
        return str(exc.reason or "")[:MAX_BODY]
    try:
        parsed = json.loads(body)
    except ValueError:
        return body[:MAX_BODY]
    if not isinstance(parsed, dict):
        return body[:MAX_BODY]
    text = str(parsed.get("message") or "")
    details = parsed.get("details")
    if not isinstance(details, dict):
        details = {}
    causes = [
        f"{c.get('field')}: {c.get('message')}" if c.get("field") else str(c.get("message"))
        for c in (details.get("causes") or [])
        if isinstance(c, dict)
    ]
    if causes:
        text = f"{text} ({'; '.join(causes)})"
    return text[:MAX_BODY]


def as_dict(obj: object) -> dict[str, Any]:
    """A custom object as returned by the client (a dict), typed."""
    if not isinstance(obj, dict):
        raise TypeError(f"expected a JSON object from the API server, got {type(obj).__name__}")
    return obj


def metadata_of(obj: Any) -> Any:
    """``obj.metadata`` of a typed client object; the API server always sets it."""
    meta = obj.metadata
    if meta is None:
        raise TypeError(f"{type(obj).__name__} without metadata")
    return meta


class KubeApi:
    """A kubernetes ApiClient plus the project's error handling. Thread-safe.

    Args:
        api_client: the official client's ApiClient (its configuration picks the server).
        timeout_seconds: per-request timeout.
        on_error: called with the HTTP status (0 for no answer) of every failed call, for metrics.
    """

    def __init__(
        self,
        api_client: k8s.ApiClient,
        *,
        timeout_seconds: float = 10.0,
        on_error: Callable[[int], None] | None = None,
    ) -> None:
        self.api_client = api_client
        self.timeout = timeout_seconds
        self.custom = k8s.CustomObjectsApi(api_client)
        self.core = k8s.CoreV1Api(api_client)
        self.apps = k8s.AppsV1Api(api_client)
        self._on_error = on_error
        self._versions: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def call(self, fn: Callable[[], T], *, verb: str, resource: str, group: str, namespace: str, name: str = "") -> T:
        """Run one client call, translating its failures.

        Raises:
            NotFoundError, ConflictError, ForbiddenError, UnavailableError, ApiError.
        """
        what = f"{verb} {resource}{'.' + group if group else ''} {namespace}/{name}".rstrip("/")
        try:
            return fn()
        except ApiException as exc:
            code = int(exc.status or 0)
            if self._on_error:
                self._on_error(code)
            message = _server_message(exc)
            if code == 404:
                raise NotFoundError([f"{what}: not found ({message})"], code=code) from None
            # A failed JSON-patch ``test`` is a 422 too, but a real server drops its cause (handlers/patch.go,
            # applyJSPatch -> NewGenericServerResponse): only the writer can tell it from a schema violation, by
            # reading the object again (see KubernetesTrafficRouter.replace_route). No wording is relied on.
            if code == 409:
                raise ConflictError([f"{what}: conflict: {message}"], code=code) from None
            if code == 403:
                where = f"in namespace {namespace}" if namespace else "cluster-wide"
                raise ForbiddenError(
                    [
                        f"{what}: forbidden: RBAC must allow verb {verb!r} on resource {resource!r} in API group "
                        f"{group or 'core'!r} {where}. Server said: {message}"
                    ],
                    code=code,
                ) from None
            if code >= 500 or code in {0, 429}:
                raise UnavailableError([f"{what}: API server error {code}: {message}"], code=code) from None
            raise ApiError([f"{what}: HTTP {code}: {message}"], code=code) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if self._on_error:
                self._on_error(0)
            raise UnavailableError(
                [f"{what}: no answer from the API server: {type(exc).__name__}: {str(exc)[:MAX_BODY]}"]
            ) from None

    def resource_version(self, group: str, plural: str, *, candidates: tuple[str, ...]) -> str:
        """The version to use for one resource: the first of ``candidates`` whose resource list has it. Cached.

        Per resource, not per group: a group's ``preferredVersion`` is the highest version served by *any* of
        its CRDs, so with Gateway API's standard channel at v1 and a TCPRoute CRD serving only v1alpha2 (every
        release before v1.6) the group prefers v1 while ``/apis/gateway.networking.k8s.io/v1`` has no
        ``tcproutes``. Call :meth:`forget_version` after a 404 to discover again (a CRD upgraded or removed).

        Raises:
            NotFoundError: no candidate version serves the resource.
        """
        key = (group, plural)
        with self._lock:
            if key in self._versions:
                return self._versions[key]
        tried = []
        for version in candidates:
            if plural in self._served_resources(group, version):
                with self._lock:
                    self._versions[key] = version
                return version
            tried.append(f"{group}/{version}")
        raise NotFoundError(
            [f"resource {plural}.{group} is not served by this API server (looked in {', '.join(tried)})"], code=404
        )

    def forget_version(self, group: str, plural: str) -> None:
        """Drop the cached version of a resource, so the next call discovers it again."""
        with self._lock:
            self._versions.pop((group, plural), None)

    def _served_resources(self, group: str, version: str) -> set[str]:
        """The resource names in ``/apis/<group>/<version>``; empty when that group/version is not served."""
        try:
            answer = self.call(
                lambda: self.custom.get_api_resources(group, version, _request_timeout=self.timeout),
                verb="get",
                resource="apiresources",
                group=group,
                namespace="",
            )
        except NotFoundError:
            return set()
        return {str(resource.name) for resource in answer.resources or []}
