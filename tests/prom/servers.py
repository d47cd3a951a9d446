"""Real servers for the Prometheus tests, and the small HTTP servers around them.

- ``PrometheusServer``: Debian's ``prometheus`` binary on a free loopback port with a temp TSDB.
- ``DrivenExporter``: counters the tests set, exposed exactly as Envoy does. prometheus_client cannot do
  that: its text exposition names every counter's ``# HELP``/``# TYPE`` lines ``<name>_total`` (a ``Metric``
  of type counter called ``envoy_cluster_upstream_cx_connect_fail`` is announced as
  ``envoy_cluster_upstream_cx_connect_fail_total`` while its samples keep the bare name), ``CounterMetricFamily``
  renames the samples to ``..._total``, and ``Counter`` adds ``_created`` series and exposes a labelled child
  at 0 as soon as it is created (so a failure series could not be born at its first increment). Envoy writes
  ``# TYPE envoy_cluster_upstream_cx_connect_fail counter`` followed by samples of that very name, and
  ``istio_tcp_connections_opened_total`` the same way; this exporter renders that text itself.
- ``StaticFiles``: serves the real Istio scrape files unchanged, as ``text/plain; version=0.0.4``.
- ``RecordingProxy`` / ``CannedServer``: record the headers a client sends (forwarding to a real
  Prometheus, or answering canned Prometheus-shaped JSON, optionally slowly).
- Replayed history: ``openmetrics_text`` + ``create_blocks`` (``promtool tsdb create-blocks-from
  openmetrics``) fill a data directory that a second ``PrometheusServer`` then serves.

The HTTP servers are ``StubHttpServer``s (``tests/support/http_server.py``).
"""

from __future__ import annotations

import json
import math
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from canary_sandbox.processes import PrometheusProcess
from tests.support.http_server import StubHandler, StubHttpServer

T = TypeVar("T")
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
SCRAPE_INTERVAL = 1.0
STEP_MARGIN = 0.25
"""Seconds before the last scrape that a step start is placed at (the one before was ~1 s earlier), so that
scrape is the step's first sample: a window counts only increases between samples taken inside it."""


class WaitTimeout(AssertionError):
    """A condition polled for did not come true before its deadline."""


