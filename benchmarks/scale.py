"""Scale benchmark (issues 8 and 18): one controller process driving N concurrent rollouts.

``python -m benchmarks.scale --out DIR [--sizes 100,1000,10000] [--seconds 60]`` runs, for each N, from scratch:

* the Kubernetes API emulator as a process of its own (``benchmarks.scale_kubeapi``), holding N copies of
  Istio's tcp-echo VirtualService (``tcp-echo-all-v1.yaml``, one namespace each) and counting every request;
* a synthetic exporter (in this process) serving, per rollout, the client-side Istio TCP counters of the
  canary and of the stable workload (``istio_tcp_connections_opened_total`` and ``..._closed_total``, with
  the labels Istio's sidecar writes), growing steadily, no failed connects;
* one real Prometheus (Debian's binary, :class:`~canary_sandbox.processes.PrometheusProcess`) scraping it;
* the controller as ``python -m controller`` (``canaryctl run``), file mode: N policy files, each analysing
  with the built-in ``istio-tcp-connect-error-ratio`` template every 10 s, steps of an hour so every rollout
  stays at its first step; ``CANARY_TICK_SECONDS`` 5 (``N@T`` sets another) and ``CANARY_RESYNC_SECONDS`` 300.

Once every rollout is ``Progressing`` and one more analysis interval and two ticks have passed, it measures for a
steady window (at least three analysis intervals): the controller's CPU time and memory (``/proc``), its passes
(``canary_tick_duration_seconds``), its analyses (``canary_analysis_verdicts``), its lag and queue figures
(``canary_pass_lag_seconds``, ``canary_workqueue_*``, ``canary_cache_*``, when it exports them), the queries
Prometheus answered (its own ``prometheus_http_requests_total``), and every Kubernetes request and write (the
emulator's log). After the window it plays a person: it changes the weights of K VirtualServices by plain HTTP
(``kubectl``'s user agent) and records ``canaryctl pause`` on K other rollouts (the CLI's own functions,
in-process), and measures from the emulator's log how long the controller takes to record each in a status
write. It writes ``DIR/scale.json`` (every figure, the machine, the Prometheus version, the controller's
commit) and prints Markdown tables. Every process it starts is stopped on exit, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import itertools
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any, Self

import httpx
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.scale_kubeapi import namespace_of
from canary_sandbox.processes import PrometheusProcess, binary_version, find_binary, free_port, prometheus_config

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ISTIO_DATA = REPO.parent / "shared" / "data" / "istio"
CONTROLLER_NAMESPACE = "canary-system"
TICK_SECONDS = 5.0
RESYNC_SECONDS = 300.0
"""``CANARY_RESYNC_SECONDS`` passed to the controller (its default; a controller without resyncs ignores it)."""
ANALYSIS_INTERVAL_SECONDS = 10.0
MIN_INTERVALS_IN_WINDOW = 3
"""The steady window covers at least this many analysis intervals, whatever ``--seconds`` asks."""
REACTIONS = 20
"""K: route drifts, and separately pauses, whose reaction time is measured after the window."""
REACTION_SPACING_SECONDS = 0.45
"""Between two drifts (and two pauses, interleaved with them): not a divisor of the tick or the interval, so
the K edits land at K different points of a tick."""
DRIFT_WEIGHTS = (70, 30)
"""The stable and canary weights a person writes: a split the controller never writes (its steps are 20, 50, 100)."""
HUMAN_USER_AGENT = "kubectl/v1.20.2 (linux/amd64) kubernetes/1.20.2"
CONTROLLER_USER_AGENT = "canary-controller/"
"""How the controller's writes start their ``User-Agent`` (the daemon sets it; the CLI keeps the client's)."""
ROUTE_PATH = "/apis/networking.istio.io/v1/namespaces/{namespace}/virtualservices/tcp-echo"
SCRAPE_SECONDS = 5.0
CANARY_RATE = 75.0
"""Connections per second each canary opens. A window counts the increases between the samples scraped inside
it (docs/analysis.md), so a 10 s window at a 5 s scrape counts one scrape interval's 375: above
``minConnections`` (200), so every check passes as in a healthy mesh. The exporter renders its counters when
scraped, not at the scrape's timestamp, so on a saturated machine (10,000 rollouts) two samples 5 s apart can
hold 4 s of growth or less: at 50 a second, 11 % of the looks found fewer than 200 connections and were
inconclusive, which no healthy mesh shows; at 75, even 3 s of growth is 225."""
STABLE_RATE = 300.0
TEMPLATES = 1
"""Distinct metric templates across all policies (every policy has the same single check)."""
QUERIES_PER_CHECK = 4
"""Queries of one error-ratio check with a count test: errors and total, for canary and for stable."""
OPENED = "istio_tcp_connections_opened_total"
CLOSED = "istio_tcp_connections_closed_total"
QUERY_HANDLER = "/api/v1/query"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024

POLICY = """\
apiVersion: canaryctl.dev/v1alpha1
kind: CanaryPolicy
metadata:
  name: tcp-echo
  namespace: {namespace}
spec:
  target:
    virtualService:
      name: tcp-echo
    route:
      protocol: tcp
      port: 31400
    stable: {{host: tcp-echo, subset: v1, port: 9000}}
    canary: {{host: tcp-echo, subset: v2, port: 9000}}
  schedule:
    steps: [20, 50, 100]
    stepDuration: 1h
  analysis:
    interval: {interval}s
    selector:
      canaryWorkload: tcp-echo-v2
      stableWorkload: tcp-echo-v1
    metrics:
      - name: connect-errors
        template: istio-tcp-connect-error-ratio
        countTest: {{method: binomial, confidence: 0.99}}
        max: 0.01
        minConnections: 200
"""


# ---------------------------------------------------------------------------------------------- /proc


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def proc_status(pid: int) -> dict[str, str]:
    """``/proc/<pid>/status`` as a dict."""
    entries: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        entries[key] = value.strip()
    return entries


def kib_to_mib(value: str) -> float:
    """``123456 kB`` -> MiB."""
    return int(value.split(maxsplit=1)[0]) / 1024


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) CPU jiffies of the whole machine, from ``/proc/stat``."""
    parts = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    total = sum(parts[:8])
    return total - idle, total


def machine() -> dict[str, Any]:
    """Cores, memory, CPU model, kernel, Python, Prometheus."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{kib_to_mib(line.partition(':')[2]) / 1024:.1f} GiB"
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "memory": memory,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "prometheus": binary_version(find_binary("prometheus")),
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
    }


# ---------------------------------------------------------------------------------------------- exposition


PER_ROLLOUT_SERIES = ("canary_weight", "canary_step", "canary_phase", "canary_stalled", "canary_conflicting_writers")
"""The controller's series with one sample per rollout (eight for the phase): never read here, and at 10,000
rollouts parsing them would take longer than everything else."""


def samples(text: str, *, skip: Sequence[str] = ()) -> list[tuple[str, dict[str, str], float]]:
    """Every sample of a Prometheus text exposition (but those of the families in ``skip``)."""
    if skip:
        prefixes = tuple(f"{name}{{" for name in skip) + tuple(f"{name} " for name in skip)
        text = "\n".join(line for line in text.splitlines() if not line.startswith(prefixes))
    return [
        (sample.name, dict(sample.labels), float(sample.value))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def total(parsed: Iterable[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    return sum(
        value
        for sample, have, value in parsed
        if sample == name and all(have.get(key) == wanted for key, wanted in labels.items())
    )


def buckets(parsed: Iterable[tuple[str, dict[str, str], float]], name: str, **labels: str) -> dict[float, float]:
    """Cumulative histogram buckets ``le -> count`` of ``name`` (summed over other labels)."""
    found: dict[float, float] = defaultdict(float)
    for sample, have, value in parsed:
        if sample == f"{name}_bucket" and all(have.get(key) == wanted for key, wanted in labels.items()):
            found[float(have["le"])] += value
    return dict(found)


def quantile(q: float, before: dict[float, float], after: dict[float, float]) -> float | None:
    """``histogram_quantile`` over the increase of cumulative buckets (linear within a bucket)."""
    bounds = sorted(after)
    counts = [after[bound] - before.get(bound, 0.0) for bound in bounds]
    if not counts or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    lower, below = 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if math.isinf(bound):
                return lower  # in the +Inf bucket: the highest finite bound, as Prometheus answers
            return lower + (bound - lower) * ((rank - below) / (count - below) if count > below else 1.0)
        lower, below = bound, count
    return lower


def bucket_bound(q: float, before: dict[float, float], after: dict[float, float]) -> float | None:
    """The upper bound of the bucket holding the ``q``-quantile of the increase (for coarse buckets)."""
    bounds = sorted(after)
    counts = [after[bound] - before.get(bound, 0.0) for bound in bounds]
    if not counts or counts[-1] <= 0:
        return None
    return next(bound for bound, count in zip(bounds, counts, strict=True) if count >= q * counts[-1])


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# ---------------------------------------------------------------------------------------------- exporter


ISTIO_LABELS = {
    "reporter": "source",
    "source_workload": "tcp-echo-client",
    "source_workload_namespace": "{ns}",
    "source_principal": "spiffe://cluster.local/ns/{ns}/sa/default",
    "source_app": "tcp-echo-client",
    "source_version": "unknown",
    "destination_workload": "{workload}",
    "destination_workload_namespace": "{ns}",
    "destination_principal": "spiffe://cluster.local/ns/{ns}/sa/default",
    "destination_app": "tcp-echo",
    "destination_version": "{version}",
    "destination_service": "tcp-echo.{ns}.svc.cluster.local",
    "destination_service_name": "tcp-echo",
    "destination_service_namespace": "{ns}",
    "request_protocol": "tcp",
    "response_flags": "-",
    "connection_security_policy": "unknown",
    "source_canonical_service": "tcp-echo-client",
    "destination_canonical_service": "tcp-echo",
    "source_canonical_revision": "latest",
    "destination_canonical_revision": "{version}",
}
"""The labels of Istio's sidecar on ``istio_tcp_connections_opened_total`` (as in the shared ``.prom`` files)."""


