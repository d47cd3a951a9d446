"""``canaryctl demo``: Istio's TCP traffic-shifting task, done by the controller, on one machine.

Everything runs on loopback and is cleaned up on exit (Ctrl-C included):

* the Kubernetes API emulator holding the scenario (Gateway, DestinationRule, VirtualService ``tcp-echo``
  with all traffic on v1, Deployments ``tcp-echo-v1``/``-v2``; or the Gateway API variant with a TCPRoute);
* tcp-echo v1 and v2 (replies prefixed ``one`` and ``two``);
* a real Envoy as the ingress gateway, programmed from the route the way istiod would (:class:`RouteSync`);
* a real Prometheus scraping Envoy every second, and a real Alertmanager;
* a client opening connections through the gateway at a steady rate and counting the replies;
* the controller itself, through ``canaryctl run``'s code path (:class:`~controller.runtime.daemon.Daemon`),
  with a policy using Envoy's TCP connect-error metric, short steps and alerts to the local Alertmanager.

With ``fault_at``, v2 starts refusing connections once the canary carries that weight; the analysis fails,
the controller restores the original route and alerts, and the demo measures the rollback latency from
the first failed connection to (a) the route restored in the API and (b) Envoy running without v2.
"""

from __future__ import annotations

import contextlib
import copy
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TextIO

import yaml

from canary_sandbox.envoy_gateway import (
    EnvoyError,
    EnvoyGateway,
    RouteChange,
    RouteSync,
    envoy_version,
    pick_port,
)
from canary_sandbox.istiod_status import IstiodStatusWriter
from canary_sandbox.kubeapi import KubeApiEmulator
from canary_sandbox.load import LoadClient
from canary_sandbox.processes import AlertmanagerProcess, PrometheusProcess, SandboxError, prometheus_config
from canary_sandbox.scenario import (
    GATEWAY_PORT,
    NAMESPACE,
    ROUTE_NAME,
    SERVICE_PORT,
    Variant,
    load_scenario,
    route_kind,
    scenario_endpoints,
)
from canary_sandbox.tcpecho import TcpEchoServer
from canary_sandbox.xds import Address, Backend, cluster_name
from controller.dashboard.server import DashboardServer
from controller.runtime import logs
from controller.runtime.composition import build_daemon, open_dashboard
from controller.runtime.daemon import Daemon
from controller.settings import Settings

CONTROLLER_NAMESPACE = "canary-system"
POLICY_NAME = "tcp-echo"
STEPS = (0, 20, 50, 100)
TERMINAL = {"Promoted", "RolledBack", "Failed"}


@dataclass(frozen=True)
class DemoOptions:
    """What ``canaryctl demo`` runs.

    Attributes:
        variant: ``istio`` (VirtualService) or ``gateway-api`` (TCPRoute).
        step_seconds: duration of each step.
        fault_at: the canary weight at which v2 starts refusing connections (None: no fault).
        rate: client connections per second.
        scrape_seconds: Prometheus scrape interval.
        analysis_seconds: the policy's analysis interval.
        gateway_port: the listener's port when free (another free one otherwise).
        timeout_seconds: give up after this long (the outcome is then whatever the rollout reached).
        dashboard_port: where the web dashboard serves the rollout while the demo runs (another free port
            when taken); None: no dashboard.
    """

    variant: Variant = "istio"
    step_seconds: float = 10.0
    fault_at: int | None = None
    rate: float = 20.0
    scrape_seconds: float = 1.0
    analysis_seconds: float = 2.0
    gateway_port: int = GATEWAY_PORT
    timeout_seconds: float = 180.0
    dashboard_port: int | None = 3100


@dataclass
class StepResult:
    """One step the rollout reached, as the client saw it."""

    weight: int
    connections: int
    canary_replies: int
    observed_canary_share: float | None
    errors: int
    verdict: str | None
    # The controller's own measure, from Envoy's counters in Prometheus: its traffic-share check at the
    # step's last evaluation (docs/analysis.md), beside the client's count of "two" replies.
    prometheus_canary_share: float | None = None

    def as_json(self) -> dict[str, Any]:
        """The ``steps[]`` entry of the JSON result."""
        share = None if self.observed_canary_share is None else round(self.observed_canary_share, 4)
        measured = None if self.prometheus_canary_share is None else round(self.prometheus_canary_share, 4)
        return {
            "weight": self.weight,
            "connections": self.connections,
            "canary_replies": self.canary_replies,
            "observed_canary_share": share,
            "prometheus_canary_share": measured,
            "errors": self.errors,
            "verdict": self.verdict,
        }


