"""``KubeApiEmulator``: a Kubernetes API server in a background thread, for tests, demos and benchmarks.

Start one, point the official ``kubernetes`` client at :attr:`KubeApiEmulator.url` (or at the kubeconfig
it writes), and the client sees a cluster with the built-in kinds, the CRDs you loaded, the real server's
write semantics (``resourceVersion``, conflicts, validation, status subresource, watches with 410) and
whatever faults the test injects. Tests set objects up and inspect every write through the direct Python
API, which takes the same code paths as HTTP requests but skips fault injection.

Deliberately not emulated: controllers of any kind (Deployments never get replicas or status, no
garbage collection, no Events of its own), authentication and authorisation, persistence across restarts,
and anything listed in the docstrings of ``store``, ``schema``, ``server`` and ``resources``.
"""

from __future__ import annotations

import builtins
import copy
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import yaml

from canary_sandbox.kubeapi.faults import FaultInjector
from canary_sandbox.kubeapi.resources import ResourceType
from canary_sandbox.kubeapi.reviews import ReviewTable
from canary_sandbox.kubeapi.server import EmulatorHttpServer
from canary_sandbox.kubeapi.store import (
    DEFAULT_RECORD_LIMIT,
    DEFAULT_WATCH_HISTORY,
    ObjectStore,
    Request,
    WriteRecord,
    request_with,
)

if TYPE_CHECKING:
    from kubernetes.client import Configuration


_YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class UnknownKindError(LookupError):
    """An object's ``apiVersion``/``kind`` is not served (register its CRD first)."""


