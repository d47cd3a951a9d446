"""One wrapper around a kubernetes ``ApiClient``: typed verbs, error translation, discovery, timeouts.

An object is named by a :class:`Resource` (group, plural, versions) plus its namespace and name, stated
once per call::

    api.patch_obj(resource=CANARYPOLICIES, namespace="shop", name="tcp-echo", patch={...})

Every verb goes through :meth:`KubeApi.call`, the one place where the client's exceptions become the
project's (``controller.errors``).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import urllib3
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from controller.errors import (
    ApiError,
    ConflictError,
    ForbiddenError,
    KubeconfigError,
    NotFoundError,
    UnavailableError,
)

T = TypeVar("T")
MAX_BODY = 300
DEFAULT_KUBECONFIG = "~/.kube/config"

PatchType = Literal["merge", "json"]
_PATCH_CONTENT_TYPES: dict[PatchType, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
}


@dataclass(frozen=True)
class Resource:
    """One kind of object the API serves; every verb of :class:`KubeApi` takes one.

    Attributes:
        group: the API group; ``""`` for the core group.
        plural: the resource's name in URLs (``configmaps``, ``virtualservices``).
        versions: the versions to use, in order of preference. One is used as it is; of several, the first
            the server serves for this resource is discovered (:meth:`KubeApi.resource_version`), cached, and
            discovered again after a 404 (the CRD may have been upgraded to serve another version).
        model: for a built-in kind, the official client's snake_case name of the kind (``config_map``): the
            verbs then go through its typed API (``CoreV1Api.read_namespaced_config_map``) and take and
            return its models. None for a custom resource: ``CustomObjectsApi``, plain dicts.
        namespaced: False for a cluster-scoped kind (``namespaces``).
    """

    group: str
    plural: str
    versions: tuple[str, ...]
    model: str | None = None
    namespaced: bool = True

    def __post_init__(self) -> None:
        if not self.versions:
            raise ValueError(f"resource {self.plural}.{self.group} needs at least one version")


CONFIGMAPS = Resource("", "configmaps", ("v1",), model="config_map")
EVENTS = Resource("", "events", ("v1",), model="event")
NAMESPACES = Resource("", "namespaces", ("v1",), model="namespace", namespaced=False)
DEPLOYMENTS = Resource("apps", "deployments", ("v1",), model="deployment")
LEASES = Resource("coordination.k8s.io", "leases", ("v1",), model="lease")

# The client's typed API of each built-in group/version a Resource with a ``model`` may name.
_TYPED_APIS: dict[tuple[str, str], Callable[[k8s.ApiClient], Any]] = {
    ("", "v1"): k8s.CoreV1Api,
    ("apps", "v1"): k8s.AppsV1Api,
    ("coordination.k8s.io", "v1"): k8s.CoordinationV1Api,
}


def load_api_client(*, kubeconfig: str | None = None, context: str | None = None) -> k8s.ApiClient:
    """An ApiClient from a kubeconfig file/context, or from the in-cluster service account.

    With neither ``kubeconfig`` nor ``context``, the usual resolution applies: ``KUBECONFIG`` or
    ``~/.kube/config``, then in-cluster.

    Raises:
        KubeconfigError: the configuration cannot be loaded (the message says from where, and why).
    """
    # The client reads KUBECONFIG once, when it is imported: read it here, so that the variable counts
    # whenever a client is made (and in tests).
    path = kubeconfig or os.environ.get("KUBECONFIG") or DEFAULT_KUBECONFIG
    configuration = k8s.Configuration()
    try:
        if kubeconfig or context:
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=path, context=context, client_configuration=configuration
            )
        else:
            try:
                k8s_config.load_kube_config(config_file=path, client_configuration=configuration)  # type: ignore[no-untyped-call]
            except k8s_config.ConfigException:
                k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except (k8s_config.ConfigException, OSError, ValueError, TypeError, yaml.YAMLError) as exc:
        tried = path if kubeconfig or context else f"{path} or the in-cluster service account"
        context_note = f" (context {context})" if context else ""
        why = str(exc).strip().strip("'\"") or type(exc).__name__
        if kubeconfig and not os.path.exists(os.path.expanduser(kubeconfig)):
            why = "no such file"
        raise KubeconfigError([f"cannot load a Kubernetes configuration from {tried}{context_note}: {why}"]) from exc
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


def as_json(response: Any) -> dict[str, Any]:
    """The JSON object of a response asked for with ``_preload_content=False`` (the client's models skipped)."""
    try:
        return as_dict(json.loads(response.data))
    finally:
        response.release_conn()


def metadata_of(obj: Any) -> Any:
    """``obj.metadata`` of a typed client object; the API server always sets it."""
    meta = obj.metadata
    if meta is None:
        raise TypeError(f"{type(obj).__name__} without metadata")
    return meta


def _method_name(resource: Resource, action: str, *, scoped: bool) -> str:
    """The client method of ``action`` on ``resource``: ``get_namespaced_custom_object``,
    ``read_namespaced_config_map``, ``list_config_map_for_all_namespaces``, ``read_namespace``..."""
    if resource.model is None:
        return f"{action}_{'namespaced' if scoped else 'cluster'}_custom_object"
    typed = "read" if action == "get" else action
    if scoped:
        return f"{typed}_namespaced_{resource.model}"
    if resource.namespaced:  # a namespaced kind, listed across every namespace
        return f"list_{resource.model}_for_all_namespaces"
    return f"{typed}_{resource.model}"


def _name_of(body: Any) -> str:
    """``metadata.name`` of a dict or a client model, for messages ('' when it has none: ``generateName``)."""
    meta = body.get("metadata") if isinstance(body, dict) else getattr(body, "metadata", None)
    name = meta.get("name") if isinstance(meta, dict) else getattr(meta, "name", None)
    return str(name or "")


def _cut_short(exc: ApiException) -> ApiException:
    """``exc`` with its body cut to ``MAX_BODY`` characters and its response headers dropped.

    It stays the cause of the project's error (``raise ... from``), so a traceback in a log still shows
    the status, reason and the start of the body, but never a whole body or the response's headers.
    """
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and len(body) > MAX_BODY:
        exc.body = body[:MAX_BODY] + "..."
    exc.headers = None
    return exc


class KubeApi:
    """A kubernetes ApiClient plus the project's error handling. Thread-safe.

    The verbs (:meth:`get_obj`, :meth:`list_objs`, :meth:`create_obj`, :meth:`replace_obj`,
    :meth:`replace_status`, :meth:`patch_obj`) take the object's :class:`Resource`, namespace and name
    once, pick the version (discovering it when the resource names several), and translate failures
    through :meth:`call`. Custom resources come and go as dicts, built-in kinds as the client's models.

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
        self._typed: dict[tuple[str, str], Any] = {("", "v1"): self.core, ("apps", "v1"): self.apps}
        self._lock = threading.Lock()

    # -- verbs ----------------------------------------------------------------------------------------

    def get_obj(self, *, resource: Resource, namespace: str, name: str) -> Any:
        """The object (a dict for a custom resource, the client's model for a built-in kind).

        Raises:
            NotFoundError: no such object (or resource).
            ForbiddenError, UnavailableError, ApiError: see :meth:`call`.
        """
        return self._request(resource, "get", "get", namespace=namespace, name=name)

    def list_objs(
        self,
        *,
        resource: Resource,
        namespace: str | None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        **client_options: Any,
    ) -> Any:
        """The objects in ``namespace`` (None: every namespace), optionally filtered by selectors.

        Returns:
            The list as the server sends it: a dict with ``items`` for a custom resource, the client's
            list model for a built-in kind.
        """
        return self._request(
            resource,
            "list",
            "list",
            namespace=namespace,
            label_selector=label_selector,
            field_selector=field_selector,
            **client_options,
        )

    def list_raw(self, **selection: Any) -> dict[str, Any]:
        """:meth:`list_objs` (same arguments), but always the server's JSON as a dict (``items``, ``metadata``),
        for built-in kinds too: nothing is turned into the client's models, which costs more than the request
        at 10,000 objects."""
        return as_json(self.list_objs(**selection, _preload_content=False))

    def watch_call(self, *, resource: Resource, namespace: str | None) -> tuple[Callable[..., Any], dict[str, Any]]:
        """The client's list method for ``resource`` in ``namespace`` (None: every namespace) and its fixed
        arguments, for ``kubernetes.watch.Watch.stream``, at the version the verbs use."""
        scoped = resource.namespaced and namespace is not None
        method = _method_name(resource, "list", scoped=scoped)
        version = (
            resource.versions[0]
            if len(resource.versions) == 1
            else self.resource_version(resource.group, resource.plural, candidates=resource.versions)
        )
        arguments: dict[str, Any] = {"namespace": namespace} if scoped else {}
        if resource.model is None:
            arguments.update(group=resource.group, version=version, plural=resource.plural)
            return getattr(self.custom, method), arguments
        return getattr(self._typed_api(resource, version), method), arguments

    def create_obj(self, *, resource: Resource, namespace: str, body: Any, raw: bool = False) -> Any:
        """Create ``body`` in ``namespace`` (ConflictError when it exists already); returns what was stored
        (with ``raw``, as the server's JSON even for a built-in kind: :func:`as_json`)."""
        options = {"_preload_content": False} if raw else {}
        answer = self._request(
            resource, "create", "create", namespace=namespace, name=_name_of(body), body=body, **options
        )
        return as_json(answer) if raw else answer

    def replace_obj(self, *, resource: Resource, namespace: str, name: str, body: Any, raw: bool = False) -> Any:
        """Replace the object with ``body``; conditional on ``body``'s resourceVersion (else ConflictError);
        returns what was stored (with ``raw``, as the server's JSON)."""
        options = {"_preload_content": False} if raw else {}
        answer = self._request(resource, "replace", "update", namespace=namespace, name=name, body=body, **options)
        return as_json(answer) if raw else answer

    def replace_status(self, *, resource: Resource, namespace: str, name: str, body: Any) -> Any:
        """Replace the object's ``status`` subresource with ``body``'s, conditional on its resourceVersion."""
        return self._request(resource, "replace", "update", namespace=namespace, name=name, body=body, status=True)

    def patch_obj(
        self, *, resource: Resource, namespace: str, name: str, patch: Any, patch_type: PatchType = "merge"
    ) -> Any:
        """Patch the object: a JSON merge patch (a dict), or a JSON patch (a list of operations).

        Raises:
            ConflictError: a ``resourceVersion`` in the patch is stale (409).
            ApiError: 422 for a failed JSON-patch ``test`` as for a schema violation (a real server does not
                tell them apart: see ``KubernetesTrafficRouter.replace_route``).
        """
        return self._request(
            resource,
            "patch",
            "patch",
            namespace=namespace,
            name=name,
            body=patch,
            _content_type=_PATCH_CONTENT_TYPES[patch_type],
        )

    def _request(
        self,
        resource: Resource,
        action: str,
        verb: str,
        *,
        namespace: str | None,
        name: str = "",
        status: bool = False,
        **arguments: Any,
    ) -> Any:
        """One verb on one object: the version picked, the client's method called, failures translated.

        ``action`` names the client's method (``get``, ``list``, ``create``, ``replace``, ``patch``); ``verb``
        is the RBAC verb messages name (``update`` for ``replace``).
        """
        scoped = resource.namespaced and namespace is not None
        if scoped:
            arguments["namespace"] = namespace
        if action not in ("create", "list"):
            arguments["name"] = name
        arguments["_request_timeout"] = self.timeout
        method = _method_name(resource, action, scoped=scoped) + ("_status" if status else "")

        def attempt(version: str) -> Any:
            if resource.model is None:
                fn = getattr(self.custom, method)
                where = {"group": resource.group, "version": version, "plural": resource.plural}
            else:
                fn = getattr(self._typed_api(resource, version), method)
                where = {}
            return self.call(
                lambda: fn(**where, **arguments),
                verb=verb,
                resource=f"{resource.plural}/status" if status else resource.plural,
                group=resource.group,
                namespace=namespace or "",
                name=name,
            )

        return self._at_version(resource, attempt)

    def _typed_api(self, resource: Resource, version: str) -> Any:
        key = (resource.group, version)
        with self._lock:
            api = self._typed.get(key)
            if api is None:
                factory = _TYPED_APIS.get(key)
                if factory is None:
                    raise ValueError(f"no typed client API for {resource.group or 'core'}/{version}")
                api = self._typed[key] = factory(self.api_client)
        return api

    def _at_version(self, resource: Resource, attempt: Callable[[str], T]) -> T:
        """``attempt(version)`` at the resource's version; with several candidates, at the discovered one, and
        after a 404 discovered once more and retried when that changed the version."""
        if len(resource.versions) == 1:
            return attempt(resource.versions[0])
        version = self.resource_version(resource.group, resource.plural, candidates=resource.versions)
        try:
            return attempt(version)
        except NotFoundError:
            self.forget_version(resource.group, resource.plural)
            again = self.resource_version(resource.group, resource.plural, candidates=resource.versions)
            if again == version:
                raise
            return attempt(again)

    # -- translation ----------------------------------------------------------------------------------

    def call(self, fn: Callable[[], T], *, verb: str, resource: str, group: str, namespace: str, name: str = "") -> T:
        """Run one client call, translating its failures: the one place this happens.

        The verbs above call it; use it directly only for what they do not cover (watches, discovery).
        The project's error keeps the client's exception as its cause, cut short (:func:`_cut_short`).

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
            cause = _cut_short(exc)
            if code == 404:
                raise NotFoundError([f"{what}: not found ({message})"], code=code) from cause
            # A failed JSON-patch ``test`` is a 422 too, but a real server drops its cause (handlers/patch.go,
            # applyJSPatch -> NewGenericServerResponse): only the writer can tell it from a schema violation, by
            # reading the object again (see KubernetesTrafficRouter.replace_route). No wording is relied on.
            if code == 409:
                raise ConflictError([f"{what}: conflict: {message}"], code=code) from cause
            if code == 403:
                where = f"in namespace {namespace}" if namespace else "cluster-wide"
                raise ForbiddenError(
                    [
                        f"{what}: forbidden: RBAC must allow verb {verb!r} on resource {resource!r} in API group "
                        f"{group or 'core'!r} {where}. Server said: {message}"
                    ],
                    code=code,
                ) from cause
            if code >= 500 or code in {0, 429}:
                raise UnavailableError([f"{what}: API server error {code}: {message}"], code=code) from cause
            raise ApiError([f"{what}: HTTP {code}: {message}"], code=code) from cause
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if self._on_error:
                self._on_error(0)
            raise UnavailableError(
                [f"{what}: no answer from the API server: {type(exc).__name__}: {str(exc)[:MAX_BODY]}"]
            ) from exc

    # -- discovery ------------------------------------------------------------------------------------

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