@dataclass
class DemoResult:
    """What the demo measured (``as_json`` is the ``--json`` output)."""

    outcome: Literal["promoted", "rolled_back", "failed", "unfinished"]
    steps: list[StepResult]
    rollback_latency_seconds: dict[str, float | None] | None
    final_route: Any
    original_route: Any
    alerts: list[dict[str, Any]]
    versions: dict[str, str]
    v2_connections_after_reload: int | None = None
    phase_message: str = ""
    seconds: float = 0.0
    policy: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        """The machine-readable result."""
        return {
            "outcome": self.outcome,
            "steps": [step.as_json() for step in self.steps],
            "rollback_latency_seconds": self.rollback_latency_seconds,
            "final_route": self.final_route,
            "original_route": self.original_route,
            "alerts": self.alerts,
            "versions": self.versions,
            "v2_connections_after_reload": self.v2_connections_after_reload,
            "message": self.phase_message,
            "seconds": round(self.seconds, 1),
            "policy": self.policy,
        }


@dataclass
class LiveState:
    """What the live view shows, refreshed a few times a second.

    ``share``, ``connections`` and ``errors`` are the client's counts at the step the rollout is at, or, once
    the route is restored after a failure, at the step that failed (``counted_weight`` is that step's weight).
    """

    phase: str = "Starting"
    step: str = ""
    weight: int | None = None
    share: float | None = None
    connections: int = 0
    errors: int = 0
    verdict: str = ""
    elapsed: float = 0.0
    note: str = ""
    counted_weight: int | None = None


def demo_policy(options: DemoOptions, *, prometheus_url: str, alertmanager_url: str) -> dict[str, Any]:
    """The demo's CanaryPolicy: the seed policy with Envoy's connect-error metric and short steps."""
    variant = options.variant
    if variant == "istio":
        target: dict[str, Any] = {
            "virtualService": {"name": ROUTE_NAME},
            "route": {"protocol": "tcp", "port": GATEWAY_PORT},
            "stable": {"host": "tcp-echo", "subset": "v1", "port": SERVICE_PORT},
            "canary": {"host": "tcp-echo", "subset": "v2", "port": SERVICE_PORT},
        }
    else:
        target = {
            "tcpRoute": {"name": ROUTE_NAME},
            "stable": {"host": "tcp-echo-v1", "port": SERVICE_PORT},
            "canary": {"host": "tcp-echo-v2", "port": SERVICE_PORT},
        }
    stable, canary = clusters(variant)
    expected_per_step = options.rate * options.step_seconds
    return {
        "apiVersion": "canaryctl.dev/v1alpha1",
        "kind": "CanaryPolicy",
        "metadata": {"name": POLICY_NAME, "namespace": NAMESPACE},
        "spec": {
            "target": target,
            "schedule": {"steps": list(STEPS), "stepDuration": f"{round(options.step_seconds * 1000)}ms"},
            "analysis": {
                "interval": f"{round(options.analysis_seconds * 1000)}ms",
                "prometheus": {"url": prometheus_url, "timeout": "2s"},
                "selector": {"canaryCluster": canary, "stableCluster": stable},
                "metrics": [
                    {
                        "name": "connect-errors",
                        "template": "envoy-tcp-connect-error-ratio",
                        "max": 0.05,
                        "countTest": {"method": "binomial", "confidence": 0.99},
                        # About a quarter of what the smallest step (20 %) brings at the demo's rate.
                        "minConnections": max(5, int(expected_per_step * 0.2 / 4)),
                    }
                ],
                "failureLimit": 1,
            },
            "alerts": [{"name": "local-alertmanager", "alertmanager": {"url": alertmanager_url}}],
        },
    }