class KubeApiEmulator:
    """A Kubernetes API server emulator on a free loopback port.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`::

        with KubeApiEmulator(crds=[path_to_crd]) as api:
            api.load_yaml(path_to_objects, namespace="demo")
            client = kubernetes.client.ApiClient(api.client_configuration())

    Args:
        host: address to listen on (loopback by default).
        port: port to listen on; 0 picks a free one.
        crds: CRD manifests to register before serving: YAML file paths or dicts.
        objects: objects to load before serving: YAML file paths or dicts.
        namespace: namespace for loaded namespaced objects that name none.
        watch_history: how many events the watch history of each resource type keeps; a watch from
            an older ``resourceVersion`` gets ``410 Expired``.
        record_limit: how many write records :meth:`history` keeps.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        crds: Iterable[str | Path | Mapping[str, Any]] = (),
        objects: Iterable[str | Path | Mapping[str, Any]] = (),
        namespace: str = "default",
        watch_history: int = DEFAULT_WATCH_HISTORY,
        record_limit: int = DEFAULT_RECORD_LIMIT,
    ) -> None:
        self.store = ObjectStore(watch_history=watch_history, record_limit=record_limit)
        self.faults = FaultInjector(self.store)
        # TokenReview / SubjectAccessReview answers: empty, so every token is rejected until one is added.
        self.reviews = ReviewTable()
        self._host = host
        self._port = port
        self._server: EmulatorHttpServer | None = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        for source in (*crds, *objects):
            if isinstance(source, Mapping):
                self.put(source, namespace=namespace)
            else:
                self.load_yaml(source, namespace=namespace)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> KubeApiEmulator:
        """Start serving in a background thread; returns self."""
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        self._stopped.clear()
        self._server = EmulatorHttpServer((self._host, self._port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="kubeapi-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving: end watches, close every connection, join every thread. Idempotent."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopped.set()
        self.store.stop()
        server.shutdown()
        server.close_connections(timeout)
        server.server_close()
        thread.join(timeout)
        self._server = self._thread = None
        self.store.stopping = False

    def __enter__(self) -> KubeApiEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def wait_stopped(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking early at shutdown; True when the emulator is stopping."""
        return self._stopped.wait(seconds)

    @property
    def running(self) -> bool:
        """Whether the server is accepting connections."""
        return self._server is not None

    @property
    def port(self) -> int:
        """The port the server listens on."""
        if self._server is None:
            raise RuntimeError("the emulator is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self._host}:{self.port}"

    @property
    def open_connections(self) -> int:
        """How many client connections are open (watches and idle keep-alive connections included)."""
        return self._server.open_connections if self._server else 0

    def client_configuration(self) -> Configuration:
        """A new ``kubernetes.client.Configuration`` pointing at this emulator."""
        from kubernetes.client import Configuration  # noqa: PLC0415 - keeps the CLI quick to start

        configuration = Configuration(host=self.url)
        configuration.verify_ssl = False
        return configuration

    def write_kubeconfig(
        self, path: str | Path, *, context_name: str = "kubeapi-emulator", namespace: str = "default"
    ) -> Path:
        """Write a kubeconfig for ``kubernetes.config.load_kube_config`` (and kubectl); returns its path."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context_name, "cluster": {"server": self.url}}],
            "users": [{"name": context_name, "user": {}}],
            "contexts": [
                {
                    "name": context_name,
                    "context": {"cluster": context_name, "user": context_name, "namespace": namespace},
                }
            ],
            "current-context": context_name,
            "preferences": {},
        }
        target = Path(path)
        target.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        return target

    # ------------------------------------------------------------------ direct API (no HTTP, no faults)

    def resource(self, name: str) -> ResourceType:
        """The served resource type for a plural, kind, short name or ``plural.group``.

        Raises:
            KeyError: nothing matches.
        """
        return self.store.registry.resolve(name)

    def _locate(self, obj: Mapping[str, Any]) -> tuple[ResourceType, str]:
        api_version, kind = str(obj.get("apiVersion") or ""), str(obj.get("kind") or "")
        found = self.store.registry.for_api_version_kind(api_version, kind)
        if found is None:
            raise UnknownKindError(f"no resource serves {api_version} {kind}; register its CRD first")
        return found

    def _request(self, obj: Mapping[str, Any], namespace: str | None, verb: str) -> Request:
        rtype, version = self._locate(obj)
        metadata = obj.get("metadata") or {}
        ns = (metadata.get("namespace") or namespace or "default") if rtype.namespaced else None
        return Request(
            verb=verb,
            resource=rtype,
            version=version,
            namespace=ns,
            name=metadata.get("name"),
            body=copy.deepcopy(dict(obj)),
            source="python",
        )

    def create(self, obj: Mapping[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
        """Create an object as a POST would (its namespace is created if missing).

        Raises:
            ApiError: as the HTTP request would fail (409 ``AlreadyExists``, 422 ``Invalid``...).
            UnknownKindError: the kind is not served.
        """
        return self.store.create(self._request(obj, namespace, "POST")).body

    def put(self, obj: Mapping[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
        """Create or unconditionally replace an object, including its ``status``; returns the stored object.

        The namespace comes from the object, else ``namespace``, else ``default``, and is created if missing.
        CRDs are registered as they are put.

        Raises:
            ApiError: the object is invalid.
            UnknownKindError: the kind is not served.
        """
        request = self._request(obj, namespace, "PUT")
        rtype = request.resource
        with self.store.lock:
            existing = self.store.get_stored(rtype, request.namespace or "", str(request.name or ""))
            if existing is None or not request.name:
                body = copy.deepcopy(request.body)
                body.get("metadata", {}).pop("resourceVersion", None)
                result = self.store.create(request_with(request, verb="POST", body=body))
            else:
                body = copy.deepcopy(request.body)
                body.setdefault("metadata", {})["resourceVersion"] = existing["metadata"]["resourceVersion"]
                result = self.store.replace(request_with(request, body=body))
            if "status" in obj and rtype.has_status(request.version):
                stored = result.body
                body = {**stored, "status": copy.deepcopy(obj["status"])}
                name = stored["metadata"]["name"]
                result = self.store.replace(request_with(request, body=body, name=name, subresource="status"))
            return result.body

    def load(
        self, objects: Iterable[Mapping[str, Any]], *, namespace: str | None = None, skip_unknown: bool = False
    ) -> list[dict[str, Any]]:
        """:meth:`put` each object in order (CRDs first, if you list them first).

        Args:
            objects: the objects.
            namespace: namespace for namespaced objects that name none.
            skip_unknown: skip objects whose kind is not served instead of raising.
        """
        stored = []
        for obj in objects:
            if not obj:
                continue
            try:
                stored.append(self.put(obj, namespace=namespace))
            except UnknownKindError:
                if not skip_unknown:
                    raise
        return stored

    def load_yaml(
        self, path: str | Path, *, namespace: str | None = None, skip_unknown: bool = False
    ) -> list[dict[str, Any]]:
        """:meth:`load` every document of a YAML file (CRD manifests included)."""
        with open(path, encoding="utf-8") as stream:
            documents = [doc for doc in yaml.load_all(stream, Loader=_YAML_LOADER) if isinstance(doc, Mapping)]
        return self.load(documents, namespace=namespace, skip_unknown=skip_unknown)

    def register_crd(self, crd: Mapping[str, Any]) -> ResourceType:
        """Register (or update) a CustomResourceDefinition given as a dict; returns its resource type."""
        stored = self.put(crd)
        spec = stored["spec"]
        found = self.store.registry.get(spec["group"], spec["names"]["plural"])
        assert found is not None
        return found

    def get(self, resource: str, name: str, *, namespace: str | None = "default") -> dict[str, Any] | None:
        """A copy of an object in its storage version, or None.

        Args:
            resource: plural, kind, short name or ``plural.group``.
            name: object name.
            namespace: namespace (ignored for cluster-scoped resources).
        """
        rtype = self.resource(resource)
        stored = self.store.get_stored(rtype, namespace or "", name)
        return None if stored is None else self.store.present(stored, rtype, rtype.storage_version)

    def list(self, resource: str, *, namespace: str | None = None) -> list[dict[str, Any]]:
        """Copies of the objects of a resource, in one namespace or in all (None)."""
        rtype = self.resource(resource)
        request = Request("LIST", rtype, rtype.storage_version, namespace=namespace, source="python")
        return [
            self.store.present(item, rtype, rtype.storage_version)
            for item in self.store.list_collection(request).body["items"]
        ]

    def delete(self, resource: str, name: str, *, namespace: str | None = "default") -> bool:
        """Delete an object (honouring finalizers); False when it did not exist."""
        rtype = self.resource(resource)
        if self.store.get_stored(rtype, namespace or "", name) is None:
            return False
        self.store.delete(
            Request("DELETE", rtype, rtype.storage_version, namespace=namespace, name=name, source="python")
        )
        return True

    # ------------------------------------------------------------------ inspection

    def history(
        self,
        *,
        resource: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        verb: str | None = None,
        source: str | None = None,
        since: float | None = None,
    ) -> builtins.list[WriteRecord]:
        """Successful writes, oldest first, filtered by any of the arguments.

        Args:
            resource: plural, kind, short name or ``plural.group``.
            namespace: namespace of the written object.
            name: name of the written object.
            verb: ``POST``, ``PUT``, ``PATCH`` or ``DELETE``.
            source: ``http`` (requests) or ``python`` (direct API).
            since: only writes at or after this ``time.monotonic()`` value.
        """
        group_resource = self.resource(resource).group_resource if resource else None
        return [
            record
            for record in self.store.records()
            if (group_resource is None or record.resource == group_resource)
            and (namespace is None or record.namespace == namespace)
            and (name is None or record.name == name)
            and (verb is None or record.verb == verb.upper())
            and (source is None or record.source == source)
            and (since is None or record.time >= since)
        ]

    def clear_history(self) -> None:
        """Forget the write records."""
        self.store.clear_records()

    @property
    def resource_version(self) -> str:
        """The latest ``resourceVersion`` handed out."""
        return str(self.store.resource_version)

    def compact(self) -> str:
        """Compact the watch history now (as etcd does every few minutes); returns the compacted version.

        Any watch from an older ``resourceVersion`` then gets ``410 Expired``.
        """
        return str(self.store.compact())
