"""Scale benchmark (issue 8, section 2): one controller process driving N concurrent rollouts.

``python -m benchmarks.scale --out DIR [--sizes 10,100,1000] [--seconds 60]`` runs, for each N, from scratch:

* the Kubernetes API emulator as a process of its own (``benchmarks.scale_kubeapi``), holding N copies of
  Istio's tcp-echo VirtualService (``tcp-echo-all-v1.yaml``, one namespace each) and counting every request;
* a synthetic exporter (in this process) serving, per rollout, the client-side Istio TCP counters of the
  canary and of the stable workload (``istio_tcp_connections_opened_total`` and ``..._closed_total``, with
  the labels Istio's sidecar writes), growing steadily, no failed connects;
* one real Prometheus (Debian's binary, :class:`~canary_sandbox.processes.PrometheusProcess`) scraping it;
* the controller as ``python -m controller`` (``canaryctl run``), file mode: N policy files, each analysing
  with the built-in ``istio-tcp-connect-error-ratio`` template every 10 s, steps of an hour so every rollout
  stays at its first step, tick 5 s.

Once every rollout is ``Progressing`` and one more analysis interval and two ticks have passed, it measures for a fixed
window: the controller's CPU time and memory (``/proc``), its passes (``canary_tick_duration_seconds``), the
queries Prometheus answered (its own ``prometheus_http_requests_total``), and every Kubernetes request and
write (the emulator's log). It writes ``DIR/scale.json`` (every figure, the machine, the Prometheus version)
and prints a Markdown table. Every process it starts is stopped on exit, Ctrl-C included.
"""

from __future__ import annotations

import argparse
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
ANALYSIS_INTERVAL_SECONDS = 10.0
SCRAPE_SECONDS = 5.0
CANARY_RATE = 50.0
"""Connections per second each canary opens. A window counts the increases between the samples scraped inside
it (docs/analysis.md), so a 10 s window at a 5 s scrape counts one scrape interval's 250: above
``minConnections`` (200), so every check passes as in a healthy mesh."""
STABLE_RATE = 200.0
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


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Every sample of a Prometheus text exposition."""
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

    def wait_serving(self, timeout: float = 60.0) -> None:
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
        return samples(controller.metrics())

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


def _wait(condition_seconds: float, controller: ControllerChild) -> None:
    deadline = time.monotonic() + condition_seconds
    while time.monotonic() < deadline:
        controller.check_alive()
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def _per_tick(value: float, ticks: float) -> float:
    return round(value / ticks, 3) if ticks else 0.0


def _kube_figures(
    dumped: dict[str, Any], start: float, end: float, ticks: float, count: int, warmup_from: float, tick: float
) -> dict[str, Any]:
    """Requests, writes, passes and tick wall times from the emulator's log."""
    requests = [row for row in dumped["requests"] if start <= row[0] < end]
    by_verb = Counter(row[1] for row in requests)
    by_resource = Counter(f"{row[1]} {row[2]}{'/' + row[3] if row[3] else ''}" for row in requests)

    # A pass reads its status ConfigMap, then its VirtualService, then (when the status changed) reads and
    # replaces the ConfigMap. The VirtualService read marks a pass; it began at the status read before it.
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
        "requests_per_tick": _per_tick(len(requests), ticks),
        "requests_per_tick_by_verb": {verb: _per_tick(n, ticks) for verb, n in sorted(by_verb.items())},
        "requests_by_verb_and_resource": dict(sorted(by_resource.items())),
        "writes": len(writes),
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