def clusters(variant: Variant) -> tuple[str, str]:
    """Envoy's cluster names of stable and canary (Istio's ``outbound|port|subset|host`` form)."""
    if variant == "istio":
        return (
            cluster_name("tcp-echo", SERVICE_PORT, "v1", namespace=NAMESPACE),
            cluster_name("tcp-echo", SERVICE_PORT, "v2", namespace=NAMESPACE),
        )
    return (
        cluster_name("tcp-echo-v1", SERVICE_PORT, namespace=NAMESPACE),
        cluster_name("tcp-echo-v2", SERVICE_PORT, namespace=NAMESPACE),
    )


def route_of(obj: dict[str, Any] | None, variant: Variant) -> Any:
    """The part of the route object the rollout edits (``spec.tcp`` or ``spec.rules``)."""
    if obj is None:
        return None
    return obj["spec"].get("tcp") if variant == "istio" else obj["spec"].get("rules")


class Sandbox:
    """All the demo's components, started in order and stopped in reverse (see the module docstring)."""

    def __init__(self, options: DemoOptions, workdir: Path) -> None:
        self.options = options
        self.workdir = workdir
        self._stack = contextlib.ExitStack()
        self.emulator: KubeApiEmulator | None = None
        self.v1: TcpEchoServer | None = None
        self.v2: TcpEchoServer | None = None
        self.envoy: EnvoyGateway | None = None
        self.sync: RouteSync | None = None
        self.prometheus: PrometheusProcess | None = None
        self.alertmanager: AlertmanagerProcess | None = None
        self.daemon: Daemon | None = None
        self.load: LoadClient | None = None
        self.policy: dict[str, Any] | None = None
        self.dashboard_url: str | None = None

    def __enter__(self) -> Sandbox:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _component(self, name: str, start: Callable[[], Any]) -> Any:
        try:
            return start()
        except SandboxError:
            raise
        except Exception as exc:
            raise SandboxError(name, f"{type(exc).__name__}: {exc}") from exc

    def _start(self) -> None:
        options = self.options
        stack = self._stack
        emulator = self._component("kubernetes api emulator", lambda: KubeApiEmulator().start())
        stack.callback(emulator.stop)
        self.emulator = emulator
        load_scenario(emulator, options.variant)
        emulator.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": CONTROLLER_NAMESPACE}})
        self.v1 = self._component("tcp-echo v1", lambda: TcpEchoServer("one").start())
        stack.callback(self.v1.stop)
        self.v2 = self._component("tcp-echo v2", lambda: TcpEchoServer("two").start())
        stack.callback(self.v2.stop)
        endpoints = scenario_endpoints(options.variant, v1=self.v1.address, v2=self.v2.address)
        envoy, sync = self._gateway(endpoints)
        self.envoy, self.sync = envoy, sync
        stack.callback(envoy.stop)
        stack.callback(sync.stop)
        # istiod's status reporting (PILOT_ENABLE_STATUS): the route's Reconciled condition (or the TCPRoute's
        # parents) at a generation once Envoy runs it, so the controller's step clock waits for the data plane
        # as on a cluster with status reporting on (docs/data-plane.md).
        istiod = IstiodStatusWriter(emulator, confirm=sync.confirms, interval=0.1).start()
        stack.callback(istiod.stop)
        prometheus = PrometheusProcess(
            self.workdir / "prometheus",
            prometheus_config(
                {"envoy": (envoy.prometheus_target, envoy.prometheus_scrape_path)}, interval=options.scrape_seconds
            ),
        )
        self.prometheus = prometheus.start()
        stack.callback(prometheus.stop)
        alertmanager = AlertmanagerProcess(self.workdir / "alertmanager")
        self.alertmanager = alertmanager.start()
        stack.callback(alertmanager.stop)
        self.load = LoadClient(envoy.listener_address, rate=options.rate).start()
        stack.callback(self.load.stop)

    def _gateway(self, endpoints: dict[Backend, Address]) -> tuple[EnvoyGateway, RouteSync]:
        """Envoy on the gateway port when free, and its route sync; another free port if the listener cannot
        bind there (another program took the port between the check and Envoy's bind)."""
        assert self.emulator is not None
        preferred: int | None = self.options.gateway_port
        for attempt in range(3):
            envoy = EnvoyGateway(
                listener_port=pick_port(preferred),
                gateway_port=GATEWAY_PORT,
                workdir=self.workdir / f"envoy-{attempt}",
            )
            self._component("envoy", envoy.start)
            sync = RouteSync(
                self.emulator,
                envoy,
                kind=route_kind(self.options.variant),
                name=ROUTE_NAME,
                namespace=NAMESPACE,
                endpoints=endpoints,
                interval=0.1,
            )
            try:
                sync.start()
            except EnvoyError as exc:
                envoy.stop()
                if attempt == 2:
                    raise SandboxError("envoy", f"the gateway listener was rejected: {exc}") from exc
                preferred = None  # the preferred port was taken meanwhile: let the kernel choose
                continue
            except Exception as exc:
                envoy.stop()
                raise SandboxError("envoy route sync", f"{type(exc).__name__}: {exc}") from exc
            return envoy, sync
        raise AssertionError("unreachable")  # pragma: no cover

    def start_controller(self) -> None:
        """Write the demo policy and start the controller daemon (in-process, ``canaryctl run``'s path)."""
        assert self.emulator is not None
        assert self.prometheus is not None
        assert self.alertmanager is not None
        policies = self.workdir / "policies"
        policies.mkdir(exist_ok=True)
        policy = demo_policy(self.options, prometheus_url=self.prometheus.url, alertmanager_url=self.alertmanager.url)
        self.policy = policy
        (policies / "tcp-echo.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
        kubeconfig = self.workdir / "kubeconfig"
        self.emulator.write_kubeconfig(kubeconfig, context_name="sandbox")
        settings = Settings(
            namespace=CONTROLLER_NAMESPACE,
            policy_dir=policies,
            watch_crds=False,
            kubeconfig=str(kubeconfig),
            tick_seconds=0.25,
            prometheus_url=self.prometheus.url,
            http_host="127.0.0.1",
            http_port=0,
            identity="canaryctl-demo",
        )
        self.log_stream: TextIO = self._stack.enter_context((self.workdir / "controller.log").open("w"))
        logs.configure("INFO", self.log_stream)
        daemon = self._component("controller", lambda: build_daemon(settings))
        self.daemon = daemon.start()
        self._stack.callback(daemon.stop)
        if self.options.dashboard_port is not None:
            self._start_dashboard(kubeconfig, policies)

    def _start_dashboard(self, kubeconfig: Path, policies: Path) -> None:
        """``canaryctl dashboard``'s server over the emulator, on the port asked for or a free one."""
        assert self.prometheus is not None
        port = self.options.dashboard_port

        def start(on_port: int) -> DashboardServer:
            return open_dashboard(
                kubeconfig=str(kubeconfig),
                context=None,
                namespaces=None,
                prometheus_url=self.prometheus.url if self.prometheus is not None else None,
                controller_namespace=CONTROLLER_NAMESPACE,
                host="127.0.0.1",
                port=on_port,
                actor="demo (dashboard)",
                tick_seconds=1.0,
                policy_dir=policies,
            )

        try:
            server = start(port or 0)
        except OSError:
            server = self._component("dashboard", lambda: start(0))
        self._stack.callback(server.stop)
        self.dashboard_url = server.url

    def status(self) -> dict[str, Any] | None:
        """The rollout's persisted status (file mode: a ConfigMap in the controller's namespace)."""
        assert self.emulator is not None
        cm = self.emulator.get("configmaps", f"canary-{NAMESPACE}-{POLICY_NAME}", namespace=CONTROLLER_NAMESPACE)
        text = ((cm or {}).get("data") or {}).get("status")
        if not text:
            return None
        status: dict[str, Any] = json.loads(text)
        return status

    def route_object(self) -> dict[str, Any] | None:
        """The route object as stored."""
        assert self.emulator is not None
        resource = (
            "virtualservices.networking.istio.io"
            if self.options.variant == "istio"
            else "tcproutes.gateway.networking.k8s.io"
        )
        return self.emulator.get(resource, ROUTE_NAME, namespace=NAMESPACE)


def _canary_weight(change: RouteChange, canary: str) -> int:
    return int(change.weights.get(canary, 0))


def run_demo(
    options: DemoOptions,
    *,
    on_update: Callable[[LiveState], None] | None = None,
    on_policy: Callable[[dict[str, Any]], None] | None = None,
    workdir: Path | None = None,
    on_dashboard: Callable[[str], None] | None = None,
) -> DemoResult:
    """Run the demo to its outcome and measure it (see the module docstring).

    ``on_update`` receives the live state a few times a second; ``on_policy`` the CanaryPolicy the
    controller runs, once, just before the controller starts; ``on_dashboard`` the web dashboard's URL, once
    it serves (``options.dashboard_port``), until the demo ends.

    Raises:
        SandboxError: a component could not start (its ``component`` says which).
    """
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="canaryctl-demo-")))
        sandbox = stack.enter_context(Sandbox(options, workdir))
        return _drive(
            sandbox,
            on_update or (lambda state: None),
            on_policy or (lambda policy: None),
            on_dashboard or (lambda url: None),
        )
    raise AssertionError("unreachable")  # pragma: no cover


