"""The HTTP face of the emulator: kube-apiserver's URL layout, discovery, JSON bodies and watch streams.

Emulates the REST paths the official clients build: ``/api/v1/...`` and ``/apis/{group}/{version}/...``,
namespaced and cluster-wide collections, objects and their ``/status``; legacy discovery (``/api``,
``/apis``, ``/apis/{group}``, ``/apis/{group}/{version}``), ``/version`` and the health endpoints. Watches
are chunked ``application/json`` streams of one event per line, ended by ``timeoutSeconds``, by a dropped
client, by shutdown or by fault injection. ``/openapi/v2`` and ``/openapi/v3`` serve the CRDs' documents
(see ``openapi``). ``Warning`` headers carry pruning and deprecation warnings.
Each connection gets a thread (HTTP/1.1 keep-alive); shutdown closes every connection and joins every
thread.

Deliberately not emulated: TLS and authentication (plain HTTP on loopback; any credentials are ignored),
protobuf and YAML bodies, the deprecated ``/watch/`` path prefix, ``deletecollection``,
aggregated discovery, WebSocket and SPDY upgrades (``exec``, ``logs``, ``port-forward``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import select
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from canary_sandbox.kubeapi import openapi
from canary_sandbox.kubeapi.faults import FaultInjector, RequestInfo
from canary_sandbox.kubeapi.patch import JSON_PATCH, parse_json_patch
from canary_sandbox.kubeapi.resources import Registry, ResourceType
from canary_sandbox.kubeapi.reviews import REVIEW_PATHS, ReviewTable
from canary_sandbox.kubeapi.status import ApiError, bad_request, internal, method_not_allowed, path_not_found
from canary_sandbox.kubeapi.store import ObjectStore, Request, Result
from canary_sandbox.kubeapi.table import to_table, wants_table


class Served(Protocol):
    """What the HTTP face serves: a :class:`~canary_sandbox.kubeapi.emulator.KubeApiEmulator`.

    Named by what it uses, so that this module does not import the emulator, which imports it to start it.
    """

    @property
    def store(self) -> ObjectStore:
        """The objects, their watches and their write records."""

    @property
    def faults(self) -> FaultInjector:
        """The faults armed for the next matching requests."""

    def wait_stopped(self, seconds: float) -> bool:
        """Wait up to ``seconds``; True when the emulator stopped meanwhile."""

    @property
    def reviews(self) -> ReviewTable:
        """The TokenReview and SubjectAccessReview answers (``canary_sandbox.kubeapi.reviews``)."""


_LOG = logging.getLogger(__name__)
KUBERNETES_VERSION = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.0-kubeapi-emulator",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-08-13T00:00:00Z",
    "goVersion": "go1.22.5",
    "compiler": "gc",
    "platform": "linux/amd64",
}
_WATCH_POLL_SECONDS = 0.25


@dataclass
class Route:
    """A routed request: either a discovery document or a resource request to fill in."""

    info: RequestInfo
    document: Callable[[], Any] | None = None
    resource: ResourceType | None = None
    version: str = ""


def route(method: str, path: str, query: dict[str, str], registry: Registry) -> Route:
    """Map a method and URL path to a discovery document or to a resource, as kube-apiserver does.

    Raises:
        ApiError: 404 for unknown paths, 405 for verbs a path does not take.
    """
    parts = [unquote(p) for p in path.split("/") if p]
    plain = RequestInfo(verb=method, path=path)

    def document(make: Callable[[], Any]) -> Route:
        if method != "GET":
            raise method_not_allowed(method, "", path)
        return Route(plain, make)

    if not parts:
        return document(lambda: {"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/readyz", "/version"]})
    if len(parts) == 1 and parts[0] in ("healthz", "livez", "readyz"):
        return document(lambda: "ok")
    if parts == ["version"]:
        return document(lambda: dict(KUBERNETES_VERSION))
    if parts[0] == "api":
        if len(parts) == 1:
            return document(lambda: {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
        group, version, rest = "", parts[1], parts[2:]
    elif parts[0] == "apis":
        if len(parts) == 1:
            return document(registry.api_group_list)
        if len(parts) == 2:
            group_doc = registry.api_group(parts[1])
            if group_doc is None:
                raise path_not_found()
            return document(lambda: group_doc)
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise path_not_found()
    if not rest:
        resources = registry.api_resource_list(group, version)
        if resources is None:
            raise path_not_found()
        return document(lambda: resources)
    namespace: str | None = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        candidate = registry.lookup(group, version, rest[2])
        if candidate is not None and candidate.namespaced:
            namespace, rest = rest[1], rest[2:]
    resource = registry.lookup(group, version, rest[0])
    if resource is None or len(rest) > 3:
        raise path_not_found()
    name = rest[1] if len(rest) > 1 else None
    subresource = rest[2] if len(rest) > 2 else None
    if resource.namespaced and name is not None and namespace is None:
        raise path_not_found()
    verb = _verb(method, name, query)
    if verb == "POST" and resource.namespaced and namespace is None:
        raise method_not_allowed(method, resource.group, resource.plural)
    info = RequestInfo(verb, path, resource.group, resource.plural, namespace, name, subresource)
    return Route(info, resource=resource, version=version)


def _verb(method: str, name: str | None, query: dict[str, str]) -> str:
    if method == "GET":
        if name is not None:
            return "GET"
        return "WATCH" if query.get("watch", "").lower() in ("true", "1") else "LIST"
    if (method == "POST") == (name is None) and method in ("POST", "PUT", "PATCH", "DELETE"):
        return method
    raise method_not_allowed(method, "", "")


class EmulatorHttpServer(ThreadingHTTPServer):
    """A threading HTTP server that tracks its connections and threads, so that shutdown leaks neither."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], emulator: Served) -> None:
        super().__init__(address, KubeApiHandler)
        self.emulator = emulator
        self._tracked_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._connection_threads: set[threading.Thread] = set()

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve each connection in a tracked thread."""
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name=f"kubeapi-connection-{client_address[1]}",
            daemon=True,
        )
        with self._tracked_lock:
            self._connections.add(request)
            self._connection_threads.add(thread)
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            with self._tracked_lock:
                self._connections.discard(request)
                self._connection_threads.discard(threading.current_thread())

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log at debug level: a client hanging up is routine here."""
        _LOG.debug("error while serving %s", client_address, exc_info=True)

    def close_connections(self, timeout: float) -> None:
        """Shut every open connection down and wait for its thread."""
        with self._tracked_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        with self._tracked_lock:
            threads = list(self._connection_threads)
        for thread in threads:
            thread.join(timeout)

    @property
    def open_connections(self) -> int:
        """How many connections are being served now."""
        with self._tracked_lock:
            return len(self._connections)