class _ExporterServer(ThreadingHTTPServer):
    daemon_threads = True
    exporter: IstioExporter


class _ExporterHandler(BaseHTTPRequestHandler):
    server: _ExporterServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = self.server.exporter.render().encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        del format, args


class IstioExporter:
    """Client-side Istio TCP counters of ``count`` canaries and their stables, growing at fixed rates."""

    def __init__(self, count: int, *, canary_rate: float = CANARY_RATE, stable_rate: float = STABLE_RATE) -> None:
        self._series: list[tuple[str, str, float]] = []
        for index in range(count):
            namespace = namespace_of(index)
            for workload, version, rate in (("tcp-echo-v2", "v2", canary_rate), ("tcp-echo-v1", "v1", stable_rate)):
                labels = ",".join(
                    f'{key}="{value.format(ns=namespace, workload=workload, version=version)}"'
                    for key, value in ISTIO_LABELS.items()
                )
                self._series.append((f"{OPENED}{{{labels}}}", f"{CLOSED}{{{labels}}}", rate))
        self._start = time.time() - 3600  # counters that have been running for an hour
        self._server = _ExporterServer(("127.0.0.1", 0), _ExporterHandler)
        self._server.exporter = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="exporter", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``."""
        return f"127.0.0.1:{self._server.server_address[1]}"

    def render(self) -> str:
        """The exposition: every connection opened so far, closed once it has lasted a second."""
        elapsed = time.time() - self._start
        opened = [f"# TYPE {OPENED} counter"]
        closed = [f"# TYPE {CLOSED} counter"]
        for opened_series, closed_series, rate in self._series:
            opened.append(f"{opened_series} {int(rate * elapsed)}")
            closed.append(f"{closed_series} {int(rate * (elapsed - 1.0))}")
        return "\n".join(opened + closed) + "\n"

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------- child processes


def _stop_process(process: subprocess.Popen[bytes], *, grace: float) -> int | None:
    """SIGTERM, wait ``grace`` seconds, then SIGKILL; the exit code (None if it would not die)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
    return process.returncode


class KubeApiChild:
    """``benchmarks.scale_kubeapi`` as a child process, driven through its standard input and output."""

    def __init__(self, workdir: Path, *, count: int, istio: Path) -> None:
        self.kubeconfig = workdir / "kubeconfig"
        self.log_path = workdir / "kubeapi.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.scale_kubeapi",
                    "--crd",
                    str(istio / "virtualservice-crd.yaml"),
                    "--virtualservice",
                    str(istio / "tcp-echo-all-v1.yaml"),
                    "--count",
                    str(count),
                    "--controller-namespace",
                    CONTROLLER_NAMESPACE,
                    "--kubeconfig",
                    str(self.kubeconfig),
                ],
                cwd=REPO,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,  # Ctrl-C reaches this process only; it stops its children in order
            )
        self.url = self._line()

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def _line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode().strip()
        if not line:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the Kubernetes API emulator exited ({self.process.poll()}):\n{tail}")
        return line

    def command(self, text: str) -> dict[str, Any]:
        """Send one command, return its JSON answer."""
        assert self.process.stdin is not None
        self.process.stdin.write(text.encode() + b"\n")
        self.process.stdin.flush()
        answer: dict[str, Any] = json.loads(self._line())
        return answer

    def close(self) -> None:
        """Close its standard input (it exits), then make sure it has."""
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _stop_process(self.process, grace=5)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ControllerChild:
    """The controller daemon, ``python -m controller`` (``canaryctl run``), with its log in a file."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.port = int(env["CANARY_HTTP_PORT"])
        self.log_path = workdir / "controller.log"
        self._log: IO[bytes] = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "controller"],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            start_new_session=True,
        )
        self._http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30.0)
        self.exit_code: int | None = None

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def check_alive(self) -> None:
        """RuntimeError with the log's tail when the process has exited."""
        if self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the controller exited with {self.process.returncode}:\n{tail}")

    def metrics(self) -> str:
        """Its ``/metrics``."""
        answer = self._http.get("/metrics")
        answer.raise_for_status()
        return answer.text

    def wait_serving(self, timeout: float = 120.0) -> None:
        """Until ``/healthz`` answers (whatever it says)."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            with contextlib.suppress(httpx.TransportError):
                self._http.get("/healthz")
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the controller did not serve /healthz within {timeout:g} s")
            time.sleep(0.2)

    def close(self) -> None:
        """SIGTERM (it exits within 10 s by design), SIGKILL after 15 s."""
        self.exit_code = _stop_process(self.process, grace=15)
        self._http.close()
        self._log.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------- one size


@dataclass
class Snapshot:
    """Counters read at one instant."""

    at: float
    controller_cpu: float
    kube_cpu: float
    own_cpu: float
    machine: tuple[int, int]
    controller: list[tuple[str, dict[str, str], float]]
    prometheus: list[tuple[str, dict[str, str], float]]
    log_offset: int


def _snapshot(controller: ControllerChild, kube: KubeApiChild, prometheus: PrometheusProcess, *, end: bool) -> Snapshot:
    """Read every counter. The controller's /metrics is fetched outside the window (before its start, after its
    end), so rendering it is not charged to the measured CPU time."""

    def scrape() -> list[tuple[str, dict[str, str], float]]:
        return samples(controller.metrics(), skip=PER_ROLLOUT_SERIES)

    controller_metrics = scrape() if not end else []
    at = time.monotonic()
    controller_cpu = cpu_seconds(controller.pid)
    kube_cpu = cpu_seconds(kube.pid)
    own_cpu = cpu_seconds(os.getpid())
    jiffies = machine_jiffies()
    prometheus_metrics = samples(prometheus.get("/metrics").text)
    if end:
        controller_metrics = scrape()
    return Snapshot(
        at=at,
        controller_cpu=controller_cpu,
        kube_cpu=kube_cpu,
        own_cpu=own_cpu,
        machine=jiffies,
        controller=controller_metrics,
        prometheus=prometheus_metrics,
        log_offset=controller.log_path.stat().st_size,
    )


PROBED = ("canary_analysis_verdicts_total", "canary_tick_duration_seconds_count")
"""The counters :class:`CounterProbe` reads: analyses (every verdict) and passes."""
PROBE_SECONDS = 0.5


class CounterProbe:
    """Every ``PROBE_SECONDS``: the controller's analyses and passes so far (``/metrics?name[]=...``, which
    renders those two series only), so coverage can be measured whatever the window's phase
    (:func:`phase_averaged`). A controller that ignores the filter (it answers every series) is not probed
    again: rendering its per-rollout series twice a second would be charged to the CPU figure."""

    def __init__(self, controller: ControllerChild) -> None:
        self.controller = controller
        self._http = httpx.Client(base_url=f"http://127.0.0.1:{controller.port}", timeout=10.0)
        self.rows: list[tuple[float, tuple[float, ...]]] = []  # (monotonic, value of each PROBED counter)
        self.unsupported = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="probe", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            with contextlib.suppress(httpx.HTTPError, ValueError):
                answer = self._http.get("/metrics", params={"name[]": list(PROBED)})
                answer.raise_for_status()
                text = answer.text
                at = (started + time.monotonic()) / 2
                read = samples(text)
                if any(name not in PROBED for name, _, _ in read):
                    self.unsupported = True
                    return
                self.rows.append((at, tuple(sum(v for n, _, v in read if n == name) for name in PROBED)))
            self._stop.wait(max(0.0, PROBE_SECONDS - (time.monotonic() - started)))

    def close(self) -> None:
        """Stop probing."""
        self._stop.set()
        self._thread.join(15)
        self._http.close()


def phase_averaged(
    rows: Sequence[tuple[float, tuple[float, ...]]], start: float, end: float, period: float, index: int
) -> float | None:
    """How much counter ``index`` grows per ``period`` inside ``[start, end]``, averaged over every phase.

    A counter that grows in waves (at 100 rollouts every rollout passes in the same second, once an
    analysis interval) makes a plain difference over a window depend on where the window starts: a 60 s
    window holds five or six 10.1 s waves, 0.83 or 1.0 "per interval". Here the differences over every
    sub-window of length ``end - start - period`` starting in ``[start, start + period)`` (every
    ``PROBE_SECONDS / 2``) are averaged: over a whole period of phases each wave is counted its true
    fraction of the time. None when the window is shorter than two periods or the samples do not cover it.
    """
    length = end - start - period
    if length < period or not rows or rows[0][0] > start + PROBE_SECONDS or rows[-1][0] < end - PROBE_SECONDS:
        return None
    times = [row[0] for row in rows]

    def value(at: float) -> float:
        # The last sample at or before ``at`` (the first one before the samples start).
        position = max(0, bisect.bisect_right(times, at) - 1)
        return rows[position][1][index]

    step = PROBE_SECONDS / 2
    offsets = [start + k * step for k in range(math.ceil(period / step))]
    growth = [value(offset + length) - value(offset) for offset in offsets]
    return statistics.fmean(growth) / length * period


class ProcessTrace:
    """Once a second, from the controller's start: its CPU seconds and RSS, and the emulator's and Prometheus'
    CPU seconds (``/proc``, a thread of this process; reading ``/proc`` costs the controller nothing)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.rows: list[tuple[float, dict[str, float], float]] = []  # (monotonic, cpu seconds by name, RSS MiB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trace", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, ValueError, KeyError):
                at = time.monotonic()
                cpu = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
                rss = kib_to_mib(proc_status(self.pids["controller"])["VmRSS"])
                self.rows.append((at, cpu, rss))
            self._stop.wait(1.0)

    def cores(self, name: str, start: float, end: float) -> float | None:
        """Average cores of ``name`` between the samples nearest ``start`` and ``end``."""
        inside = [row for row in self.rows if start <= row[0] <= end]
        if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
            return None
        return (inside[-1][1][name] - inside[0][1][name]) / (inside[-1][0] - inside[0][0])

    def per_second(self, name: str, start: float, end: float) -> list[float]:
        """Cores of ``name`` in each interval between two samples inside ``[start, end]``."""
        inside = [row for row in self.rows if start <= row[0] <= end]
        return [
            (later[1][name] - earlier[1][name]) / (later[0] - earlier[0])
            for earlier, later in itertools.pairwise(inside)
            if later[0] > earlier[0]
        ]

    def rss(self, start: float, end: float) -> list[float]:
        """The controller's RSS samples (MiB) inside ``[start, end]``."""
        return [row[2] for row in self.rows if start <= row[0] <= end]

    def close(self) -> None:
        """Stop sampling."""
        self._stop.set()
        self._thread.join(5)


