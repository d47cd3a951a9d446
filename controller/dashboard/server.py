"""The dashboard's HTTP server: the page, its assets and the JSON API of docs/dashboard.md.

The standard library's ``ThreadingHTTPServer``, one thread per request (the live-update stream keeps its
thread while the page is open). It binds 127.0.0.1 by default. Every answer of the API is JSON, errors
``{"error": "..."}`` with a proper status, never a traceback. Writes (``POST .../ACTION``) need the header
``X-Canary-Dashboard: 1``, which a cross-site form cannot send, and ``{"confirm": true}``; in cluster mode
they are refused (405, read-only).
"""

from __future__ import annotations

import json
import logging
import mimetypes
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from controller import __version__
from controller.dashboard.auth import AuthProblem, Gate, LocalGate, Viewer
from controller.dashboard.data import DashboardData, DashboardError
from controller.errors import ApiError, CanaryError, ForbiddenError, KubeconfigError, NotFoundError

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent / "assets"
ACTIONS = ("pause", "resume", "promote", "abort", "retry")
CSRF_HEADER = "X-Canary-Dashboard"
MAX_BODY = 4096
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".map": "application/json",
    ".txt": "text/plain; charset=utf-8",
}


@dataclass
class DashboardConfig:
    """How the dashboard runs.

    Attributes:
        mode: ``local`` (canaryctl dashboard: actions allowed) or ``cluster`` (the daemon: read-only).
        namespaces: the namespaces shown by default; None for every namespace.
        tick_seconds: how often the live-update stream reads the rollouts again.
        keepalive_seconds: how often an idle stream sends a comment, so proxies keep it open.
        actor: who the commands are recorded as (local mode), e.g. ``alice (dashboard)``.
        prometheus: the Prometheus URL given on the command line, shown in ``/api/config``.
        assets: the directory of the page's files.
    """

    mode: str = "local"
    namespaces: list[str] | None = None
    tick_seconds: float = 2.0
    keepalive_seconds: float = 15.0
    actor: str | None = None
    prometheus: str | None = None
    assets: Path = field(default_factory=lambda: ASSETS)


class _Answer(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def _error(status: int, message: str) -> _Answer:
    return _Answer(status, {"error": message})


def _status_of(exc: CanaryError) -> int:
    if isinstance(exc, ForbiddenError):
        return 403
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, KubeconfigError):
        return 500
    if isinstance(exc, ApiError):
        return 503 if exc.code in (0, 429) or exc.code >= 500 else 502
    return 502