def run_size(
    count: int,
    *,
    seconds: float,
    out: Path,
    istio: Path,
    warmup_limit: float,
    workers: int = 8,
    tick: float = TICK_SECONDS,
) -> dict[str, Any]:
    """Set up N rollouts, wait until they all progress, measure for ``seconds``; every figure of one size."""
    label = "" if tick == TICK_SECONDS else f" (tick {tick:g} s)"
    workdir = out / (f"n{count}" if tick == TICK_SECONDS else f"n{count}-tick{tick:g}")
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"N={count}{label}: starting the emulator, the exporter and Prometheus", file=sys.stderr, flush=True)
    setup_started = time.monotonic()
    with contextlib.ExitStack() as stack:
        kube = stack.enter_context(KubeApiChild(workdir, count=count, istio=istio))
        exporter = stack.enter_context(IstioExporter(count))
        prometheus = stack.enter_context(
            PrometheusProcess(
                workdir / "prometheus",
                prometheus_config({"istio": (exporter.address, "/metrics")}, interval=SCRAPE_SECONDS),
            )
        )
        deadline = time.monotonic() + 60
        while True:
            scraped = prometheus.api("query", query=f"count({OPENED})")["result"]
            if scraped and int(float(scraped[0]["value"][1])) == 2 * count:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"Prometheus has not scraped the {2 * count} {OPENED} series in 60 s")
            time.sleep(0.5)
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
                "CANARY_PROMETHEUS_URL": prometheus.url,
                "CANARY_HTTP_HOST": "127.0.0.1",
                "CANARY_HTTP_PORT": str(free_port()),
                "CANARY_LOG_LEVEL": "INFO",
                "CANARY_WORKERS": str(workers),
            }
        )
        setup_seconds = time.monotonic() - setup_started
        print(
            f"N={count}{label}: starting the controller (setup took {setup_seconds:.1f} s)", file=sys.stderr, flush=True
        )
        controller = stack.enter_context(ControllerChild(workdir, env))
        controller_started = time.monotonic()
        controller.wait_serving()

        # Warm-up: every rollout at its first step, then one more analysis interval and two ticks.
        deadline = controller_started + warmup_limit
        phases: dict[str, int] = {}
        progressing_at: float | None = None
        while time.monotonic() < deadline:
            controller.check_alive()
            phases = kube.command("phases")
            if phases.get("Progressing", 0) == count:
                progressing_at = time.monotonic()
                break
            time.sleep(2.0)
        if progressing_at is None:
            print(
                f"N={count}{label}: not every rollout progressing after {warmup_limit:g} s: {phases}", file=sys.stderr
            )
        print(f"N={count}{label}: {phases}; settling", file=sys.stderr, flush=True)
        # A step's clock starts at the pass after its weight was written (up to a tick later), and its first
        # analysis interval is short: wait those out, or the window holds young steps' short windows.
        _wait(ANALYSIS_INTERVAL_SECONDS + 2 * tick, controller)

        print(f"N={count}{label}: measuring for {seconds:g} s", file=sys.stderr, flush=True)
        before = _snapshot(controller, kube, prometheus, end=False)
        rss: list[float] = []
        while time.monotonic() < before.at + seconds:
            controller.check_alive()
            rss.append(kib_to_mib(proc_status(controller.pid)["VmRSS"]))
            time.sleep(min(1.0, max(0.0, before.at + seconds - time.monotonic())))
        after = _snapshot(controller, kube, prometheus, end=True)
        memory = proc_status(controller.pid)
        phases_after = kube.command("phases")
        verdicts_after = kube.command("verdicts")
        dump_path = workdir / "kubeapi-log.json"
        kube.command(f"dump {dump_path}")
        dumped = json.loads(dump_path.read_text())
    window = after.at - before.at
    ticks = window / tick
    cpu = after.controller_cpu - before.controller_cpu
    busy = (after.machine[0] - before.machine[0]) / max(1, after.machine[1] - before.machine[1])
    pass_buckets = (
        buckets(before.controller, "canary_tick_duration_seconds"),
        buckets(after.controller, "canary_tick_duration_seconds"),
    )
    passes = total(after.controller, "canary_tick_duration_seconds_count") - total(
        before.controller, "canary_tick_duration_seconds_count"
    )
    pass_sum = total(after.controller, "canary_tick_duration_seconds_sum") - total(
        before.controller, "canary_tick_duration_seconds_sum"
    )
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
    api_errors = total(after.controller, "canary_kubernetes_api_errors_total") - total(
        before.controller, "canary_kubernetes_api_errors_total"
    )
    prometheus_cpu = total(after.prometheus, "process_cpu_seconds_total") - total(
        before.prometheus, "process_cpu_seconds_total"
    )
    emulator_cpu = after.kube_cpu - before.kube_cpu
    own_cpu = after.own_cpu - before.own_cpu
    cores = os.cpu_count() or 1
    result: dict[str, Any] = {
        "rollouts": count,
        "tick_seconds": tick,
        "window_seconds": round(window, 2),
        "ticks_in_window": round(ticks, 2),
        "setup_seconds": round(setup_seconds, 1),
        "warmup_seconds_to_all_progressing": _round(
            None if progressing_at is None else progressing_at - controller_started, 1
        ),
        "phases_at_start": phases,
        "phases_at_end": phases_after,
        "controller": {
            "cpu_seconds": round(cpu, 2),
            "cpu_cores_average": round(cpu / window, 3),
            "cpu_seconds_per_tick": _per_tick(cpu, ticks),
            "cpu_ms_per_rollout_per_tick": round(1000 * cpu / ticks / count, 2),
            "cpu_ms_per_pass": round(1000 * cpu / passes, 2) if passes else None,
            "rss_mib_end": round(kib_to_mib(memory["VmRSS"]), 1),
            "rss_mib_max_sampled": round(max(rss, default=0.0), 1),
            "rss_mib_mean_sampled": round(statistics.fmean(rss), 1) if rss else None,
            "hwm_mib": round(kib_to_mib(memory["VmHWM"]), 1),
            "threads": int(memory["Threads"]),
            "kubernetes_api_errors": api_errors,
            "log_lines_in_window": _log_summary(controller.log_path, before.log_offset, after.log_offset),
            "exit_code": controller.exit_code,
        },
        "passes": {
            "count": passes,
            "per_tick": _per_tick(passes, ticks),
            "wanted_per_tick": count,
            "duration_seconds_p50": _round(quantile(0.5, *pass_buckets), 4),
            "duration_seconds_p99": _round(quantile(0.99, *pass_buckets), 4),
            "duration_seconds_mean": _round(pass_sum / passes if passes else None, 4),
        },
        "analysis": {
            "evaluations": evaluations,
            "evaluations_per_tick": _per_tick(evaluations, ticks),
            "verdicts": verdicts,
            "last_verdict_of_each_rollout_at_end": verdicts_after,
        },
        "prometheus": {
            "queries": queries,
            "queries_failed": queries - query_ok,
            "queries_per_tick": _per_tick(queries, ticks),
            "queries_per_rollout_per_analysis_interval": round(
                queries / count / (window / ANALYSIS_INTERVAL_SECONDS), 2
            ),
            "queries_per_evaluation": round(queries / evaluations, 2) if evaluations else None,
            # Prometheus' own buckets are coarse (0.1, 0.2, 0.4, 1 s...): the bucket each quantile falls in.
            "query_seconds_p50_at_most": bucket_bound(0.5, *query_buckets),
            "query_seconds_p99_at_most": bucket_bound(0.99, *query_buckets),
            "prometheus_cpu_cores_average": round(prometheus_cpu / window, 3),
        },
        "kubernetes": _kube_figures(dumped, before.at, after.at, ticks, count, controller_started, tick),
        "emulator_cpu_cores_average": round(emulator_cpu / window, 3),
        "benchmark_process_cpu_cores_average": round(own_cpu / window, 3),
        "machine_cpu_busy_fraction": round(busy, 3),
        "other_processes_cpu_cores_average": round(
            max(0.0, busy * cores - (cpu + emulator_cpu + own_cpu + prometheus_cpu) / window), 3
        ),
    }
    return result