def _wait(condition_seconds: float, controller: ControllerChild) -> None:
    deadline = time.monotonic() + condition_seconds
    while time.monotonic() < deadline:
        controller.check_alive()
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def _per_tick(value: float, ticks: float) -> float:
    return round(value / ticks, 3) if ticks else 0.0


def _kube_figures(
    dumped: dict[str, Any],
    start: float,
    end: float,
    ticks: float,
    count: int,
    warmup_from: float,
    tick: float,
    passes: float,
) -> dict[str, Any]:
    """Requests, reads per pass, writes, and (for a controller that reads per pass) passes and tick wall times
    from the emulator's log."""
    window = end - start
    requests = [row for row in dumped["requests"] if start <= row[0] < end]
    by_verb = Counter(row[1] for row in requests)
    by_resource = Counter(f"{row[1]} {row[2]}{'/' + row[3] if row[3] else ''}" for row in requests)
    reads = by_verb.get("GET", 0) + by_verb.get("LIST", 0)

    # A controller that reads per pass reads its status ConfigMap, then its VirtualService, then (when the status
    # changed) writes the ConfigMap. The VirtualService read marks a pass; it began at the status read before it.
    # A controller reading from watch caches makes no such reads: then there is nothing to see here.
    last_status_read: dict[str, float] = {}
    pass_starts: list[tuple[float, str]] = []
    for at, verb, resource, _, namespace, name in sorted(dumped["requests"]):
        if verb != "GET":
            continue
        if resource == "configmaps" and namespace == CONTROLLER_NAMESPACE:
            last_status_read[name] = at
        elif resource == "virtualservices":
            began = last_status_read.get(f"canary-{namespace}-tcp-echo", at)
            pass_starts.append((began if at - began < tick else at, namespace))
    pass_starts.sort()
    in_window = [(at, name) for at, name in pass_starts if start <= at < end]
    per_policy: dict[str, list[float]] = defaultdict(list)
    for at, name in pass_starts:
        per_policy[name].append(at)
    gaps = [
        later - earlier
        for times in per_policy.values()
        for earlier, later in itertools.pairwise(times)
        if start <= later < end
    ]
    # A tick is a burst of passes; bursts are separated by idle time unless the passes never catch up.
    gap_threshold = min(1.0, tick / 5)
    clusters: list[list[float]] = []
    for at, _ in in_window:
        if clusters and at - clusters[-1][-1] <= gap_threshold:
            clusters[-1].append(at)
        else:
            clusters.append([at])
    request_times = sorted(row[0] for row in requests)
    spans: list[float] = []
    for index in range(1, len(clusters) - 1):  # the first and last bursts may be cut by the window
        cluster = clusters[index]
        following = clusters[index + 1][0]
        last = max((at for at in request_times if cluster[0] <= at < following), default=cluster[-1])
        spans.append(last - cluster[0])

    writes = [write for write in dumped["writes"] if start <= write["time"] < end]
    warmup_writes = [write for write in dumped["writes"] if warmup_from <= write["time"] < start]
    last_weight: dict[tuple[str, str], int | None] = {}
    weight_changes = 0
    other_writes = 0
    for write in sorted(dumped["writes"], key=lambda w: float(w["time"])):
        if write["resource"].startswith("virtualservices."):
            key = (write["namespace"], write["name"])
            changed = write["changed"] and write.get("weight") != last_weight.get(key)
            last_weight[key] = write.get("weight")
            if start <= write["time"] < end:
                weight_changes += int(bool(changed))
                other_writes += int(not changed)
        elif start <= write["time"] < end:
            other_writes += 1

    def write_kinds(chosen: list[dict[str, Any]]) -> dict[str, int]:
        return dict(
            Counter(
                f"{w['verb']} {w['resource']}{'/' + w['subresource'] if w['subresource'] else ''}"
                + ("" if w["changed"] else " (no change)")
                for w in chosen
            )
        )

    status_fields: Counter[str] = Counter(
        field
        for write in writes
        for field in write.get("status_fields_changed") or ["(no status field)"]
        if write["resource"] == "configmaps"
    )
    return {
        "requests": len(requests),
        "requests_per_second": round(len(requests) / window, 2),
        "requests_per_tick": _per_tick(len(requests), ticks),
        "requests_by_verb": dict(sorted(by_verb.items())),
        "requests_per_second_by_verb": {verb: round(n / window, 2) for verb, n in sorted(by_verb.items())},
        "requests_per_tick_by_verb": {verb: _per_tick(n, ticks) for verb, n in sorted(by_verb.items())},
        "requests_by_verb_and_resource": dict(sorted(by_resource.items())),
        # GET and LIST, not WATCH (a watch is counted once, when it opens), over the passes of the window.
        "reads": reads,
        "reads_per_pass": round(reads / passes, 3) if passes else None,
        "writes": len(writes),
        "writes_per_second": round(len(writes) / window, 2),
        "writes_per_tick": _per_tick(len(writes), ticks),
        "writes_by_kind": write_kinds(writes),
        "route_writes_changing_a_weight": weight_changes,
        "writes_without_a_weight_change": other_writes,
        "status_writes_by_field_changed": dict(status_fields.most_common()),
        "warmup_writes_by_kind": write_kinds(warmup_writes),
        "passes_seen": len(in_window),
        "passes_seen_per_tick": _per_tick(len(in_window), ticks),
        "rollouts_passed_in_window": len({name for _, name in in_window}),
        "repass_interval_seconds": {
            "p50": _round(percentile(gaps, 0.5)),
            "p99": _round(percentile(gaps, 0.99)),
            "max": _round(max(gaps, default=None)),
        },
        "tick_bursts": {
            "bursts": len(clusters),
            "passes_per_burst_median": statistics.median(len(c) for c in clusters) if clusters else None,
            "wall_seconds_p50": _round(percentile(spans, 0.5)),
            "wall_seconds_p99": _round(percentile(spans, 0.99)),
            "wall_seconds_max": _round(max(spans, default=None)),
            # Passes never catch up: a rollout waits well over a tick between its passes.
            "saturated": (percentile(gaps, 0.5) or 0.0) > 1.2 * tick,
        },
    }


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _log_summary(path: Path, start: int, end: int) -> dict[str, int]:
    """Log lines written in the window, by level and by message start."""
    with path.open("rb") as stream:
        stream.seek(start)
        chunk = stream.read(max(0, end - start)).decode(errors="replace")
    found: Counter[str] = Counter()
    for line in chunk.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            found["(not JSON)"] += 1
            continue
        found[f"{entry.get('level')}: {str(entry.get('message'))[:40]}"] += 1
    return dict(found.most_common(10))