class DashboardServer(ThreadingHTTPServer):
    """Serves the dashboard on ``host:port`` (port 0: any free one) from a background thread.

    Args:
        data: where the rollouts are read and commands recorded.
        config: the mode and options.
        gate: who may see what (LocalGate in local mode, ReviewGate in the cluster).
        clock: the current time (tests pass a fixed one).
    """

    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        *,
        data: DashboardData,
        config: DashboardConfig,
        gate: Gate | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(address, DashboardHandler)
        self.data = data
        self.config = config
        self.gate: Gate = gate or LocalGate()
        self.clock = clock
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port listened on."""
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        """The page's URL."""
        host = str(self.server_address[0])
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}/"

    def start(self) -> DashboardServer:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self.serve_forever, name="dashboard-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: end the live streams, then wait for every request thread."""
        self.stopping.set()
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self.data.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away is not an error worth a traceback."""
        log.debug("dashboard: connection from %s ended with an error", client_address, exc_info=True)


class DashboardHandler(BaseHTTPRequestHandler):
    """One request."""

    server: DashboardServer
    server_version = "canary-dashboard"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Requests go to the debug log, never to stderr (the token is in a header, never logged)."""
        log.debug("dashboard: %s " + format, self.address_string(), *args)

    # -- plumbing -------------------------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, body: Any) -> None:
        self._send(status, json.dumps(body, ensure_ascii=False).encode(), "application/json; charset=utf-8")

    def _guarded(self, work: Callable[[], None]) -> None:
        try:
            work()
        except _Answer as answer:
            self._json(answer.status, answer.body)
        except AuthProblem as problem:
            headers = {"WWW-Authenticate": 'Bearer realm="canary-dashboard"'} if problem.status == 401 else {}
            self._send(
                problem.status,
                json.dumps({"error": problem.message}).encode(),
                "application/json; charset=utf-8",
                headers,
            )
        except DashboardError as exc:
            self._json(exc.status, {"error": exc.message})
        except CanaryError as exc:
            self._json(_status_of(exc), {"error": "; ".join(exc.problems) or type(exc).__name__})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:
            log.exception("dashboard: %s %s failed", self.command, urlsplit(self.path).path)
            self._json(500, {"error": f"internal error: {type(exc).__name__}"})

    def do_GET(self) -> None:
        """Pages, assets and the read API."""
        self._guarded(self._get)

    def do_HEAD(self) -> None:
        """As GET, without the body."""
        self._guarded(self._get)

    def do_POST(self) -> None:
        """Actions."""
        self._guarded(self._post)

    def _refuse_method(self) -> None:
        self._json(405, {"error": f"method {self.command} not allowed"})

    do_PUT = do_DELETE = do_PATCH = _refuse_method

    # -- routing ----------------------------------------------------------------------------------------------

    def _parts(self) -> tuple[list[str], dict[str, list[str]]]:
        url = urlsplit(self.path)
        parts = [unquote(part) for part in url.path.split("/") if part]
        return parts, parse_qs(url.query, keep_blank_values=True)

    def _viewer(self) -> Viewer | None:
        return self.server.gate.viewer(self.headers.get("Authorization"))

    def _check_namespace(self, viewer: Viewer | None, namespace: str) -> None:
        if self.server.config.mode == "cluster" and not self.server.gate.may_see(viewer, namespace):
            raise _error(
                403,
                f"forbidden: {viewer.username if viewer else 'anonymous'} may not get canarypolicies.canaryctl.dev "
                f"in namespace {namespace}",
            )

    def _get(self) -> None:
        parts, query = self._parts()
        if not parts:
            self._static("index.html")
            return
        if parts[0] == "assets":
            self._static("/".join(parts[1:]))
            return
        if parts[0] != "api":
            raise _error(404, f"no such page: /{'/'.join(parts)}")
        viewer = self._viewer()
        api = parts[1:]
        now = self.server.clock()
        data = self.server.data
        if api == ["config"]:
            self._json(200, self._config(viewer))
        elif api == ["rollouts"]:
            self._json(200, self._fleet(viewer, query, now))
        elif api == ["events"]:
            self._events(viewer, query)
        elif len(api) == 3 and api[0] == "rollouts":
            self._check_namespace(viewer, api[1])
            self._json(200, data.rollout(api[1], api[2], now=now))
        elif len(api) == 4 and api[0] == "rollouts" and api[3] == "series":
            self._check_namespace(viewer, api[1])
            check = (query.get("check") or [""])[-1]
            if not check:
                raise _error(400, "query parameter check: required (the check's name)")
            start = _time_param(query, "start")
            end = _time_param(query, "end")
            self._json(200, data.series(api[1], api[2], check=check, start=start, end=end, now=now))
        else:
            raise _error(404, f"no such API: /{'/'.join(parts)}")

    def _config(self, viewer: Viewer | None) -> dict[str, Any]:
        config = self.server.config
        return {
            "mode": config.mode,
            "actions": config.mode == "local",
            "namespaces": config.namespaces if config.namespaces is not None else "all",
            "prometheus": config.prometheus or self.server.data.prometheus_url,
            "version": __version__,
            "user": viewer.username if viewer is not None else None,
            "tickSeconds": config.tick_seconds,
        }

    def _namespaces(self, query: dict[str, list[str]]) -> list[str] | None:
        asked = [ns for value in query.get("namespace", []) for ns in value.split(",") if ns]
        if "all" in asked or query.get("all"):
            return None
        if asked:
            return asked
        return self.server.config.namespaces

    def _fleet(self, viewer: Viewer | None, query: dict[str, list[str]], now: datetime) -> dict[str, Any]:
        namespaces = self._namespaces(query)
        if self.server.config.mode == "cluster" and namespaces is not None:
            for namespace in namespaces:
                self._check_namespace(viewer, namespace)
        document = self.server.data.rollouts(namespaces, now=now)
        if self.server.config.mode == "cluster" and namespaces is None:
            allowed = {row["namespace"] for row in document["rollouts"]}
            allowed = {ns for ns in allowed if self.server.gate.may_see(viewer, ns)}
            rows = [row for row in document["rollouts"] if row["namespace"] in allowed]
            counts: dict[str, int] = {}
            for row in rows:
                counts[row["phase"] or "Unknown"] = counts.get(row["phase"] or "Unknown", 0) + 1
            document = {**document, "counts": counts, "rollouts": rows}
        return document

    def _events(self, viewer: Viewer | None, query: dict[str, list[str]]) -> None:
        """Server-sent events: ``rollouts`` with the fleet body whenever it changes; comments keep it open."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Accel-Buffering", "no")
        self.end_headers()
        self.close_connection = True
        config = self.server.config
        last: str | None = None
        quiet = 0.0
        while not self.server.stopping.is_set():
            try:
                document = self._fleet(viewer, query, self.server.clock())
                compared = json.dumps({k: v for k, v in document.items() if k != "generatedAt"}, sort_keys=True)
                if compared != last:
                    last = compared
                    payload = json.dumps(document, ensure_ascii=False)
                    self.wfile.write(f"event: rollouts\ndata: {payload}\n\n".encode())
                    quiet = 0.0
                elif quiet >= config.keepalive_seconds:
                    self.wfile.write(b": keep-alive\n\n")
                    quiet = 0.0
            except (_Answer, DashboardError, CanaryError, AuthProblem) as exc:
                message = getattr(exc, "message", None) or "; ".join(getattr(exc, "problems", []) or [str(exc)])
                self.wfile.write(f"event: error\ndata: {json.dumps({'error': message})}\n\n".encode())
            self.wfile.flush()
            if self.server.stopping.wait(config.tick_seconds):
                break
            quiet += config.tick_seconds

    def _static(self, relative: str) -> None:
        root = self.server.config.assets.resolve()
        if "\x00" in relative or "\\" in relative:
            raise _error(404, "no such asset")
        target = (root / relative).resolve()
        if not target.is_relative_to(root):
            raise _error(404, "no such asset")
        if not target.is_file():
            raise _error(404, f"no such asset: {relative}")
        content_type = _TYPES.get(target.suffix.lower()) or mimetypes.guess_type(target.name)[0]
        self._send(200, target.read_bytes(), content_type or "application/octet-stream")

    # -- actions ----------------------------------------------------------------------------------------------

    def _post(self) -> None:
        parts, _ = self._parts()
        if len(parts) != 5 or parts[:2] != ["api", "rollouts"]:
            raise _error(404 if parts[:1] == ["api"] else 405, f"no such action: /{'/'.join(parts)}")
        namespace, name, action = parts[2], parts[3], parts[4]
        viewer = self._viewer()
        if self.server.config.mode != "local":
            raise _error(405, "read-only")
        if self.headers.get(CSRF_HEADER) != "1":
            raise _error(403, f"header {CSRF_HEADER}: 1 is required on actions")
        if action not in ACTIONS:
            raise _error(400, f"unknown action {action!r}: one of {', '.join(ACTIONS)}")
        body = self._body()
        if not isinstance(body, dict) or body.get("confirm") is not True:
            raise _error(400, 'field confirm: must be true (the body is {"confirm": true})')
        self._check_namespace(viewer, namespace)
        self._json(200, self.server.data.act(namespace, name, action, by=self.server.config.actor))

    def _body(self) -> Any:
        length_text = self.headers.get("Content-Length") or "0"
        if not length_text.isdigit():
            raise _error(400, "header Content-Length: not a number")
        length = int(length_text)
        if length > MAX_BODY:
            raise _error(413, f"body: longer than {MAX_BODY} bytes")
        raw = self.rfile.read(length) if length else b""
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise _error(400, "body: not JSON") from None


def _time_param(query: dict[str, list[str]], name: str) -> datetime | None:
    values = query.get(name)
    if not values or not values[-1]:
        return None
    text = values[-1]
    try:
        if text.replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(text), UTC)
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        raise _error(400, f"query parameter {name}: not an ISO 8601 time or a Unix timestamp: {text!r}") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def serve(
    *,
    data: DashboardData,
    config: DashboardConfig,
    host: str = "127.0.0.1",
    port: int = 3100,
    gate: Gate | None = None,
) -> DashboardServer:
    """Start a dashboard server in the background and return it (``stop()`` ends it)."""
    return DashboardServer((host, port), data=data, config=config, gate=gate).start()