def wait_until(
    condition: Callable[[], T | None],
    *,
    timeout: float,
    message: str | Callable[[], str],
    interval: float = 0.05,
) -> T:
    """Poll ``condition`` until it returns something other than None (or False), then return that.

    Args:
        condition: called until it returns a truthy value or a value that is not None and not False.
        timeout: seconds before giving up.
        message: what was awaited (or a function building it, called once on timeout).
        interval: seconds between polls.

    Raises:
        WaitTimeout: the deadline passed.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result is not None and result is not False:
            return result
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise WaitTimeout(f"after {timeout:g}s: {text}")
        time.sleep(interval)


def format_value(value: float) -> str:
    """A sample value as Envoy writes it: integers without a decimal point."""
    if math.isfinite(value) and value == int(value):
        return str(int(value))
    return repr(value)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def series_text(name: str, labels: Mapping[str, str]) -> str:
    """``name{a="b",...}`` in exposition syntax."""
    if not labels:
        return name
    return name + "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items()) + "}"


# ---------------------------------------------------------------------------------------------- HTTP servers


class DrivenExporter(StubHttpServer):
    """Counters the tests set, exposed on ``/metrics`` in Envoy's text format.

    Each metric gets ``# TYPE <name> counter`` and samples of exactly that name (Envoy's
    ``envoy_cluster_upstream_cx_connect_fail`` has no ``_total``; Istio's ``istio_tcp_connections_opened_total``
    has it in both places). A series exists from the moment a value is set, never before: a failure series is
    born at its first increment, as in Envoy.
    """

    def __init__(self) -> None:
        self._values: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
        self._lock = threading.Lock()
        self._last_scrape: float | None = None
        self.scrapes = 0
        super().__init__()

    def set(self, name: str, labels: Mapping[str, str], value: float) -> None:
        """Set a series (creating it)."""
        with self._lock:
            self._values.setdefault(name, {})[tuple(labels.items())] = value

    def inc(self, name: str, labels: Mapping[str, str], amount: float = 1.0) -> None:
        """Add to a series (creating it at ``amount``)."""
        with self._lock:
            family = self._values.setdefault(name, {})
            key = tuple(labels.items())
            family[key] = family.get(key, 0.0) + amount

    def remove(self, name: str, labels: Mapping[str, str]) -> None:
        """Drop a series (it goes stale in Prometheus)."""
        with self._lock:
            self._values.get(name, {}).pop(tuple(labels.items()), None)

    def render(self) -> str:
        """The exposition text."""
        with self._lock:
            return self._render()

    def handle(self, request: StubHandler) -> None:
        """Serve ``/metrics``; scrapes by Prometheus are timed (see ``step_start``)."""
        if request.path.split("?")[0] != "/metrics":
            request.reply(404, b"not found\n", "text/plain")
            return
        with self._lock:
            body = self._render()
            if request.headers.get("User-Agent", "").startswith("Prometheus/"):
                self._last_scrape = time.time()
                self.scrapes += 1
        request.reply(200, body.encode(), TEXT_FORMAT)

    def _render(self) -> str:
        lines: list[str] = []
        for name, family in self._values.items():
            if family:
                lines.append(f"# TYPE {name} counter")
                lines.extend(f"{series_text(name, dict(key))} {format_value(value)}" for key, value in family.items())
        return "\n".join(lines) + "\n"

    def step_start(self) -> float:
        """A step start whose first sample holds the current values and no later ones.

        Call it once Prometheus shows the values to keep before the step (``PrometheusServer.wait_for_value``).
        Prometheus scrapes one target at a time and stamps each sample when the scrape starts: the returned
        instant lies just before the last scrape served (and after the one before it), so that scrape is
        the first sample inside a window starting there, and what the tests change next is counted from it.
        """
        with self._lock:
            if self._last_scrape is None:
                raise AssertionError("Prometheus has not scraped the exporter yet")
            return self._last_scrape - STEP_MARGIN


class StaticFiles(StubHttpServer):
    """Serves files unchanged at ``/<file name>`` as Prometheus text exposition."""

    def __init__(self, files: Iterable[Path]) -> None:
        self._files = {f"/{path.name}": path.read_bytes() for path in files}
        super().__init__()

    def handle(self, request: StubHandler) -> None:
        """Serve one file (404 for anything else)."""
        body = self._files.get(request.path.split("?")[0])
        if body is None:
            request.reply(404, b"not found\n", "text/plain")
        else:
            request.reply(200, body, TEXT_FORMAT)


@dataclass(frozen=True)
class Recorded:
    """One request as a server received it."""

    path: str
    headers: dict[str, str]


class _Recording(StubHttpServer):
    def __init__(self, *, tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[Recorded] = []
        self._record_lock = threading.Lock()
        super().__init__(tls=tls)

    def record(self, request: StubHandler) -> None:
        with self._record_lock:
            self.requests.append(Recorded(path=request.path, headers=dict(request.headers.items())))

    def header_values(self, name: str) -> list[str]:
        """Every value received for header ``name`` (case-insensitive), in order."""
        with self._record_lock:
            return [
                value for item in self.requests for key, value in item.headers.items() if key.lower() == name.lower()
            ]


class RecordingProxy(_Recording):
    """Forwards GET requests to ``upstream`` (a real Prometheus) and records their headers.

    Args:
        upstream: base URL to forward to.
        require: header name -> value that must be present, else 401 with a Prometheus-shaped error body.
        echo_header: put this header's received value into the error body (a badly behaved gateway), to
            check that clients never repeat it.
    """

    def __init__(
        self, upstream: str, *, require: Mapping[str, str] | None = None, echo_header: str | None = None
    ) -> None:
        self._upstream = httpx.Client(base_url=upstream, timeout=10.0)
        self._require = dict(require or {})
        self._echo = echo_header
        super().__init__()

    def handle(self, request: StubHandler) -> None:
        """Check, record and forward."""
        self.record(request)
        for name, value in self._require.items():
            if request.headers.get(name) != value:
                received = request.headers.get(self._echo, "") if self._echo else ""
                body = {
                    "status": "error",
                    "errorType": "unauthorized",
                    "error": f"missing or wrong {name} header (got {received!r})",
                }
                request.reply(401, _json(body), "application/json")
                return
        answer = self._upstream.get(request.path)
        request.reply(answer.status_code, answer.content, answer.headers.get("Content-Type", "application/json"))

    def close(self) -> None:
        """Stop serving and close the upstream client."""
        super().close()
        self._upstream.close()


class CannedServer(_Recording):
    """Answers every request with one Prometheus-shaped response, after an optional delay.

    Args:
        status: HTTP status.
        body: the JSON body.
        delay: seconds to wait before answering (cut short by ``close``).
        tls: serve HTTPS with this server context (see ``self_signed_tls``).
    """

    def __init__(
        self,
        *,
        status: int = 200,
        body: Mapping[str, Any] | None = None,
        delay: float = 0.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.status = status
        self.body = dict(body or {"status": "success", "data": {"resultType": "vector", "result": []}})
        self.delay = delay
        self._closing = threading.Event()
        super().__init__(tls=tls)

    def handle(self, request: StubHandler) -> None:
        """Record, wait, answer."""
        self.record(request)
        if self.delay and self._closing.wait(self.delay):
            return
        request.reply(self.status, _json(self.body), "application/json")

    def close(self) -> None:
        """Release waiting handlers, then stop."""
        self._closing.set()
        super().close()


def self_signed_tls(directory: Path) -> tuple[Path, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1 (made with the ``openssl`` CLI): its PEM file and a server context.

    The certificate is its own CA: a client trusts the server when given that PEM as its CA bundle.
    """
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "server.pem", directory / "server.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return cert, context