def _present(parsed: list[tuple[str, dict[str, str], float]], name: str) -> bool:
    return any(sample == name or sample.startswith(f"{name}_") for sample, _, _ in parsed)


def _delta(before: Snapshot, after: Snapshot, name: str, **labels: str) -> float:
    return total(after.controller, name, **labels) - total(before.controller, name, **labels)


def _histogram(before: Snapshot, after: Snapshot, name: str, **labels: str) -> dict[str, Any]:
    """Count, p50 and p99 (from the buckets, linear within one) of a histogram's increase over the window;
    None for each when the controller does not export it. A quantile in the +Inf bucket is the highest finite
    bound (as Prometheus answers) and only a lower bound of the truth: ``p50_beyond_buckets`` and
    ``p99_beyond_buckets`` say so."""
    if not _present(after.controller, name):
        return {"exported": False, "count": None, "p50": None, "p99": None}
    pair = (buckets(before.controller, name, **labels), buckets(after.controller, name, **labels))
    return {
        "exported": True,
        "count": _delta(before, after, f"{name}_count", **labels),
        "p50": _round(quantile(0.5, *pair), 4),
        "p99": _round(quantile(0.99, *pair), 4),
        "p99_bucket_at_most": bucket_bound(0.99, *pair),
        "p50_beyond_buckets": math.isinf(bucket_bound(0.5, *pair) or 0.0),
        "p99_beyond_buckets": math.isinf(bucket_bound(0.99, *pair) or 0.0),
    }


def _queue_and_cache(before: Snapshot, after: Snapshot) -> dict[str, Any]:
    """The work queue's and the watch caches' figures, when exported (None otherwise)."""
    reasons = sorted(
        {
            labels["reason"]
            for name, labels, _ in after.controller
            if name == "canary_workqueue_queue_seconds_count" and "reason" in labels
        }
    )
    cache_objects = {
        labels.get("resource", ""): value for name, labels, value in after.controller if name == "canary_cache_objects"
    }
    events: dict[str, float] = {}
    for name, labels, value in after.controller:
        if name == "canary_cache_events_total":
            key = f"{labels.get('resource')} {labels.get('type')}"
            events[key] = value - total(before.controller, name, **labels)
    lists = {
        labels.get("resource", ""): value - total(before.controller, name, **labels)
        for name, labels, value in after.controller
        if name == "canary_cache_lists_total"
    }
    depth = [total(s.controller, "canary_workqueue_depth") for s in (before, after)]
    return {
        "workqueue_depth_at_start_and_end": depth if _present(after.controller, "canary_workqueue_depth") else None,
        "queue_seconds": _histogram(before, after, "canary_workqueue_queue_seconds"),
        "queue_seconds_by_reason": {
            reason: _histogram(before, after, "canary_workqueue_queue_seconds", reason=reason) for reason in reasons
        },
        "cache_objects": cache_objects or None,
        "cache_objects_total": sum(cache_objects.values()) if cache_objects else None,
        "cache_events_in_window": events or None,
        "cache_lists_in_window": lists or None,
    }


