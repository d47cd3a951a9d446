"""The composition root: settings -> adapters -> the controller. Nothing else builds adapters."""

from __future__ import annotations

import logging
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Callable
from types import FrameType

from pydantic import ValidationError

from controller import __version__
from controller.adapters.alerts import HttpAlertDelivery
from controller.adapters.kubernetes.api import KubeApi, load_api_client
from controller.adapters.kubernetes.events import KubernetesEventRecorder
from controller.adapters.kubernetes.leases import LeaderElector, LeaseLock
from controller.adapters.kubernetes.secrets import SecretReader
from controller.adapters.kubernetes.status import ConfigMapStatusStore, CrdStatusStore
from controller.adapters.kubernetes.traffic import KubernetesTrafficRouter
from controller.adapters.kubernetes.workloads import KubernetesWorkloadReader
from controller.adapters.policy_sources import (
    CrdPolicySource,
    DirectoryPolicySource,
    file_problem_object,
    merge_snapshots,
)
from controller.adapters.prometheus import PrometheusMetricsSource
from controller.core.admission import TenantRules
from controller.core.policy import PrometheusSpec
from controller.errors import CanaryError
from controller.ports import AnalysisSource, InvolvedObject, PolicyRef, PolicySource, SourceProblem
from controller.runtime import logs
from controller.runtime.daemon import Controller, SystemClock
from controller.runtime.http import HealthServer
from controller.runtime.leadership import ElectionThread, FencedEvents, FencedRouter, FencedStatusStore
from controller.runtime.metrics import ControllerMetrics
from controller.runtime.store_health import StoreHealth
from controller.runtime.writers import GuardedStatusStore, WriterGuard, events_about
from controller.service.admission import mark_problem, screen
from controller.service.alerting import AlertDispatcher
from controller.service.prometheus_analysis import PrometheusAnalysis
from controller.service.reconcile import Dependencies
from controller.settings import Settings

log = logging.getLogger("controller")


def load_settings() -> Settings:
    """Settings from the environment; exits with a message naming each invalid setting."""
    try:
        return Settings()
    except ValidationError as exc:
        for error in exc.errors():
            if not error["loc"]:  # a rule across several settings: its message names them
                print(f"invalid settings: {error['msg']}", file=sys.stderr)
                continue
            name = "CANARY_" + "_".join(str(part) for part in error["loc"]).upper()
            print(f"invalid setting {name}: {error['msg']} (got {error.get('input')!r})", file=sys.stderr)
        raise SystemExit(2) from None


def default_prometheus(settings: Settings) -> PrometheusSpec | None:
    """The controller-wide Prometheus credentials, headers and TLS settings, if any is set."""
    fields: dict[str, object] = {}
    if settings.prometheus_bearer_token_env:
        fields["bearerToken"] = {"env": settings.prometheus_bearer_token_env}
    if settings.prometheus_basic_auth_username and settings.prometheus_basic_auth_password_env:
        fields["basicAuth"] = {
            "username": settings.prometheus_basic_auth_username,
            "password": {"env": settings.prometheus_basic_auth_password_env},
        }
    if settings.prometheus_headers:
        fields["headers"] = settings.prometheus_headers
    if settings.prometheus_ca_bundle_env:
        fields["caBundle"] = {"env": settings.prometheus_ca_bundle_env}
    if settings.prometheus_insecure_skip_verify:
        fields["insecureSkipVerify"] = True
    return PrometheusSpec.model_validate(fields) if fields else None


def tenant_rules(settings: Settings) -> TenantRules:
    """What CanaryPolicy resources may reference (policy files are the operator's and not limited)."""
    return TenantRules(
        default_prometheus_url=settings.prometheus_url,
        prometheus_urls=tuple(settings.policy_prometheus_urls),
        env_names=frozenset(settings.policy_env_allowed),
    )