def _drive(
    sandbox: Sandbox,
    on_update: Callable[[LiveState], None],
    on_policy: Callable[[dict[str, Any]], None],
    on_dashboard: Callable[[str], None],
) -> DemoResult:
    options = sandbox.options
    assert sandbox.sync is not None
    assert sandbox.load is not None
    assert sandbox.v2 is not None
    assert sandbox.envoy is not None
    assert sandbox.alertmanager is not None
    assert sandbox.prometheus is not None
    assert sandbox.emulator is not None
    sync, load = sandbox.sync, sandbox.load
    _, canary_cluster = clusters(options.variant)
    original_route = route_of(sandbox.route_object(), options.variant)
    began = time.monotonic()
    initial_changes = len(sync.history)
    sandbox.start_controller()
    assert sandbox.policy is not None
    on_policy(sandbox.policy)
    if sandbox.dashboard_url is not None:
        on_dashboard(sandbox.dashboard_url)
    verdicts: dict[int, str] = {}
    last_index: int | None = None
    shares: dict[int, float] = {}  # weight -> the controller's measured canary share at its last evaluation
    state = LiveState()
    fault_at: float | None = None
    status: dict[str, Any] | None = None
    deadline = began + options.timeout_seconds
    while time.monotonic() < deadline:
        status = sandbox.status()
        now = time.monotonic()
        changes = sync.history[initial_changes:]
        if status is not None:
            index = int(status.get("stepIndex", -1))
            verdict = status.get("lastVerdict")
            if index >= 0 and verdict:
                # A verdict older than the step's start is the previous step's final gate (the one that
                # advanced the rollout), carried over in the status until this step's first check; so is one
                # seen before the step has started (its weight written, not yet confirmed): no look of a step
                # happens before its start.
                analysed, started = status.get("lastAnalysisAt"), status.get("stepStartedAt")
                previous = not started or (analysed and _instant(analysed) <= _instant(started))
                owner = index - 1 if previous else index
                if owner >= 0:
                    verdicts[owner] = str(verdict).split(":", 1)[0]
            if last_index is not None and index > last_index >= 0 and _advanced_to(status, index):
                # The controller advances a step only on a passing analysis of the whole step: that is its
                # verdict, even when this step's first look has already replaced it in the status.
                verdicts[last_index] = "pass"
            last_index = index if index >= 0 else last_index
            measured = status.get("lastTrafficShare")
            if isinstance(measured, dict) and isinstance(measured.get("share"), int | float):
                shares[int(measured["weight"])] = float(measured["share"])
            state.phase = str(status.get("phase", ""))
            state.step = str(status.get("step", ""))
            state.weight = status.get("weight")
            state.verdict = str(verdict or "")
        if changes:
            window = _counting_window(changes, state.phase, canary_cluster)
            tally = load.tally(*window.span)
            state.share, state.connections, state.errors = tally.canary_share, tally.connections, tally.errors
            state.counted_weight = window.weight
        state.elapsed = now - began
        if (
            options.fault_at is not None
            and fault_at is None
            and changes
            and _canary_weight(changes[-1], canary_cluster) >= options.fault_at
            and changes[-1].confirmed_at is not None
        ):
            sandbox.v2.refuse()
            fault_at = time.monotonic()
            state.note = f"v2 refuses connections since {fault_at - began:.1f} s"
        on_update(state)
        if status is not None and status.get("phase") in TERMINAL and _settled(sandbox, status, fault_at):
            break
        time.sleep(0.2)
    result = _result(sandbox, status, verdicts, fault_at, original_route, time.monotonic() - began, initial_changes)
    for step in result.steps:
        step.prometheus_canary_share = shares.get(step.weight)
    result.policy = sandbox.policy
    return result