class KubeApiHandler(BaseHTTPRequestHandler):
    """Serves one connection: routing, fault injection, the verbs, watch streams."""

    protocol_version = "HTTP/1.1"
    server_version = "kubeapi-emulator"
    # Headers and body leave in separate writes; with Nagle's algorithm each answer would wait for the
    # client's delayed ACK (40 ms on Linux).
    disable_nagle_algorithm = True
    server: EmulatorHttpServer

    def do_GET(self) -> None:
        """Serve GET, LIST and WATCH."""
        self._serve("GET")

    def do_POST(self) -> None:
        """Serve POST (create)."""
        self._serve("POST")

    def do_PUT(self) -> None:
        """Serve PUT (replace)."""
        self._serve("PUT")

    def do_PATCH(self) -> None:
        """Serve PATCH."""
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        """Serve DELETE."""
        self._serve("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        """Send access logs to ``logging`` at debug level instead of stderr."""
        _LOG.debug("%s - %s", self.address_string(), format % args)

    # ------------------------------------------------------------------ plumbing

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send_json(
        self, code: int, body: Any, warnings: list[str] | None = None, headers: dict[str, str] | None = None
    ) -> None:
        if isinstance(body, str):
            data, content_type = body.encode(), "text/plain; charset=utf-8"
        else:
            data, content_type = json.dumps(body, separators=(",", ":")).encode(), "application/json"
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        for text in warnings or []:
            self.send_header("Warning", _warning_value(text))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _serve(self, method: str) -> None:
        emulator = self.server.emulator
        try:
            raw = self._read_body()
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            if url.path == "/openapi" or url.path.startswith("/openapi/"):
                self._serve_openapi(method, url.path)
                return
            if method == "POST" and url.path.rstrip("/") in REVIEW_PATHS:
                self._send_json(201, emulator.reviews.answer(url.path.rstrip("/"), _parse_json(raw)))
                return
            routed = route(method, url.path, query, emulator.store.registry)
            fault = emulator.faults.take(routed.info)
            if fault is not None:
                if fault.delay_seconds and emulator.wait_stopped(fault.delay_seconds):
                    self._drop()
                    return
                if fault.drop_connection:
                    self._drop()
                    return
                error = fault.error(routed.info)
                if error is not None:
                    raise error
            if routed.document is not None:
                self._send_json(200, routed.document())
                return
            assert routed.resource is not None
            content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            request = Request(
                verb=routed.info.verb,
                resource=routed.resource,
                version=routed.version,
                namespace=routed.info.namespace,
                name=routed.info.name,
                subresource=routed.info.subresource,
                query=query,
                body=_parse_json(raw, keep_number_literals=method == "PATCH" and content_type == JSON_PATCH),
                content_type=content_type,
                user_agent=self.headers.get("User-Agent"),
            )
            table = wants_table(self.headers.get("Accept")) and request.subresource is None
            if request.verb == "WATCH":
                self._watch(request, table=table)
                return
            result = _dispatch(emulator, request)
            body = result.body
            if table and request.verb in ("GET", "LIST") and result.code == 200:
                body = _as_table(request, body)
            self._send_json(result.code, body, result.warnings)
        except ApiError as error:
            self._answer_error(error)
        except OSError:
            self.close_connection = True
        except Exception as exc:
            _LOG.exception("kubeapi emulator failed on %s %s", method, self.path)
            self._answer_error(internal(f"{type(exc).__name__}: {exc}"))

    def _serve_openapi(self, method: str, path: str) -> None:
        """``/openapi/v2`` (JSON or gnostic protobuf by ``Accept``) and the ``/openapi/v3`` documents."""
        if method != "GET":
            raise method_not_allowed(method, "", path)
        registry = self.server.emulator.store.registry
        parts = [p for p in path.split("/") if p]
        if parts == ["openapi", "v2"]:
            chosen = openapi.negotiate_v2(self.headers.get("Accept"))
            if chosen is None:
                self._send_bytes(406, b"", "text/plain; charset=utf-8")
                return
            document = openapi.v2_document(registry)
            text = json.dumps(document, separators=(",", ":")).encode()
            etag = '"' + hashlib.sha512(text).hexdigest().upper() + '"'
            data = openapi.v2_protobuf(document) if chosen == openapi.PROTOBUF_V2 else text
            self._send_bytes(200, data, chosen, {"Etag": etag})
            return
        if parts == ["openapi", "v3"]:
            self._send_json(200, openapi.v3_discovery(registry))
            return
        if len(parts) == 5 and parts[:3] == ["openapi", "v3", "apis"]:
            group_version = openapi.v3_document(registry, parts[3], parts[4])
            if group_version is not None:
                self._send_json(200, group_version)
                return
        raise path_not_found()

    def _send_bytes(self, code: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Vary", "Accept")
        self.end_headers()
        self.wfile.write(data)

    def _answer_error(self, error: ApiError) -> None:
        try:
            self._send_json(error.code, error.to_status(), headers=error.headers)
        except OSError:
            self.close_connection = True

    # ------------------------------------------------------------------ watch

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _write_events(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            self._write_chunk(json.dumps(event, separators=(",", ":")).encode() + b"\n")

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _watch(self, request: Request, *, table: bool = False) -> None:
        opened = self.server.emulator.store.open_watch(request)
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        for text in self.server.emulator.store.warnings_for(request):
            self.send_header("Warning", _warning_value(text))
        self.end_headers()
        if isinstance(opened, ApiError):
            self._write_events([{"type": "ERROR", "object": opened.to_status()}])
            self._write_chunk(b"")
            return
        self._write_events(_table_events(request, opened.initial) if table else opened.initial)
        while True:
            events = opened.next_events(_WATCH_POLL_SECONDS)
            if events is None:
                break
            if events:
                self._write_events(_table_events(request, events) if table else events)
            elif self._client_gone():
                return
        if opened.end_reason == "dropped":
            self._drop()
            return
        self._write_chunk(b"")


def _as_table(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    columns = request.resource.printer_columns.get(request.version)
    return to_table(
        body,
        columns,
        include_object=request.query.get("includeObject") or "Metadata",
        no_headers=request.query.get("noHeaders", "").lower() in ("true", "1"),
    )


def _table_events(request: Request, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Watch events with each object turned into a one-row Table (bookmarks and errors left as they are)."""
    return [
        {**event, "object": _as_table(request, event["object"])}
        if event.get("type") in ("ADDED", "MODIFIED", "DELETED")
        else event
        for event in events
    ]


def _warning_value(text: str) -> str:
    """A ``Warning`` header value as the API server writes it: code 299, no agent, quoted text."""
    return '299 - "' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _parse_json(raw: bytes, *, keep_number_literals: bool = False) -> Any:
    if not raw.strip():
        return None
    try:
        return parse_json_patch(raw) if keep_number_literals else json.loads(raw)
    except ValueError as exc:
        raise bad_request(f"couldn't get version/kind; json parse error: {exc}") from exc


def _dispatch(emulator: Served, request: Request) -> Result:
    store = emulator.store
    if request.verb == "GET":
        return store.get(request)
    if request.verb == "LIST":
        return store.list_collection(request)
    if request.verb == "POST":
        return store.create(request)
    if request.verb == "PUT":
        return store.replace(request)
    if request.verb == "PATCH":
        return store.patch(request)
    return store.delete(request)