def _json(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body).encode()


# ------------------------------------------------------------------------------------------------ Prometheus


def prometheus_config(jobs: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """A Prometheus config scraping every second; ``jobs`` maps job name to ``{target, path, labels}``."""
    scrape_configs = [
        {
            "job_name": job,
            "metrics_path": spec.get("path", "/metrics"),
            "static_configs": [{"targets": [spec["target"]], "labels": dict(spec.get("labels", {}))}],
        }
        for job, spec in (jobs or {}).items()
    ]
    return {
        "global": {
            "scrape_interval": f"{SCRAPE_INTERVAL:g}s",
            "scrape_timeout": f"{SCRAPE_INTERVAL:g}s",
            "evaluation_interval": f"{SCRAPE_INTERVAL:g}s",
        },
        "scrape_configs": scrape_configs,
    }


class PrometheusServer(PrometheusProcess):
    """The sandbox's Prometheus process, with the queries and waits the tests need.

    Args:
        binary: path of the ``prometheus`` executable.
        workdir: where the config, the log and (unless ``data_dir`` is given) the TSDB go.
        config: the configuration (see ``prometheus_config``).
        data_dir: an existing TSDB directory (replayed history), else ``workdir/data``.
        retention: ``--storage.tsdb.retention.time``.
    """

    def __init__(
        self, *, binary: str, workdir: Path, config: dict[str, Any], data_dir: Path | None = None, retention: str = "1d"
    ) -> None:
        super().__init__(workdir, config, data_dir=data_dir, retention=retention, binary=binary)

    def api(self, path: str, **params: Any) -> Any:
        """``data`` of a successful ``/api/v1/<path>`` call.

        Raises:
            AssertionError: Prometheus answered with an error.
        """
        answer = self.get(f"/api/v1/{path}", params)
        body = answer.json()
        if answer.status_code != 200 or body.get("status") != "success":
            raise AssertionError(f"/api/v1/{path} {params}: HTTP {answer.status_code}: {body}")
        return body["data"]

    def series(self, query: str, *, at: float | None = None) -> list[dict[str, Any]]:
        """The result of an instant query (a vector), evaluated now or at ``at``."""
        params: dict[str, Any] = {"query": query}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.api("query", **params)
        assert data["resultType"] == "vector", f"{query}: {data['resultType']} result"
        result: list[dict[str, Any]] = data["result"]
        return result

    def value(self, query: str, *, at: float | None = None) -> float | None:
        """The single value of an instant query, None when it returns no series."""
        result = self.series(query, at=at)
        assert len(result) <= 1, f"{query}: {len(result)} series"
        return float(result[0]["value"][1]) if result else None

    def wait_for_value(self, query: str, expected: float | None, *, timeout: float = 10.0) -> None:
        """Poll (at now) until ``query`` returns ``expected`` (None: no series)."""
        last: list[float | None] = []

        def reached() -> bool:
            value = self.value(query)
            last[:] = [value]
            return value == expected

        wait_until(reached, timeout=timeout, message=lambda: f"{query} is {last} instead of {expected}")

    def wait_for_targets(self, *, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Wait until every configured target has been scraped successfully once; returns the targets.

        Raises:
            WaitTimeout: a target is down (with its scrape error) or not scraped in time.
        """
        jobs = {job["job_name"] for job in self.config.get("scrape_configs", [])}
        state: dict[str, Any] = {}

        def all_up() -> list[dict[str, Any]] | None:
            targets: list[dict[str, Any]] = self.api("targets", state="active")["activeTargets"]
            state["targets"] = targets
            for target in targets:
                if target["health"] == "down":
                    raise WaitTimeout(f"target {target['scrapeUrl']} is down: {target['lastError']}")
            up = {target["labels"]["job"] for target in targets if target["health"] == "up"}
            return targets if up >= jobs else None

        return wait_until(
            all_up, timeout=timeout, message=lambda: f"targets not all scraped: {state.get('targets')}", interval=0.1
        )


# ------------------------------------------------------------------------------------------ replayed history


@dataclass(frozen=True)
class Point:
    """One sample of replayed history."""

    name: str
    labels: Mapping[str, str]
    timestamp: float
    value: float


def history_start(*, hours_back: float = 2.0, now: float | None = None) -> float:
    """A start time in the recent past, on a whole minute, so replayed history is well within retention."""
    now = time.time() if now is None else now
    return math.floor((now - hours_back * 3600) / 60) * 60


def openmetrics_text(points: Iterable[Point]) -> str:
    """Timestamped OpenMetrics text ending in ``# EOF``, as ``promtool tsdb create-blocks-from`` reads it.

    Families are declared ``unknown`` so that names keep their exact form (OpenMetrics would require a
    ``counter`` family's samples to end in ``_total``, which Envoy's do not); the TSDB stores no type anyway.
    """
    families: dict[str, dict[tuple[tuple[str, str], ...], list[Point]]] = {}
    for point in points:
        families.setdefault(point.name, {}).setdefault(tuple(sorted(point.labels.items())), []).append(point)
    lines: list[str] = []
    for name, family in families.items():
        lines.append(f"# TYPE {name} unknown")
        for key, samples in family.items():
            for point in sorted(samples, key=lambda p: p.timestamp):
                lines.append(f"{series_text(name, dict(key))} {format_value(point.value)} {point.timestamp:.3f}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def create_blocks(promtool: str, points: Iterable[Point], workdir: Path) -> Path:
    """Write ``points`` as OpenMetrics and turn them into TSDB blocks; returns the data directory.

    Raises:
        AssertionError: promtool failed (its output is in the message).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    source = workdir / "history.om"
    source.write_text(openmetrics_text(points))
    data_dir = workdir / "data"
    done = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data_dir)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if done.returncode != 0:
        raise AssertionError(f"promtool create-blocks-from failed ({done.returncode}): {done.stdout}{done.stderr}")
    return data_dir