def build_controller(settings: Settings, *, analysis: AnalysisSource | None = None) -> Controller:
    """Wire every adapter from ``settings``; with leader election, ``controller.election`` must be started."""
    metrics = ControllerMetrics()
    identity = settings.identity or f"{socket.gethostname()}_{uuid.uuid4()}"

    def api(kubeconfig: str | None, context: str | None) -> KubeApi:
        client = load_api_client(kubeconfig=kubeconfig, context=context)
        # The API server's audit log (and the emulator's write history) tells replicas apart by this.
        client.user_agent = f"canary-controller/{__version__} ({identity})"
        return KubeApi(client, timeout_seconds=settings.api_timeout_seconds, on_error=metrics.api_error)

    main = api(settings.kubeconfig, settings.context)
    mesh = api(settings.mesh_kubeconfig, settings.mesh_context) if settings.separate_mesh else main
    elector: LeaderElector | None = None
    if settings.leader_elect:
        elector = LeaderElector(
            LeaseLock(main, namespace=settings.namespace, name=settings.lease_name),
            identity=identity,
            lease_duration=settings.lease_duration_seconds,
            renew_deadline=settings.renew_deadline_seconds,
            retry_period=settings.retry_period_seconds,
            on_started_leading=lambda: metrics.leader.set(1),
            on_stopped_leading=lambda: metrics.leader.set(0),
        )
    # Without election there is one replica, always leading (the chart then runs one replica).
    is_leader: Callable[[], bool] = elector.is_leader if elector is not None else (lambda: True)
    # Every write of rollout state is fenced: a replica that loses the lease stops writing at once.
    router = FencedRouter(KubernetesTrafficRouter(mesh), is_leader)
    workloads = KubernetesWorkloadReader(main)
    events = FencedEvents(KubernetesEventRecorder(main), is_leader)
    prometheus = PrometheusMetricsSource(
        default_url=settings.prometheus_url,
        default_timeout_seconds=settings.prometheus_timeout_seconds,
        secrets=SecretReader(kube=main),
        default_spec=default_prometheus(settings),
    )
    chosen_analysis = analysis or PrometheusAnalysis(
        prometheus,
        group_seconds=settings.prometheus_group_seconds,
        scrape_interval_seconds=settings.scrape_interval_seconds,
    )
    sources: list[PolicySource] = []
    if settings.policy_dir is not None:
        sources.append(DirectoryPolicySource(settings.policy_dir))
    if settings.watch_crds:
        sources.append(
            CrdPolicySource(main, namespaces=settings.watch_namespaces or None, label_selector=settings.policy_selector)
        )
    # Status writes are stamped with this daemon; another writer seen in a status is reported (and, with
    # election off, exactly one of the two stops writing the policy): issue 12, item 4.
    guard = WriterGuard(
        identity=identity,
        elected=settings.leader_elect,
        lease_duration=settings.lease_duration_seconds,
        events=events,
        involved_for=events_about(sources, controller_namespace=settings.namespace),
        metrics=metrics,
    )
    # Inside the fence: only the leader's writes tell whether a store can be written (/readyz, log).
    health = StoreHealth()
    crd_store = FencedStatusStore(
        health.watch(
            "CanaryPolicy", GuardedStatusStore(CrdStatusStore(main), guard, is_leader=is_leader), not_found=False
        ),
        is_leader,
    )
    file_store = FencedStatusStore(
        health.watch(
            f"file-mode (namespace {settings.namespace})",
            GuardedStatusStore(ConfigMapStatusStore(main, namespace=settings.namespace), guard, is_leader=is_leader),
        ),
        is_leader,
    )

    def dependencies_for(ref: PolicyRef) -> Dependencies:
        return Dependencies(
            router=router,
            store=crd_store if ref.source == "crd" else file_store,
            workloads=workloads,
            events=events,
            analysis=chosen_analysis,
        )

    def on_problem(problem: SourceProblem) -> None:
        if problem.source == "crd" and problem.namespace and problem.name:
            events.record(
                involved=InvolvedObject("CanaryPolicy", "canaryctl.dev/v1alpha1", problem.namespace, problem.name),
                reason=problem.reason,
                message=problem.message,
                event_type="Warning",
            )
            mark_problem(crd_store, problem, now=SystemClock().now())
        elif problem.source == "file":
            events.record(
                involved=file_problem_object(problem, controller_namespace=settings.namespace),
                reason=problem.reason,
                message=f"{problem.location}: {problem.message}",
                event_type="Warning",
            )

    rules = tenant_rules(settings)

    dispatcher = AlertDispatcher(
        delivery=HttpAlertDelivery(secrets=SecretReader(kube=main)),
        store_for=lambda ref: crd_store if ref.source == "crd" else file_store,
        clock=SystemClock(),
        prometheus_url=settings.prometheus_url,
        on_outcome=metrics.alert_outcome,
        default_routes=settings.alerts,
    )
    controller = Controller(
        sources=sources,
        merge=lambda *snapshots: screen(merge_snapshots(*snapshots), rules),
        dependencies_for=dependencies_for,
        workers=settings.workers,
        tick_seconds=settings.tick_seconds,
        on_problem=on_problem,
        dispatcher=dispatcher,
        metrics=metrics,
        is_leader=is_leader,
    )
    if elector is not None:
        controller.election = ElectionThread(step=elector.step, release=elector.release, next_delay=elector.next_delay)
        controller.readiness["leader election"] = lambda: _election_ready(elector)
    controller.readiness["kubernetes"] = lambda: _kubernetes_ready(main)
    controller.readiness["status store"] = lambda: health.problem() if is_leader() else None
    if settings.prometheus_url:
        # Through the analysis's own connection: its token, headers and CA bundle.
        controller.readiness["prometheus"] = prometheus.ready
    return controller


