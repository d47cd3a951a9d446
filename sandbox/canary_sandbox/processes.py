"""Real servers of the sandbox as child processes on free loopback ports: Prometheus and Alertmanager.

Each one gets a generated config and its own work directory, is started with its binary (Debian's
``prometheus`` and ``prometheus-alertmanager``), and counts as started once ``/-/ready`` answers 200. A port
taken between choosing and binding it (another process was quicker) means another try on a new port.
:class:`SandboxError` names the component and says why it could not start (binary missing, exited, not
ready in time), with the tail of its log.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import yaml

INSTALL_HINT = {
    "prometheus": "apt-get install prometheus (or `make deps` as root)",
    "prometheus-alertmanager": "apt-get install prometheus-alertmanager (or `make deps` as root)",
}


class SandboxError(RuntimeError):
    """A sandbox component could not start; ``component`` names it."""

    def __init__(self, component: str, message: str) -> None:
        super().__init__(f"{component}: {message}")
        self.component = component


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a TCP listener could bind ``host:port`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(preferred: int | None = None, host: str = "127.0.0.1") -> int:
    """``preferred`` when it is free on ``host``, else a free port the kernel picks."""
    if preferred and port_is_free(preferred, host):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def find_binary(name: str) -> str:
    """The path of ``name`` on PATH; SandboxError naming the package to install otherwise."""
    path = shutil.which(name)
    if path is None:
        raise SandboxError(name, f"not installed: {INSTALL_HINT.get(name, 'install it')}")
    return path


def binary_version(binary: str) -> str:
    """The version a Prometheus-family binary prints (``prometheus, version 2.42.0`` -> ``2.42.0``)."""
    try:
        done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({type(exc).__name__})"
    match = re.search(r"version (\S+)", done.stdout + done.stderr)
    return match.group(1) if match else "unknown"


class ManagedServer:
    """One child process with an HTTP ``/-/ready`` endpoint on 127.0.0.1.

    Subclasses give ``component``, ``binary_name`` and the command line (``arguments``).

    Args:
        workdir: where the config, the log and the data go.
        binary: the executable (default: ``binary_name`` from PATH).
    """

    component = "server"
    binary_name = ""

    def __init__(self, workdir: Path, *, binary: str | None = None) -> None:
        self.workdir = workdir
        self.binary = binary or find_binary(self.binary_name)
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._http: httpx.Client | None = None

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """The server's combined stdout/stderr."""
        return self.workdir / f"{self.binary_name}.log"

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server log."""
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def arguments(self) -> Sequence[str]:
        """The command line after the binary (writes any config it needs)."""
        raise NotImplementedError

    def start(self, *, timeout: float = 30.0, attempts: int = 3) -> Self:
        """Start and wait until ready.

        Raises:
            SandboxError: not ready in time, or the process exited (the message has the log's tail).
        """
        for attempt in range(attempts):
            try:
                self._start_once(timeout)
                return self
            except SandboxError:
                self.stop()
                if attempt == attempts - 1 or "address already in use" not in self.log_tail():
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _start_once(self, timeout: float) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        arguments = list(self.arguments())
        with self.log_path.open("wb") as log:
            try:
                self._process = subprocess.Popen(
                    [self.binary, *arguments], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                )
            except OSError as exc:
                raise SandboxError(self.component, f"cannot run {self.binary}: {exc}") from None
        self._http = httpx.Client(base_url=self.url, timeout=5.0)
        deadline = time.monotonic() + timeout
        while not self._ready():
            if time.monotonic() > deadline:
                raise SandboxError(self.component, f"not ready after {timeout:g} s:\n{self.log_tail()}")
            time.sleep(0.05)

    def _ready(self) -> bool:
        assert self._process is not None
        assert self._http is not None
        if self._process.poll() is not None:
            raise SandboxError(self.component, f"exited with {self._process.returncode}:\n{self.log_tail()}")
        try:
            return self._http.get("/-/ready").status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        """Terminate (then kill) the process and close the HTTP client. Idempotent."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if self._http is not None:
            self._http.close()
            self._http = None

    def get(self, path: str, params: Any = None) -> httpx.Response:
        """``GET path`` on the server (``params``: a mapping or a list of pairs)."""
        if self._http is None:
            raise SandboxError(self.component, "not running")
        return self._http.get(path, params=params)

    def version(self) -> str:
        """The binary's version."""
        return binary_version(self.binary)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def prometheus_config(targets: dict[str, tuple[str, str]], *, interval: float = 1.0) -> dict[str, Any]:
    """A config scraping each job ``name -> (host:port, metrics path)`` every ``interval`` seconds."""
    every = f"{round(interval * 1000)}ms"
    return {
        "global": {"scrape_interval": every, "evaluation_interval": every},
        "scrape_configs": [
            {"job_name": job, "metrics_path": path, "static_configs": [{"targets": [address]}]}
            for job, (address, path) in targets.items()
        ],
    }


class PrometheusProcess(ManagedServer):
    """Debian's ``prometheus`` with a generated config and a temporary TSDB.

    Args:
        workdir: config, log and TSDB directory.
        config: the configuration (see :func:`prometheus_config`).
        data_dir: an existing TSDB directory (replayed history), else ``workdir/data``.
        retention: ``--storage.tsdb.retention.time``.
        binary: the executable (default: ``prometheus`` on PATH).
    """

    component = "prometheus"
    binary_name = "prometheus"

    def __init__(
        self,
        workdir: Path,
        config: dict[str, Any],
        *,
        data_dir: Path | None = None,
        retention: str = "1d",
        binary: str | None = None,
    ) -> None:
        super().__init__(workdir, binary=binary)
        self.config = config
        self.data_dir = data_dir
        self.retention = retention

    def arguments(self) -> Sequence[str]:
        """Config file, TSDB, listen address."""
        config_path = self.workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        return [
            f"--config.file={config_path}",
            f"--storage.tsdb.path={self.data_dir or self.workdir / 'data'}",
            f"--storage.tsdb.retention.time={self.retention}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]

    def api(self, path: str, **params: Any) -> Any:
        """``data`` of a successful ``/api/v1/<path>`` call (SandboxError otherwise)."""
        answer = self.get(f"/api/v1/{path}", params)
        body = answer.json()
        if answer.status_code != 200 or body.get("status") != "success":
            raise SandboxError(self.component, f"/api/v1/{path} {params}: HTTP {answer.status_code}: {body}")
        return body["data"]

    def scrapes(self, job: str) -> int:
        """Successful scrapes of ``job`` so far (``count_over_time(up[1h])``), 0 before the first."""
        result = self.api("query", query=f'sum(count_over_time(up{{job="{job}"}}[1h]))')["result"]
        return int(float(result[0]["value"][1])) if result else 0


def alertmanager_config() -> dict[str, Any]:
    """One ``null`` receiver; alerts dispatched at once and not re-notified for an hour."""
    return {
        "route": {
            "receiver": "null",
            "group_by": ["alertname", "policy", "namespace"],
            "group_wait": "0s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [{"name": "null"}],
    }


class AlertmanagerProcess(ManagedServer):
    """Debian's ``prometheus-alertmanager``: no clustering, temporary storage, :func:`alertmanager_config`."""

    component = "alertmanager"
    binary_name = "prometheus-alertmanager"

    def arguments(self) -> Sequence[str]:
        """Config file, storage, listen address, clustering off."""
        config_path = self.workdir / "alertmanager.yml"
        config_path.write_text(yaml.safe_dump(alertmanager_config(), sort_keys=False))
        return [
            f"--config.file={config_path}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ]

    def alerts(
        self,
        *matchers: str,
        active: bool = True,
        silenced: bool = True,
        inhibited: bool = True,
        unprocessed: bool = True,
    ) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts`` with ``filter`` matchers (``alertname="X"``) and the state flags."""
        params: list[tuple[str, str]] = [("filter", matcher) for matcher in matchers]
        params += [
            ("active", str(active).lower()),
            ("silenced", str(silenced).lower()),
            ("inhibited", str(inhibited).lower()),
            ("unprocessed", str(unprocessed).lower()),
        ]
        answer = self.get("/api/v2/alerts", params)
        if answer.status_code != 200:
            raise SandboxError(self.component, f"GET /api/v2/alerts: HTTP {answer.status_code}: {answer.text}")
        alerts: list[dict[str, Any]] = answer.json()
        return alerts

    def received(self, status: str) -> float:
        """``alertmanager_alerts_received_total{status=...}`` summed over API versions (firing or resolved)."""
        total = 0.0
        for line in self.get("/metrics").text.splitlines():
            if line.startswith("alertmanager_alerts_received_total{") and f'status="{status}"' in line:
                total += float(line.rsplit(" ", 1)[1])
        return total