RESTORING = {"RollingBack", "RolledBack", "Aborted", "Failed"}


@dataclass(frozen=True)
class _Window:
    span: tuple[float, float | None]
    weight: int


def _counting_window(changes: list[RouteChange], phase: str, canary: str) -> _Window:
    """Which client connections the live view counts: those since the current step's route took effect.

    Once the original route is restored (weight 0 after a step with canary traffic), the restore is not a
    step: the counts stay those of the step that failed, up to the restore's write, so the panel agrees
    with the verdict that caused it.
    """
    last = changes[-1]
    if phase in RESTORING and len(changes) >= 2 and _canary_weight(last, canary) == 0:
        failed = changes[-2]
        if _canary_weight(failed, canary) > 0:
            end = last.written_at or last.seen_at
            return _Window((failed.confirmed_at or failed.seen_at, end), _canary_weight(failed, canary))
    return _Window((last.confirmed_at or last.seen_at, None), _canary_weight(last, canary))


def _advanced_to(status: dict[str, Any], index: int) -> bool:
    """Whether the status's history says the rollout reached step ``index`` by advancing (``StepAdvanced``)."""
    prefix = f"step {index + 1}/"
    return any(
        isinstance(entry, dict)
        and entry.get("reason") == "StepAdvanced"
        and str(entry.get("message", "")).startswith(prefix)
        for entry in status.get("history") or []
    )


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _settled(sandbox: Sandbox, status: dict[str, Any], fault_at: float | None) -> bool:
    """The outcome is final and observable: Envoy runs the final route, and a rollback's alert arrived."""
    assert sandbox.sync is not None
    assert sandbox.alertmanager is not None
    route = sandbox.route_object()
    # By generation: istiod's status writes give the route new resourceVersions at the same generation.
    generation = (route or {}).get("metadata", {}).get("generation")
    if not isinstance(generation, int) or not sandbox.sync.confirmed(generation):
        return False
    if status.get("phase") == "RolledBack" or fault_at is not None:
        return bool(sandbox.alertmanager.alerts(f'policy="{POLICY_NAME}"'))
    return True