# ---------------------------------------------------------------------------------------------- report


def _tick(result: dict[str, Any]) -> float:
    return float(result.get("tick_seconds", TICK_SECONDS))


def goals(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's goals, judged at the largest N measured with the default tick; CPU also at other ticks."""
    default = [r for r in results if _tick(r) == TICK_SECONDS]
    if not default:
        return {}
    largest = max(default, key=lambda r: int(r["rollouts"]))
    smallest = min(default, key=lambda r: int(r["rollouts"]))
    other_ticks = [
        {
            "rollouts": r["rollouts"],
            "tick_seconds": _tick(r),
            "measured_cores": r["controller"]["cpu_cores_average"],
            "met": r["controller"]["cpu_cores_average"] <= 0.5,
        }
        for r in results
        if _tick(r) != TICK_SECONDS and r["rollouts"] == largest["rollouts"]
    ]
    writes_without_weight = largest["kubernetes"]["writes_without_a_weight_change"]
    return {
        "at_rollouts": largest["rollouts"],
        "cpu_at_most_half_a_core": {
            "measured_cores": largest["controller"]["cpu_cores_average"],
            "met": largest["controller"]["cpu_cores_average"] <= 0.5,
            "at_other_ticks": other_ticks,
        },
        "rss_at_most_300_mib": {
            "measured_hwm_mib": largest["controller"]["hwm_mib"],
            "met": largest["controller"]["hwm_mib"] <= 300,
        },
        "prometheus_queries_bounded_by_templates": {
            "templates": TEMPLATES,
            "bound_per_tick": TEMPLATES * QUERIES_PER_CHECK,
            "measured_per_tick": largest["prometheus"]["queries_per_tick"],
            "measured_per_tick_at_smallest_n": smallest["prometheus"]["queries_per_tick"],
            "met": largest["prometheus"]["queries_per_tick"] <= TEMPLATES * QUERIES_PER_CHECK,
        },
        "kubernetes_writes_only_on_weight_change": {
            "writes_in_window_without_a_weight_change": writes_without_weight,
            "met": writes_without_weight == 0,
        },
        "every_rollout_passed_each_tick": {
            "passes_per_tick": largest["passes"]["per_tick"],
            "wanted": largest["rollouts"],
            "repass_interval_p50_seconds": largest["kubernetes"]["repass_interval_seconds"]["p50"],
            "met": largest["passes"]["per_tick"] >= 0.95 * largest["rollouts"],
        },
    }


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown(results: list[dict[str, Any]]) -> str:
    """The summary table."""
    header = (
        "| N | tick s | ctrl CPU cores | CPU s/tick | CPU ms per rollout-tick / per pass | RSS / HWM MiB | passes/tick "
        "| pass p50 / p99 ms | tick wall p50 / p99 s | re-pass p50 / p99 s | Prom queries/tick "
        "| queries/rollout/interval | kube req/tick by verb | kube writes/tick | writes w/o weight change (window) "
        "| machine busy (others) |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for r in results:
        c, p, q, k = r["controller"], r["passes"], r["prometheus"], r["kubernetes"]
        bursts = k["tick_bursts"]
        tick_wall = (
            "saturated"
            if bursts["saturated"]
            else f"{_fmt(bursts['wall_seconds_p50'])} / {_fmt(bursts['wall_seconds_p99'])}"
        )
        verbs = ", ".join(f"{verb} {value:.1f}" for verb, value in k["requests_per_tick_by_verb"].items())
        p50 = None if p["duration_seconds_p50"] is None else 1000 * p["duration_seconds_p50"]
        p99 = None if p["duration_seconds_p99"] is None else 1000 * p["duration_seconds_p99"]
        lines.append(
            f"| {r['rollouts']} | {_tick(r):g} | {_fmt(c['cpu_cores_average'], 3)} "
            f"| {_fmt(c['cpu_seconds_per_tick'], 3)} "
            f"| {_fmt(c['cpu_ms_per_rollout_per_tick'])} / {_fmt(c['cpu_ms_per_pass'])} "
            f"| {_fmt(c['rss_mib_end'], 1)} / {_fmt(c['hwm_mib'], 1)} "
            f"| {_fmt(p['per_tick'], 1)} of {r['rollouts']} | {_fmt(p50, 1)} / {_fmt(p99, 1)} | {tick_wall} "
            f"| {_fmt(k['repass_interval_seconds']['p50'])} / {_fmt(k['repass_interval_seconds']['p99'])} "
            f"| {_fmt(q['queries_per_tick'], 1)} | {_fmt(q['queries_per_rollout_per_analysis_interval'])} "
            f"| {verbs} | {_fmt(k['writes_per_tick'])} | {k['writes_without_a_weight_change']} "
            f"| {_fmt(100 * r['machine_cpu_busy_fraction'], 0)} % ({_fmt(r['other_processes_cpu_cores_average'])} "
            "cores) |"
        )
    return "\n".join(lines)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM stops the benchmark as Ctrl-C does: every process it started is stopped on the way out."""
    del signum, frame
    raise KeyboardInterrupt


DEFAULT_SIZES = "10,100,1000,1000@10"
"""The issue's sizes at the default tick, and 1,000 once more with the tick at the analysis interval."""


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
    parser.add_argument("--seconds", type=float, default=60.0, help="measurement window per size (default 60)")
    parser.add_argument(
        "--workers", type=int, default=8, help="CANARY_WORKERS, passes run in parallel (default 8, the controller's)"
    )
    parser.add_argument(
        "--warmup-limit",
        type=float,
        default=240.0,
        help="longest wait for every rollout to reach its first step before measuring anyway (default 240 s)",
    )
    parser.add_argument(
        "--istio-data",
        type=Path,
        default=DEFAULT_ISTIO_DATA,
        help="directory holding virtualservice-crd.yaml and tcp-echo-all-v1.yaml (default: shared/data/istio "
        "beside the repository)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run every size, write ``scale.json``, print the table."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        sizes = [parse_size(size) for size in args.sizes.split(",") if size.strip()]
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    out: Path = args.out.resolve()  # the children run elsewhere: every path they get is absolute
    istio: Path = args.istio_data.resolve()
    out.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    report: dict[str, Any] = {
        "benchmark": "scale (issue 8, section 2)",
        "machine": machine(),
        "settings": {
            "sizes": [f"{count}@{tick:g}" for count, tick in sizes],
            "window_seconds": args.seconds,
            "tick_seconds": TICK_SECONDS,
            "analysis_interval_seconds": ANALYSIS_INTERVAL_SECONDS,
            "scrape_interval_seconds": SCRAPE_SECONDS,
            "workers": args.workers,
            "policy": POLICY.format(namespace="bench-NNNN", interval=int(ANALYSIS_INTERVAL_SECONDS)),
            "exporter": f"{OPENED} and {CLOSED}, reporter=source, per rollout one canary series growing "
            f"{CANARY_RATE:g}/s and one stable series growing {STABLE_RATE:g}/s, response_flags=- only",
        },
        "results": [],
    }
    started = time.monotonic()
    try:
        for size, tick in sizes:
            try:
                report["results"].append(
                    run_size(
                        size,
                        tick=tick,
                        seconds=args.seconds,
                        out=out,
                        istio=istio,
                        warmup_limit=args.warmup_limit,
                        workers=args.workers,
                    )
                )
            except RuntimeError as exc:
                print(f"N={size}: failed: {exc}", file=sys.stderr)
                report.setdefault("failures", {})[f"{size}@{tick:g}"] = str(exc)[-2000:]
            (out / "scale.json").write_text(json.dumps(report, indent=2) + "\n")
    except KeyboardInterrupt:
        print("interrupted: every process stopped", file=sys.stderr)
        return 130
    report["total_seconds"] = round(time.monotonic() - started, 1)
    report["goals"] = goals(report["results"])
    (out / "scale.json").write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report["results"]))
    print(f"\n{out / 'scale.json'} written in {report['total_seconds']:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