def _kubernetes_ready(api: KubeApi) -> str | None:
    try:
        api.call(
            lambda: api.core.get_api_resources(_request_timeout=3),
            verb="get",
            resource="apiresources",
            group="",
            namespace="",
        )
    except CanaryError as exc:
        return str(exc)
    return None


def _election_ready(elector: LeaderElector) -> str | None:
    """Ready when leading, or a standby that has reached the Lease recently (a healthy standby)."""
    if elector.is_leader():
        return None
    age = elector.contact_age()
    if age is not None and age < elector.lease_duration:
        return None
    return f"standby without contact with the Lease for too long: {elector.last_error or 'no answer yet'}"


class Daemon:
    """The controller with its HTTP endpoints and leader election: what ``canaryctl run`` runs.

    ``serve()`` blocks until ``stop()``; ``start()`` serves from a background thread instead (the sandbox
    runs the controller in-process this way, through the very same code path).
    """

    def __init__(self, settings: Settings, *, analysis: AnalysisSource | None = None) -> None:
        self.settings = settings
        self.controller = build_controller(settings, analysis=analysis)
        metrics = self.controller.metrics
        assert metrics is not None
        if self.controller.election is None:
            metrics.leader.set(1)
        self.server = HealthServer(
            metrics=metrics,
            heartbeat=lambda: self.controller.heartbeat,
            checks=self.controller.readiness,
            max_heartbeat_age=max(30.0, 3 * settings.tick_seconds),
            host=settings.http_host,
            port=settings.http_port,
            timeout_seconds=settings.http_timeout_seconds,
            max_connections=settings.http_max_connections,
        )
        self._thread: threading.Thread | None = None

    def serve(self) -> None:
        """Serve until ``stop()``: endpoints, election, ticks; on the way out hand the lease over."""
        controller = self.controller
        self.server.start()
        log.info("serving /healthz, /readyz and /metrics on %s:%d", self.settings.http_host, self.server.port)
        log.info("controller started", extra={"source": ",".join(type(s).__name__ for s in controller.sources)})
        if controller.election is not None:
            controller.election.start()
        try:
            controller.run_forever()
        finally:
            if controller.election is not None:
                # In-flight passes have finished (run_forever waited); hand the lease over at once.
                controller.election.stop(release=True)
            self.server.stop()
        log.info("controller stopped")

    def start(self) -> Daemon:
        """``serve()`` in a background thread."""
        self._thread = threading.Thread(target=self.serve, name="canary-daemon", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking work; with ``start()``, wait for the thread (in-flight passes finish first)."""
        self.controller.stop()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


def run(*, analysis: AnalysisSource | None = None) -> None:
    """``canaryctl run``: build from the environment, run until SIGTERM/SIGINT, exit within 10 s."""
    settings = load_settings()
    logs.configure(settings.log_level)
    daemon = Daemon(settings, analysis=analysis)

    def stop(signum: int, frame: FrameType | None) -> None:
        del frame
        log.info("signal %s: stopping", signal.Signals(signum).name)
        daemon.controller.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    daemon.serve()