def _result(
    sandbox: Sandbox,
    status: dict[str, Any] | None,
    verdicts: dict[int, str],
    fault_at: float | None,
    original_route: Any,
    seconds: float,
    initial_changes: int,
) -> DemoResult:
    options = sandbox.options
    assert sandbox.sync is not None
    assert sandbox.load is not None
    assert sandbox.envoy is not None
    assert sandbox.alertmanager is not None
    assert sandbox.prometheus is not None
    _, canary_cluster = clusters(options.variant)
    changes = [c for c in sandbox.sync.history[initial_changes:] if c.confirmed_at is not None]
    phase = str((status or {}).get("phase", ""))
    restore_index: int | None = None
    if fault_at is not None or phase == "RolledBack":
        for i, change in enumerate(changes):
            if _canary_weight(change, canary_cluster) == 0 and i > 0:
                restore_index = i
    steps: list[StepResult] = []
    step_changes = changes[:restore_index] if restore_index is not None else changes
    for i, change in enumerate(step_changes):
        # From Envoy confirming this weight to the next config's file write: Envoy may apply a new config a
        # little before the admin poll confirms it, so connections after the next write are not counted here.
        start = change.confirmed_at or change.seen_at
        following = changes[i + 1] if i + 1 < len(changes) else None
        end = None if following is None else (following.written_at or following.seen_at)
        tally = sandbox.load.tally(start, end)
        weight = _canary_weight(change, canary_cluster)
        index = STEPS.index(weight) if weight in STEPS else -1
        steps.append(
            StepResult(
                weight=weight,
                connections=tally.connections,
                canary_replies=tally.v2,
                observed_canary_share=tally.canary_share,
                errors=tally.errors,
                verdict=verdicts.get(index),
            )
        )
    latency: dict[str, float | None] | None = None
    after_reload: int | None = None
    if restore_index is not None and fault_at is not None:
        onset_reply = sandbox.load.first_error(fault_at)
        onset = onset_reply.started if onset_reply is not None else fault_at
        restore = changes[restore_index]
        api_time = _api_write_time(sandbox, restore)
        latency = {
            "api": None if api_time is None else round(api_time - onset, 3),
            "envoy": None if restore.confirmed_at is None else round(restore.confirmed_at - onset, 3),
        }
        visible = _first_scraped_failure(sandbox.prometheus, canary_cluster)
        if visible is not None:
            latency["scraped"] = round(visible - onset, 3)
        # Nothing reaches v2 after the reload: Envoy's own count of connections it opened to v2.
        before = sandbox.envoy.stats(canary_cluster).upstream_cx_total
        time.sleep(max(1.0, 2.0 / options.rate))
        after_reload = sandbox.envoy.stats(canary_cluster).upstream_cx_total - before
    final_route = route_of(sandbox.route_object(), options.variant)
    alerts = [
        {"labels": alert.get("labels", {}), "annotations": alert.get("annotations", {})}
        for alert in sandbox.alertmanager.alerts(f'policy="{POLICY_NAME}"')
    ]
    outcome: Literal["promoted", "rolled_back", "failed", "unfinished"]
    outcome = {"Promoted": "promoted", "RolledBack": "rolled_back", "Failed": "failed"}.get(  # type: ignore[assignment]
        phase, "unfinished"
    )
    return DemoResult(
        outcome=outcome,
        steps=steps,
        rollback_latency_seconds=latency,
        final_route=final_route,
        original_route=original_route,
        alerts=alerts,
        versions={
            "envoy": envoy_version(),
            "prometheus": sandbox.prometheus.version(),
            "alertmanager": sandbox.alertmanager.version(),
        },
        v2_connections_after_reload=after_reload,
        phase_message=str((status or {}).get("message", "")),
        seconds=seconds,
    )