def _reaction_targets(count: int, reactions: int) -> tuple[list[int], list[int]]:
    """Rollouts to drift and (others) to pause: spread evenly over the N, never the same one twice."""
    k = max(0, min(reactions, count // 2))
    drift = sorted({min(count - 1, int((index + 0.25) * count / k)) for index in range(k)}) if k else []
    taken = set(drift)
    pause: list[int] = []
    for index in range(k):
        candidate = int((index + 0.75) * count / k) % count
        while candidate in taken:
            candidate = (candidate + 1) % count
        taken.add(candidate)
        pause.append(candidate)
    return drift, sorted(pause)


def _drift_route(http: httpx.Client, namespace: str) -> str | None:
    """As a person with kubectl: set the route's weights to :data:`DRIFT_WEIGHTS`. None, or why not."""
    path = ROUTE_PATH.format(namespace=namespace)
    for _ in range(3):
        answer = http.get(path)
        if answer.status_code != 200:
            return f"GET {answer.status_code}"
        route = answer.json()
        entries = [entry for tcp in route["spec"].get("tcp") or [] for entry in tcp.get("route") or []]
        subsets = {(entry.get("destination") or {}).get("subset"): entry for entry in entries}
        if "v1" not in subsets or "v2" not in subsets:
            return f"no canary route yet: {sorted(str(key) for key in subsets)}"
        subsets["v1"]["weight"], subsets["v2"]["weight"] = DRIFT_WEIGHTS
        written = http.put(path, json=route)
        if written.status_code == 200:
            return None
        if written.status_code != 409:  # a conflict: the controller wrote in between; read again
            return f"PUT {written.status_code}"
    return "PUT kept conflicting"


def _make_reactions(
    kube: KubeApiChild, controller: ControllerChild, *, drift: list[int], pause: list[int], timeout: float
) -> dict[str, Any]:
    """Drift the routes of ``drift`` and pause ``pause`` (interleaved, :data:`REACTION_SPACING_SECONDS` apart),
    then wait until every one of them is Paused (at most ``timeout``). Times come from the emulator's log later."""
    # The CLI's own functions (canaryctl pause), in this process, with the emulator's kubeconfig; imported here
    # so that a run with PYTHONPATH at another checkout uses that checkout's CLI.
    from controller.adapters.kubernetes.control import close_kube_api, record_command  # noqa: PLC0415
    from controller.core.status import CommandKind  # noqa: PLC0415
    from controller.runtime.composition import open_kube_api  # noqa: PLC0415

    problems: dict[str, str] = {}
    schedule = sorted(
        [(index * REACTION_SPACING_SECONDS, "drift", rollout) for index, rollout in enumerate(drift)]
        + [((index + 0.5) * REACTION_SPACING_SECONDS, "pause", rollout) for index, rollout in enumerate(pause)]
    )
    api = open_kube_api(kubeconfig=str(kube.kubeconfig))
    started = time.monotonic()
    try:
        with httpx.Client(base_url=kube.url, headers={"User-Agent": HUMAN_USER_AGENT}, timeout=30.0) as http:
            for offset, kind, rollout in schedule:
                time.sleep(max(0.0, started + offset - time.monotonic()))
                namespace = namespace_of(rollout)
                if kind == "drift":
                    problem = _drift_route(http, namespace)
                    if problem is not None:
                        problems[f"drift {namespace}"] = problem
                    continue
                try:
                    record_command(
                        api,
                        namespace=namespace,
                        name="tcp-echo",
                        kind=CommandKind.PAUSE,
                        by="scale-benchmark",
                        controller_namespace=CONTROLLER_NAMESPACE,
                    )
                except Exception as exc:  # recorded as the figure's problem; the run goes on
                    problems[f"pause {namespace}"] = f"{type(exc).__name__}: {exc}"[:300]
    finally:
        close_kube_api(api)
    issued = time.monotonic()
    wanted = {
        "drift": ",".join(namespace_of(index) for index in drift),
        "pause": ",".join(namespace_of(index) for index in pause),
    }
    states: dict[str, dict[str, int]] = {}
    while True:
        controller.check_alive()
        states = {kind: kube.command(f"paused {names}") if names else {} for kind, names in wanted.items()}
        done = states["drift"].get("Paused/drift", 0) == len(drift) and states["pause"].get("Paused/manual", 0) == len(
            pause
        )
        if done or time.monotonic() > issued + timeout:
            break
        time.sleep(1.0)
    return {
        "started": started,
        "issued_in_seconds": round(issued - started, 2),
        "waited_seconds": round(time.monotonic() - issued, 1),
        "wait_limit_seconds": round(timeout, 1),
        "states_at_end": states,
        "problems": problems,
    }


def _reaction_times(
    writes: list[dict[str, Any]], *, targets: list[int], started: float, human_resource: str, noticed: Any
) -> dict[str, Any]:
    """For each target: t0 = the emulator committing the person's write (``human_resource``: the route, or the
    status ConfigMap for a command), t1 = the controller's first status ConfigMap write after it whose status
    ``noticed(write)`` accepts. p50/p99/max over the targets that reacted."""
    latencies: dict[str, float] = {}
    missing: dict[str, str] = {}
    for rollout in targets:
        namespace = namespace_of(rollout)
        configmap = f"canary-{namespace}-tcp-echo"
        by_person = [
            w
            for w in writes
            if w["time"] >= started
            and w["changed"]
            and not str(w.get("user_agent") or "").startswith(CONTROLLER_USER_AGENT)
            and (
                (
                    human_resource == "route"
                    and w["resource"].startswith("virtualservices.")
                    and w["namespace"] == namespace
                )
                or (human_resource == "status" and w["resource"] == "configmaps" and w["name"] == configmap)
            )
        ]
        if not by_person:
            missing[namespace] = "the person's write is not in the emulator's log"
            continue
        t0 = float(by_person[0]["time"])
        by_controller = [
            w
            for w in writes
            if w["time"] > t0
            and w["resource"] == "configmaps"
            and w["name"] == configmap
            and str(w.get("user_agent") or "").startswith(CONTROLLER_USER_AGENT)
        ]
        reacting = next((w for w in by_controller if noticed(w)), None)
        if reacting is None:
            first = by_controller[0] if by_controller else None
            missing[namespace] = (
                "no controller status write after it"
                if first is None
                else f"no status write recording it (first after it: phase {first.get('phase')}, "
                f"pausedReason {first.get('paused_reason')})"
            )
            continue
        latencies[namespace] = float(reacting["time"]) - t0
    values = list(latencies.values())
    return {
        "k": len(targets),
        "reacted": len(values),
        "seconds_p50": _round(percentile(values, 0.5)),
        "seconds_p99": _round(percentile(values, 0.99)),
        "seconds_max": _round(max(values, default=None)),
        "seconds_mean": _round(statistics.fmean(values) if values else None),
        "p99_is_the_max": len(values) < 100,
        "seconds_by_rollout": {key: round(value, 3) for key, value in sorted(latencies.items())},
        "not_reacted": missing,
    }


def _drift_noticed(write: dict[str, Any]) -> bool:
    return bool(
        (write.get("phase") == "Paused" and write.get("paused_reason") == "drift") or write.get("stall") == "Drift"
    )


def _pause_noticed(write: dict[str, Any]) -> bool:
    return bool(write.get("phase") == "Paused")


def _resync_figures(
    trace: ProcessTrace,
    *,
    before: Snapshot,
    after: Snapshot,
    controller_started: float,
    resync_seconds: float,
    steady_cores: list[float],
) -> dict[str, Any]:
    """CANARY_RESYNC_SECONDS, resyncs in the window (when counted), and the CPU after each periodic resync the run
    lasted long enough to see (the controller schedules the first one ``resync_seconds`` after it starts)."""
    counted = _present(after.controller, "canary_resyncs_total")
    queued = _present(after.controller, "canary_workqueue_queue_seconds_count")
    bursts = []
    window_cores = (after.controller_cpu - before.controller_cpu) / (after.at - before.at)
    end = trace.rows[-1][0] if trace.rows else controller_started
    due = controller_started + resync_seconds
    while resync_seconds > 0 and due + 10 <= end:
        burst = trace.cores("controller", due - 1, due + 10)
        bursts.append(
            {
                "seconds_after_start": round(due - controller_started, 1),
                "in_window": before.at <= due < after.at,
                "controller_cpu_cores_10s_after": _round(burst),
                # Above the window's average, over those 11 s: what one resync cost (noisy: one sample).
                "cpu_seconds_above_the_window_average": _round(None if burst is None else (burst - window_cores) * 11),
                "controller_cpu_cores_peak_second": _round(
                    max(trace.per_second("controller", due - 1, due + 10), default=None)
                ),
            }
        )
        due += resync_seconds
    return {
        "resync_seconds": resync_seconds,
        "resyncs_in_window": _delta(before, after, "canary_resyncs_total") if counted else None,
        "resyncs_total_at_end": total(after.controller, "canary_resyncs_total") if counted else None,
        "passes_queued_by_resync_in_window": (
            _delta(before, after, "canary_workqueue_queue_seconds_count", reason="resync") if queued else None
        ),
        "steady_cpu_cores_per_second": {
            "p50": _round(percentile(steady_cores, 0.5)),
            "max": _round(max(steady_cores, default=None)),
        },
        "periodic_resyncs_seen_by_the_trace": bursts,
    }


def _controller_commit() -> dict[str, Any]:
    """The commit of the checkout the controller runs from, and whether its controller/ differs from it."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD") or None,
        "subject": git("log", "-1", "--format=%s")[:120] or None,
        "controller_changed_since": bool(git("status", "--porcelain", "--", "controller")),
    }


def run_size(
    count: int,
    *,
    seconds: float,
    out: Path,
    istio: Path,
    warmup_limit: float | None,
    workers: int = 8,
    tick: float = TICK_SECONDS,
    resync_seconds: float = RESYNC_SECONDS,
    reactions: int = REACTIONS,
) -> dict[str, Any]:
    """Set up N rollouts, wait until they all progress, measure a steady window, then the reactions to a person's
    route edits and pauses; every figure of one size."""
    label = "" if tick == TICK_SECONDS else f" (tick {tick:g} s)"
    workdir = out / (f"n{count}" if tick == TICK_SECONDS else f"n{count}-tick{tick:g}")
    workdir.mkdir(parents=True, exist_ok=True)
    say = _say(f"N={count}{label}")
    say("starting the emulator, the exporter and Prometheus")
    setup: dict[str, float] = {}
    setup_started = time.monotonic()
    # Large N: a longer wait for everything that grows with it (a pass round of a per-pass-reading controller at
    # 10,000 takes about a minute on 2 cores).
    limit = warmup_limit if warmup_limit is not None else 240.0 + 0.04 * count
    poll = max(2.0, count / 2500)
    with contextlib.ExitStack() as stack:
        kube = stack.enter_context(KubeApiChild(workdir, count=count, istio=istio))
        setup["emulator_loaded"] = time.monotonic() - setup_started
        exporter = stack.enter_context(IstioExporter(count))
        prometheus = stack.enter_context(
            PrometheusProcess(
                workdir / "prometheus",
                prometheus_config({"istio": (exporter.address, "/metrics")}, interval=SCRAPE_SECONDS),
            )
        )
        setup["prometheus_ready"] = time.monotonic() - setup_started
        scrape_limit = 60 + count / 100
        deadline = time.monotonic() + scrape_limit
        while True:
            scraped = prometheus.api("query", query=f"count({OPENED})")["result"]
            if scraped and int(float(scraped[0]["value"][1])) == 2 * count:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"Prometheus has not scraped the {2 * count} {OPENED} series in {scrape_limit:g} s")
            time.sleep(0.5)
        setup["first_full_scrape"] = time.monotonic() - setup_started
        policies = workdir / "policies"
        policies.mkdir(exist_ok=True)
        for index in range(count):
            namespace = namespace_of(index)
            text = POLICY.format(namespace=namespace, interval=int(ANALYSIS_INTERVAL_SECONDS))
            (policies / f"{namespace}.yaml").write_text(text)
        env = {key: value for key, value in os.environ.items() if not key.startswith("CANARY_")}
        env.update(
            {
                "KUBECONFIG": str(kube.kubeconfig),
                "CANARY_NAMESPACE": CONTROLLER_NAMESPACE,
                "CANARY_POLICY_DIR": str(policies),
                "CANARY_WATCH_CRDS": "false",
                "CANARY_TICK_SECONDS": f"{tick:g}",
                "CANARY_RESYNC_SECONDS": f"{resync_seconds:g}",
                "CANARY_PROMETHEUS_URL": prometheus.url,
                "CANARY_HTTP_HOST": "127.0.0.1",
                "CANARY_HTTP_PORT": str(free_port()),
                "CANARY_LOG_LEVEL": "INFO",
                "CANARY_WORKERS": str(workers),
            }
        )
        setup["policy_files_written"] = time.monotonic() - setup_started
        setup_seconds = time.monotonic() - setup_started
        say(f"starting the controller (setup took {setup_seconds:.1f} s)")
        controller = stack.enter_context(ControllerChild(workdir, env))
        controller_started = time.monotonic()
        pids = {"controller": controller.pid, "emulator": kube.pid}
        prometheus_process: subprocess.Popen[bytes] | None = getattr(prometheus, "_process", None)
        if prometheus_process is not None:
            pids["prometheus"] = prometheus_process.pid
        trace = ProcessTrace(pids)
        stack.callback(trace.close)
        controller.wait_serving()
        serving_at = time.monotonic()

        # Warm-up: every rollout at its first step, its weight confirmed and its step analysed once (a controller
        # reading per pass at 10,000 rollouts takes minutes to get there), then one more analysis interval and two
        # ticks. Until then the window would hold the warm-up's writes and Events.
        deadline = controller_started + limit
        phases: dict[str, int] = {}
        progressing_at: float | None = None
        analysed_at: float | None = None
        while time.monotonic() < deadline:
            controller.check_alive()
            phases = kube.command("phases")
            if progressing_at is None and phases.get("Progressing", 0) == count:
                progressing_at = time.monotonic()
            if phases.get("analysed", 0) == count:
                analysed_at = time.monotonic()
                break
            time.sleep(poll)
        if analysed_at is None:
            say(f"not every rollout progressing and analysed after {limit:g} s: {phases}")
        say(f"{phases}; settling")
        settle_started = time.monotonic()
        # A step's clock starts at the pass after its weight was written (up to a tick later), and its first
        # analysis interval is short: wait those out, or the window holds young steps' short windows.
        _wait(ANALYSIS_INTERVAL_SECONDS + 2 * tick, controller)

        probe = CounterProbe(controller)
        stack.callback(probe.close)
        time.sleep(2 * PROBE_SECONDS)
        say(f"measuring for {seconds:g} s")
        before = _snapshot(controller, kube, prometheus, end=False)
        while time.monotonic() < before.at + seconds:
            controller.check_alive()
            time.sleep(min(1.0, max(0.0, before.at + seconds - time.monotonic())))
        after = _snapshot(controller, kube, prometheus, end=True)
        time.sleep(2 * PROBE_SECONDS)
        probe.close()
        memory = proc_status(controller.pid)
        phases_after = kube.command("phases")
        verdicts_after = kube.command("verdicts")
        scrape = {
            figure: _first_value(prometheus.api("query", query=f'{figure}{{job="istio"}}')["result"])
            for figure in ("scrape_duration_seconds", "scrape_samples_scraped")
        }

        drift, pause = _reaction_targets(count, reactions)
        say(f"a person drifts {len(drift)} routes and pauses {len(pause)} other rollouts")
        made = _make_reactions(kube, controller, drift=drift, pause=pause, timeout=max(60.0, 12 * tick) + 0.03 * count)
        say(f"reactions: {made['states_at_end']} after {made['waited_seconds']:g} s")
        dump_path = workdir / "kubeapi-log.json"
        # Requests from two minutes before the window: enough to see each rollout's previous pass even when a
        # per-pass-reading controller takes over a minute to come round (10,000 rollouts).
        kube.command(f"dump {dump_path} {before.at - max(3 * tick, 120.0)}")
        dumped = json.loads(dump_path.read_text())
        trace.close()
    window = after.at - before.at
    ticks = window / tick
    intervals = window / ANALYSIS_INTERVAL_SECONDS
    cpu = after.controller_cpu - before.controller_cpu
    busy = (after.machine[0] - before.machine[0]) / max(1, after.machine[1] - before.machine[1])
    pass_buckets = (
        buckets(before.controller, "canary_tick_duration_seconds"),
        buckets(after.controller, "canary_tick_duration_seconds"),
    )
    passes = _delta(before, after, "canary_tick_duration_seconds_count")
    pass_sum = _delta(before, after, "canary_tick_duration_seconds_sum")
    verdicts = {
        labels["verdict"]: value - total(before.controller, name, **labels)
        for name, labels, value in after.controller
        if name == "canary_analysis_verdicts_total"
    }
    queries = total(after.prometheus, "prometheus_http_requests_total", handler=QUERY_HANDLER) - total(
        before.prometheus, "prometheus_http_requests_total", handler=QUERY_HANDLER
    )
    query_ok = total(after.prometheus, "prometheus_http_requests_total", handler=QUERY_HANDLER, code="200") - total(
        before.prometheus, "prometheus_http_requests_total", handler=QUERY_HANDLER, code="200"
    )
    query_buckets = (
        buckets(before.prometheus, "prometheus_http_request_duration_seconds", handler=QUERY_HANDLER),
        buckets(after.prometheus, "prometheus_http_request_duration_seconds", handler=QUERY_HANDLER),
    )
    evaluations = sum(verdicts.values())
    # Coverage whatever the window's phase (phase_averaged): per analysis interval, over every rollout.
    evaluations_averaged = phase_averaged(probe.rows, before.at, after.at, ANALYSIS_INTERVAL_SECONDS, 0)
    passes_averaged = phase_averaged(probe.rows, before.at, after.at, ANALYSIS_INTERVAL_SECONDS, 1)
    coverage_raw = round(evaluations / count / intervals, 3)
    coverage = coverage_raw if evaluations_averaged is None else round(evaluations_averaged / count, 3)
    api_errors = _delta(before, after, "canary_kubernetes_api_errors_total")
    prometheus_cpu = total(after.prometheus, "process_cpu_seconds_total") - total(
        before.prometheus, "process_cpu_seconds_total"
    )
    emulator_cpu = after.kube_cpu - before.kube_cpu
    own_cpu = after.own_cpu - before.own_cpu
    cores = os.cpu_count() or 1
    rss = trace.rss(before.at, after.at)
    steady_cores = trace.per_second("controller", before.at, after.at)
    queue_and_cache = _queue_and_cache(before, after)
    warmup_end = analysed_at if analysed_at is not None else settle_started
    result: dict[str, Any] = {
        "rollouts": count,
        "tick_seconds": tick,
        "analysis_interval_seconds": ANALYSIS_INTERVAL_SECONDS,
        "window_seconds": round(window, 2),
        "ticks_in_window": round(ticks, 2),
        "analysis_intervals_in_window": round(intervals, 2),
        "setup_seconds": round(setup_seconds, 1),
        "setup_seconds_by_stage": {stage: round(at, 1) for stage, at in setup.items()},
        "controller_serving_seconds": round(serving_at - controller_started, 1),
        "warmup_seconds_to_all_progressing": _round(
            None if progressing_at is None else progressing_at - controller_started, 1
        ),
        "warmup_seconds_to_all_analysed": _round(None if analysed_at is None else analysed_at - controller_started, 1),
        "settle_seconds": round(before.at - settle_started, 1),
        "warmup_limit_seconds": round(limit, 1),
        "warmup_cpu_cores_average": {name: _round(trace.cores(name, controller_started, warmup_end)) for name in pids},
        "phase_poll_seconds": poll,
        "phases_at_start": phases,
        "phases_at_end": phases_after,
        "controller": {
            "cpu_seconds": round(cpu, 2),
            "cpu_cores_average": round(cpu / window, 3),
            "cpu_cores_per_second_p50": _round(percentile(steady_cores, 0.5)),
            "cpu_cores_per_second_max": _round(max(steady_cores, default=None)),
            "cpu_seconds_per_tick": _per_tick(cpu, ticks),
            "cpu_ms_per_rollout_per_tick": round(1000 * cpu / ticks / count, 2),
            "cpu_ms_per_pass": round(1000 * cpu / passes, 2) if passes else None,
            "rss_mib_end": round(kib_to_mib(memory["VmRSS"]), 1),
            "rss_mib_max_sampled": round(max(rss, default=0.0), 1),
            "rss_mib_mean_sampled": round(statistics.fmean(rss), 1) if rss else None,
            "hwm_mib": round(kib_to_mib(memory["VmHWM"]), 1),
            "threads": int(memory["Threads"]),
            "cached_objects": queue_and_cache["cache_objects_total"],
            "kubernetes_api_errors": api_errors,
            "log_lines_in_window": _log_summary(controller.log_path, before.log_offset, after.log_offset),
            "exit_code": controller.exit_code,
        },
        "passes": {
            "count": passes,
            "per_second": round(passes / window, 2),
            "per_tick": _per_tick(passes, ticks),
            "per_rollout_per_analysis_interval": (
                round(passes / count / intervals, 3) if passes_averaged is None else round(passes_averaged / count, 3)
            ),
            "per_rollout_per_analysis_interval_in_window": round(passes / count / intervals, 3),
            "wanted_per_tick": count,
            "duration_seconds_p50": _round(quantile(0.5, *pass_buckets), 4),
            "duration_seconds_p99": _round(quantile(0.99, *pass_buckets), 4),
            "duration_seconds_mean": _round(pass_sum / passes if passes else None, 4),
        },
        "lag": {
            # How late a timer-driven pass started after it was due (None: the controller does not export it).
            "pass_lag_seconds": _histogram(before, after, "canary_pass_lag_seconds"),
            **queue_and_cache,
        },
        "analysis": {
            "evaluations": evaluations,
            "evaluations_per_tick": _per_tick(evaluations, ticks),
            # Phase-averaged (CounterProbe); "_in_window": the plain difference over the window, which
            # counts five or six waves in six intervals when every rollout passes in the same second.
            "evaluations_per_rollout_per_interval": coverage,
            "evaluations_per_rollout_per_interval_in_window": coverage_raw,
            "coverage_measured": "window difference" if evaluations_averaged is None else "phase-averaged",
            "verdicts": verdicts,
            "last_verdict_of_each_rollout_at_end": verdicts_after,
        },
        "prometheus": {
            "queries": queries,
            "queries_failed": queries - query_ok,
            "queries_per_tick": _per_tick(queries, ticks),
            "queries_per_analysis_interval": round(queries / intervals, 2),
            "queries_per_analysis_interval_per_template": round(queries / intervals / TEMPLATES, 2),
            "templates": TEMPLATES,
            "queries_per_rollout_per_analysis_interval": round(queries / count / intervals, 4),
            "queries_per_evaluation": round(queries / evaluations, 4) if evaluations else None,
            # Prometheus' own buckets are coarse (0.1, 0.2, 0.4, 1 s...): the bucket each quantile falls in.
            "query_seconds_p50_at_most": bucket_bound(0.5, *query_buckets),
            "query_seconds_p99_at_most": bucket_bound(0.99, *query_buckets),
            "prometheus_cpu_cores_average": round(prometheus_cpu / window, 3),
            "exporter_scrape_seconds_last": _round(scrape["scrape_duration_seconds"]),
            "exporter_samples_per_scrape": scrape["scrape_samples_scraped"],
        },
        "kubernetes": _kube_figures(dumped, before.at, after.at, ticks, count, controller_started, tick, passes),
        "reactions": {
            "made": {key: value for key, value in made.items() if key != "started"},
            "spacing_seconds": REACTION_SPACING_SECONDS,
            "drift": _reaction_times(
                dumped["writes"], targets=drift, started=made["started"], human_resource="route", noticed=_drift_noticed
            ),
            "pause": _reaction_times(
                dumped["writes"],
                targets=pause,
                started=made["started"],
                human_resource="status",
                noticed=_pause_noticed,
            ),
        },
        "resync": _resync_figures(
            trace,
            before=before,
            after=after,
            controller_started=controller_started,
            resync_seconds=resync_seconds,
            steady_cores=steady_cores,
        ),
        "emulator_cpu_cores_average": round(emulator_cpu / window, 3),
        "benchmark_process_cpu_cores_average": round(own_cpu / window, 3),
        "machine_cpu_busy_fraction": round(busy, 3),
        "other_processes_cpu_cores_average": round(
            max(0.0, busy * cores - (cpu + emulator_cpu + own_cpu + prometheus_cpu) / window), 3
        ),
    }
    repass = result["kubernetes"]["repass_interval_seconds"]["p50"]
    # A per-pass-reading controller that cannot keep up passes each rollout less often than the window: say so.
    result["window_covers_a_pass_round"] = None if repass is None else window >= repass
    return result


def _first_value(result: list[dict[str, Any]]) -> float | None:
    """The value of an instant query's first series (None for none)."""
    return float(result[0]["value"][1]) if result else None


def _say(prefix: str) -> Any:
    def say(text: str) -> None:
        print(f"{prefix}: {text}", file=sys.stderr, flush=True)

    return say


def memory_slopes(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Memory per cached object: between two consecutive sizes, the difference of the controller's mean RSS in
    the steady window over the difference of the objects its watch caches hold (``canary_cache_objects``, summed
    over resources, at the window's end), in KiB; also per rollout (for a controller without caches). Runs at the
    default tick only."""
    ordered = sorted(
        (r for r in results if r["controller"].get("rss_mib_mean_sampled") and _tick(r) == TICK_SECONDS),
        key=lambda r: r["rollouts"],
    )
    slopes = []
    for smaller, larger in itertools.pairwise(ordered):
        if larger["rollouts"] <= smaller["rollouts"]:
            continue
        rss = (larger["controller"]["rss_mib_mean_sampled"] - smaller["controller"]["rss_mib_mean_sampled"]) * 1024
        objects = (larger["controller"].get("cached_objects"), smaller["controller"].get("cached_objects"))
        per_object = (
            round(rss / (objects[0] - objects[1]), 2)
            if objects[0] is not None and objects[1] is not None and objects[0] > objects[1]
            else None
        )
        slopes.append(
            {
                "from_rollouts": smaller["rollouts"],
                "to_rollouts": larger["rollouts"],
                "rss_mib_mean": [
                    smaller["controller"]["rss_mib_mean_sampled"],
                    larger["controller"]["rss_mib_mean_sampled"],
                ],
                "cached_objects": [objects[1], objects[0]],
                "kib_per_cached_object": per_object,
                "kib_per_rollout": round(rss / (larger["rollouts"] - smaller["rollouts"]), 2),
            }
        )
    return slopes


# ---------------------------------------------------------------------------------------------- goals


def _tick(result: dict[str, Any]) -> float:
    return float(result.get("tick_seconds", TICK_SECONDS))


GOALS: dict[int, dict[str, float]] = {
    1000: {"cpu_cores": 0.15, "rss_mib": 250},
    10000: {"cpu_cores": 1.0, "rss_mib": 1024},
}
"""Issue 18's goals per size (both at the 10 s analysis interval)."""
REACTION_GOAL_SECONDS = 2.0
QUERIES_PER_INTERVAL_PER_TEMPLATE = 4


def _goal(measured: Any, met: bool | None, goal: str, today: Any = None) -> dict[str, Any]:
    return {"goal": goal, "measured": measured, "today": today, "met": met}


def _at_most(value: Any, bound: float) -> bool | None:
    return None if value is None else bool(value <= bound)


def goals(results: list[dict[str, Any]], before: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Issue 18's goals at 1,000 and 10,000 rollouts (the default tick), each met or not with the figure and,
    when ``before`` is given, the same figure before the issue's changes."""

    def pick(chosen: list[dict[str, Any]] | None, count: int) -> dict[str, Any] | None:
        return next((r for r in chosen or [] if r["rollouts"] == count and _tick(r) == TICK_SECONDS), None)

    judged: dict[str, Any] = {}
    for count, bounds in GOALS.items():
        now, then = pick(results, count), pick(before, count)
        if now is None:
            continue

        def both(
            path: tuple[str, ...], now: dict[str, Any] = now, then: dict[str, Any] | None = then
        ) -> tuple[Any, Any]:
            def get(result: dict[str, Any] | None) -> Any:
                value: Any = result
                for key in path:
                    value = None if not isinstance(value, dict) else value.get(key)
                return value

            return get(now), get(then)

        cpu, cpu_then = both(("controller", "cpu_cores_average"))
        rss, rss_then = both(("controller", "hwm_mib"))
        reads, reads_then = both(("kubernetes", "reads_per_pass"))
        coverage, coverage_then = both(("analysis", "evaluations_per_rollout_per_interval"))
        lag, lag_then = both(("lag", "pass_lag_seconds", "p99"))
        beyond, _ = both(("lag", "pass_lag_seconds", "p99_beyond_buckets"))
        queries, queries_then = both(("prometheus", "queries_per_analysis_interval_per_template"))
        drift, drift_then = both(("reactions", "drift", "seconds_p99"))
        pause, pause_then = both(("reactions", "pause", "seconds_p99"))
        interval = float(now.get("analysis_interval_seconds", ANALYSIS_INTERVAL_SECONDS))
        row = {
            "cpu_cores": _goal(cpu, _at_most(cpu, bounds["cpu_cores"]), f"<= {bounds['cpu_cores']:g} core", cpu_then),
            "rss_hwm_mib": _goal(rss, _at_most(rss, bounds["rss_mib"]), f"<= {bounds['rss_mib']:g} MiB", rss_then),
            "api_reads_per_pass": _goal(reads, None if reads is None else reads == 0, "0 in steady state", reads_then),
            "evaluations_per_rollout_per_interval": _goal(
                coverage,
                None if coverage is None else coverage >= 0.95,
                ">= 0.95 (one look per interval; each comes its timer's lag late)",
                coverage_then,
            ),
            "pass_lag_p99_seconds": _goal(
                f">= {lag:g}" if lag is not None and beyond else lag,
                _at_most(lag, interval),
                f"<= {interval:g} s (1 interval)",
                lag_then,
            ),
            "prometheus_queries_per_interval_per_template": _goal(
                queries,
                _at_most(queries, QUERIES_PER_INTERVAL_PER_TEMPLATE),
                f"<= {QUERIES_PER_INTERVAL_PER_TEMPLATE}",
                queries_then,
            ),
            "drift_reaction_p99_seconds": _goal(drift, _at_most(drift, REACTION_GOAL_SECONDS), "<= 2 s", drift_then),
            "pause_reaction_p99_seconds": _goal(pause, _at_most(pause, REACTION_GOAL_SECONDS), "<= 2 s", pause_then),
        }
        judged[str(count)] = row
    return judged


# ---------------------------------------------------------------------------------------------- report


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _pair(first: Any, second: Any, digits: int = 2) -> str:
    return f"{_fmt(first, digits)} / {_fmt(second, digits)}"


def _quantiles(histogram: dict[str, Any], digits: int = 2) -> str:
    """``p50 / p99``, each ``>= bound`` when it lies beyond the histogram's highest finite bucket."""

    def one(key: str) -> str:
        text = _fmt(histogram.get(key), digits)
        return f">= {text}" if histogram.get(f"{key}_beyond_buckets") else text

    return f"{one('p50')} / {one('p99')}"


def _row(r: dict[str, Any], run: str) -> str:
    c, p, q, k = r["controller"], r["passes"], r["prometheus"], r["kubernetes"]
    lag = r.get("lag") or {}
    pass_lag = lag.get("pass_lag_seconds") or {}
    queue = lag.get("queue_seconds") or {}
    reactions = r.get("reactions") or {}
    drift, pause = reactions.get("drift") or {}, reactions.get("pause") or {}
    window = float(r["window_seconds"])
    verbs = k.get("requests_by_verb") or {
        verb: n * r["ticks_in_window"] for verb, n in k["requests_per_tick_by_verb"].items()
    }
    verb_text = ", ".join(f"{verb} {n / window:.1f}" for verb, n in sorted(verbs.items())) or "none"
    writes = k.get("writes_per_second", k["writes"] / window)
    reads = k.get("reads_per_pass")
    coverage = r["analysis"].get("evaluations_per_rollout_per_interval")
    per_template = q.get("queries_per_analysis_interval_per_template")
    warmup = r.get("warmup_seconds_to_all_analysed", r.get("warmup_seconds_to_all_progressing"))
    rss = _pair(c["rss_mib_mean_sampled"], c["hwm_mib"], 0)
    passes = _fmt(p.get("per_second", p["count"] / window), 1)
    drift_text, pause_text = (
        f"{_pair(x.get('seconds_p50'), x.get('seconds_p99'))} ({x.get('reacted', '-')}/{x.get('k', '-')})"
        for x in (drift, pause)
    )
    cells = [
        f"{r['rollouts']:,}",
        run,
        _fmt(c["cpu_cores_average"], 3),
        rss,
        _fmt(c.get("cached_objects"), 0),
        passes,
        _fmt(reads, 2),
        verb_text,
        _fmt(writes, 1),
        _fmt(coverage),
        _quantiles(pass_lag),
        _quantiles(queue, 3),
        _fmt(per_template, 1),
        drift_text,
        pause_text,
        f"{_fmt(r['setup_seconds'], 0)} / {_fmt(warmup, 0)}",
        _pair(r["emulator_cpu_cores_average"], q["prometheus_cpu_cores_average"]),
    ]
    return "| " + " | ".join(cells) + " |"


def markdown(results: list[dict[str, Any]], before: list[dict[str, Any]] | None = None) -> str:
    """The figures per size (with the figures before issue 18 beside them when given), the goals, the memory
    slope."""
    header = (
        "| N | run | ctrl CPU cores | RSS mean / HWM MiB | cached objects | passes/s | API reads per pass "
        "| kube requests/s by verb | kube writes/s | analyses per rollout per interval | pass lag p50 / p99 s "
        "| queue wait p50 / p99 s | Prom queries per interval per template | drift reaction p50 / p99 s (reacted/K) "
        "| pause reaction p50 / p99 s (reacted/K) | setup / warm-up s | emulator / Prometheus CPU cores |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    earlier = {(r["rollouts"], _tick(r)): r for r in before or []}
    for r in sorted(results, key=lambda r: (r["rollouts"], _tick(r))):
        tick = "" if _tick(r) == TICK_SECONDS else f" (tick {_tick(r):g} s)"
        lines.append(_row(r, f"now{tick}"))
        then = earlier.get((r["rollouts"], _tick(r)))
        if then is not None:
            lines.append(_row(then, f"today{tick}"))
    for key, then in sorted(earlier.items()):
        if not any((r["rollouts"], _tick(r)) == key for r in results):
            lines.append(_row(then, "today"))
    judged = goals(results, before)
    if judged:
        lines += ["", "| N | goal | figure | now | today | met |", "|---|---|---|---:|---:|---|"]
        for count, row in judged.items():
            for figure, entry in row.items():
                met = "-" if entry["met"] is None else ("met" if entry["met"] else "NOT met")
                lines.append(
                    f"| {int(count):,} | {entry['goal']} | {figure.replace('_', ' ')} | {_fmt(entry['measured'], 3)} "
                    f"| {_fmt(entry['today'], 3)} | {met} |"
                )
    slopes = memory_slopes(results)
    if slopes:
        lines += [""]
        for slope in slopes:
            lines.append(
                f"Memory from {slope['from_rollouts']:,} to {slope['to_rollouts']:,} rollouts: "
                f"{_fmt(slope['kib_per_cached_object'])} KiB per cached object "
                f"({_fmt(slope['cached_objects'][0], 0)} to {_fmt(slope['cached_objects'][1], 0)} objects), "
                f"{_fmt(slope['kib_per_rollout'])} KiB per rollout (mean RSS of the window, "
                f"{slope['rss_mib_mean'][0]} to {slope['rss_mib_mean'][1]} MiB)."
            )
    return "\n".join(lines)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM stops the benchmark as Ctrl-C does: every process it started is stopped on the way out."""
    del signum, frame
    raise KeyboardInterrupt


DEFAULT_SIZES = "100,1000,10000"
"""Issue 18's sizes, at the default tick and the 10 s analysis interval."""
BEFORE_FILE = "scale_before_issue18.json"
"""The same benchmark run on the controller before issue 18 (committed beside the results)."""


def parse_size(text: str) -> tuple[int, float]:
    """``N`` or ``N@T``: N rollouts, a tick of T seconds (default :data:`TICK_SECONDS`)."""
    count, _, tick = text.strip().partition("@")
    try:
        parsed = int(count), float(tick) if tick else TICK_SECONDS
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sizes: {text.strip()!r} is not N or N@SECONDS") from None
    if parsed[0] < 1 or parsed[1] <= 0:
        raise argparse.ArgumentTypeError(f"--sizes: {text.strip()!r} needs N >= 1 and a tick above 0")
    return parsed


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scale", description="One controller process driving N concurrent rollouts."
    )
    parser.add_argument("--out", required=True, type=Path, help="directory for scale.json and the logs")
    parser.add_argument(
        "--sizes",
        default=DEFAULT_SIZES,
        help="comma-separated runs, each N rollouts or N@T with a tick of T seconds instead of "
        f"{TICK_SECONDS:g} (default {DEFAULT_SIZES})",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=60.0,
        help="steady window per size (default 60; at least "
        f"{MIN_INTERVALS_IN_WINDOW} analysis intervals, {MIN_INTERVALS_IN_WINDOW * ANALYSIS_INTERVAL_SECONDS:g} s)",
    )
    parser.add_argument(
        "--workers", type=int, default=8, help="CANARY_WORKERS, passes run in parallel (default 8, the controller's)"
    )
    parser.add_argument(
        "--resync-seconds",
        type=float,
        default=RESYNC_SECONDS,
        help=f"CANARY_RESYNC_SECONDS (default {RESYNC_SECONDS:g}, the controller's)",
    )
    parser.add_argument(
        "--reactions", type=int, default=REACTIONS, help=f"K route drifts and K pauses measured (default {REACTIONS})"
    )
    parser.add_argument(
        "--warmup-limit",
        type=float,
        default=None,
        help="longest wait for every rollout to reach its first step before measuring anyway "
        "(default 240 s + 0.04 s per rollout)",
    )
    parser.add_argument(
        "--istio-data",
        type=Path,
        default=DEFAULT_ISTIO_DATA,
        help="directory holding virtualservice-crd.yaml and tcp-echo-all-v1.yaml (default: shared/data/istio "
        "beside the repository)",
    )
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        help=f"a scale.json of the controller before issue 18, shown beside (default: OUT/{BEFORE_FILE} if present)",
    )
    return parser


def load_before(path: Path) -> list[dict[str, Any]] | None:
    """The results of a before-run, if the file exists."""
    if not path.exists():
        return None
    results: list[dict[str, Any]] = json.loads(path.read_text())["results"]
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Run every size, write ``scale.json``, print the tables."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        sizes = [parse_size(size) for size in args.sizes.split(",") if size.strip()]
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    out: Path = args.out.resolve()  # the children run elsewhere: every path they get is absolute
    istio: Path = args.istio_data.resolve()
    out.mkdir(parents=True, exist_ok=True)
    seconds = max(float(args.seconds), MIN_INTERVALS_IN_WINDOW * ANALYSIS_INTERVAL_SECONDS)
    before_path: Path = args.before or out / BEFORE_FILE
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    report: dict[str, Any] = {
        "benchmark": "scale (issues 8 and 18)",
        "machine": machine(),
        "controller": _controller_commit(),
        "settings": {
            "sizes": [f"{count}@{tick:g}" for count, tick in sizes],
            "window_seconds": seconds,
            "window_seconds_asked": args.seconds,
            "tick_seconds": TICK_SECONDS,
            "resync_seconds": args.resync_seconds,
            "analysis_interval_seconds": ANALYSIS_INTERVAL_SECONDS,
            "scrape_interval_seconds": SCRAPE_SECONDS,
            "workers": args.workers,
            "reactions": args.reactions,
            "drift_weights_written_by_the_person": list(DRIFT_WEIGHTS),
            "person_user_agent": HUMAN_USER_AGENT,
            "policy": POLICY.format(namespace="bench-NNNN", interval=int(ANALYSIS_INTERVAL_SECONDS)),
            "exporter": f"{OPENED} and {CLOSED}, reporter=source, per rollout one canary series growing "
            f"{CANARY_RATE:g}/s and one stable series growing {STABLE_RATE:g}/s, response_flags=- only",
        },
        "results": [],
    }
    started = time.monotonic()
    timings: dict[str, float] = {}
    try:
        for size, tick in sizes:
            size_started = time.monotonic()
            try:
                report["results"].append(
                    run_size(
                        size,
                        tick=tick,
                        seconds=seconds,
                        out=out,
                        istio=istio,
                        warmup_limit=args.warmup_limit,
                        workers=args.workers,
                        resync_seconds=args.resync_seconds,
                        reactions=args.reactions,
                    )
                )
            except RuntimeError as exc:
                print(f"N={size}: failed: {exc}", file=sys.stderr)
                report.setdefault("failures", {})[f"{size}@{tick:g}"] = str(exc)[-2000:]
            timings[f"{size}@{tick:g}"] = round(time.monotonic() - size_started, 1)
            report["seconds_per_size"] = timings
            (out / "scale.json").write_text(json.dumps(report, indent=2) + "\n")
    except KeyboardInterrupt:
        print("interrupted: every process stopped", file=sys.stderr)
        return 130
    before = load_before(before_path) if before_path.resolve() != (out / "scale.json") else None
    report["total_seconds"] = round(time.monotonic() - started, 1)
    report["memory_slopes"] = memory_slopes(report["results"])
    report["goals"] = goals(report["results"], before)
    (out / "scale.json").write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report["results"], before))
    print(f"\n{out / 'scale.json'} written in {report['total_seconds']:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