def _first_scraped_failure(prometheus: PrometheusProcess, cluster: str) -> float | None:
    """When Prometheus first scraped a connect failure of ``cluster`` (monotonic s), from its raw samples."""
    selector = f'envoy_cluster_upstream_cx_connect_fail{{envoy_cluster_name="{cluster}"}}[10m]'
    try:
        series = prometheus.api("query", query=selector)["result"]
    except SandboxError:
        return None
    stamps = [float(ts) for entry in series for ts, value in entry.get("values", []) if float(value) > 0]
    if not stamps:
        return None
    return min(stamps) - (time.time() - time.monotonic())


ROUTE_RESOURCES = ("virtualservices.", "tcproutes.")


def _api_write_time(sandbox: Sandbox, change: RouteChange) -> float | None:
    """When the API accepted the write that produced ``change``'s route (the emulator's write history): the
    spec write that made its generation (status writes keep the generation), else the write of its
    resourceVersion."""
    assert sandbox.emulator is not None
    for record in sandbox.emulator.history(namespace=NAMESPACE, name=ROUTE_NAME):
        if not record.changed or record.subresource == "status" or not record.resource.startswith(ROUTE_RESOURCES):
            continue
        if change.generation is not None and record.object.get("metadata", {}).get("generation") == change.generation:
            return record.time
        if change.generation is None and record.resource_version == change.resource_version:
            return record.time
    return None


def policy_text(policy: dict[str, Any], *, who: str = "canaryctl demo runs") -> str:
    """The policy the demo runs, as the YAML it writes for the controller, under a line saying what it is."""
    head = (
        f"# {who} this CanaryPolicy: the seed policy (policies/tcp-echo.yaml) with short steps,\n"
        "# Envoy's connect-error metric (the sandbox has no Istio sidecars), a minConnections that fits the\n"
        "# demo's traffic, and the local Prometheus and Alertmanager.\n"
    )
    return head + yaml.safe_dump(policy, sort_keys=False)


class LineReporter:
    """Progress for logs and pipes: one line per phase change, per step, and when the fault starts.

    A line for a new step also gives the client's counts at the step just left, as last seen.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._last: LiveState | None = None

    def _say(self, text: str) -> None:
        self._stream.write(text + "\n")
        self._stream.flush()

    def policy(self, policy: dict[str, Any]) -> None:
        """Print the policy once, before the rollout starts."""
        self._say(policy_text(policy).rstrip("\n"))

    def update(self, state: LiveState) -> None:
        """Print a line when the phase or the step changed since the last update, or the fault started."""
        last = self._last
        self._last = copy.copy(state)
        fault = state.note and (last is None or last.note != state.note)
        if last is not None and (last.phase, last.step) == (state.phase, state.step):
            if fault:
                self._say(f"[{state.elapsed:6.1f} s] fault: {state.note}")
            return
        line = f"[{state.elapsed:6.1f} s] {state.phase}"
        if state.step:
            line += f"  step {state.step}"
        if state.weight is not None:
            line += f"  weight {state.weight} %"
        if last is not None and last.step and last.step != state.step and last.counted_weight is not None:
            line += f"  (at {last.counted_weight} %: {_counts(last)})"
        if state.phase in TERMINAL_ALL and state.verdict:
            line += f"  last verdict: {state.verdict}"
        self._say(line)
        if fault:
            self._say(f"[{state.elapsed:6.1f} s] fault: {state.note}")


TERMINAL_ALL = TERMINAL | {"Aborted"}


def _counts(state: LiveState) -> str:
    share = "-" if state.share is None else f"{state.share:.1%}"
    return f'{state.connections} connections, {state.errors} errors, "two" share {share}'


class LiveReporter:
    """A rich live table on a terminal, redrawn with each :class:`LiveState`; the policy printed above it."""

    def __init__(self, live: Any, console: Any) -> None:
        self._live = live
        self._console = console

    def policy(self, policy: dict[str, Any]) -> None:
        """Print the policy above the live table."""
        self._console.print(policy_text(policy), markup=False, highlight=False, end="")

    def update(self, state: LiveState) -> None:
        """Redraw the table."""
        self._live.update(render_panel(state))


def render_panel(state: LiveState) -> Any:
    """The live table for one state: every row agrees with the others, and the verdict is never cut."""
    from rich.table import Table  # noqa: PLC0415 (only the demo needs rich)

    table = Table(title="canaryctl demo: tcp-echo v1 -> v2", show_header=False, min_width=60)
    share = "-" if state.share is None else f"{state.share:.1%}"
    where = "this step" if state.counted_weight is None else f"at {state.counted_weight} %"
    rows = [
        ("phase", state.phase),
        ("step", state.step or "-"),
        ("target weight", "-" if state.weight is None else f"{state.weight} %"),
        (f'client: "two" share ({where})', share),
        (f"client: connections ({where})", str(state.connections)),
        (f"client: errors ({where})", str(state.errors)),
        ("last verdict (Prometheus)", state.verdict or "-"),
        ("time", f"{state.elapsed:.1f} s"),
    ]
    if state.note:
        rows.append(("fault", state.note))
    for key, value in rows:
        table.add_row(key, value)
    return table


@contextlib.contextmanager
def progress_view(stream: TextIO, *, live: bool) -> Iterator[LiveReporter | LineReporter]:
    """The demo's progress on ``stream`` (stderr): a live table when ``live``, else one line per change."""
    if not live:
        yield LineReporter(stream)
        return
    from rich.console import Console  # noqa: PLC0415 (only the demo needs rich's live view)
    from rich.live import Live  # noqa: PLC0415

    console = Console(file=stream)
    with Live(render_panel(LiveState()), console=console, refresh_per_second=4, transient=False) as table:
        yield LiveReporter(table, console)
