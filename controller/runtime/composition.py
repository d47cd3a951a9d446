"""The composition root: settings -> adapters -> the controller. Nothing else builds adapters."""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

import httpx
from pydantic import ValidationError

from controller.adapters.alert_delivery import HttpAlertDelivery
from controller.adapters.kubernetes.api import KubeApi, load_api_client
from controller.adapters.kubernetes.events import KubernetesEventRecorder
from controller.adapters.kubernetes.status import ConfigMapStatusStore, CrdStatusStore
from controller.adapters.kubernetes.traffic import KubernetesTrafficRouter
from controller.adapters.kubernetes.workloads import KubernetesWorkloadReader
from controller.adapters.policy_sources import CrdPolicySource, DirectoryPolicySource, merge_snapshots
from controller.adapters.prometheus import PrometheusMetricsSource, SecretReader
from controller.core.policy import PrometheusSpec
from controller.errors import CanaryError
from controller.ports import AnalysisSource, InvolvedObject, PolicyRef, PolicySource, SourceProblem
from controller.runtime import logs
from controller.runtime.daemon import Controller, SystemClock
from controller.runtime.http import HealthServer
from controller.runtime.metrics import ControllerMetrics
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


def build_controller(settings: Settings, *, analysis: AnalysisSource | None = None) -> Controller:
    """Wire every adapter from ``settings``."""
    metrics = ControllerMetrics()
    main = KubeApi(
        load_api_client(kubeconfig=settings.kubeconfig, context=settings.context),
        timeout_seconds=settings.api_timeout_seconds,
        on_error=metrics.api_error,
    )
    mesh = (
        KubeApi(
            load_api_client(kubeconfig=settings.mesh_kubeconfig, context=settings.mesh_context),
            timeout_seconds=settings.api_timeout_seconds,
            on_error=metrics.api_error,
        )
        if settings.separate_mesh
        else main
    )
    router = KubernetesTrafficRouter(mesh)
    crd_store = CrdStatusStore(main)
    file_store = ConfigMapStatusStore(main, namespace=settings.namespace)
    workloads = KubernetesWorkloadReader(main)
    events = KubernetesEventRecorder(main)
    chosen_analysis = analysis or PrometheusAnalysis(
        PrometheusMetricsSource(
            default_url=settings.prometheus_url,
            default_timeout_seconds=settings.prometheus_timeout_seconds,
            secrets=SecretReader(kube=main),
            default_spec=default_prometheus(settings),
        )
    )
    sources: list[PolicySource] = []
    if settings.policy_dir is not None:
        sources.append(DirectoryPolicySource(settings.policy_dir))
    if settings.watch_crds:
        sources.append(CrdPolicySource(main, namespaces=settings.watch_namespaces or None))

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
                reason="InvalidPolicy",
                message=problem.message,
                event_type="Warning",
            )

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
        merge=merge_snapshots,
        dependencies_for=dependencies_for,
        workers=settings.workers,
        tick_seconds=settings.tick_seconds,
        on_problem=on_problem,
        dispatcher=dispatcher,
        metrics=metrics,
    )
    controller.readiness["kubernetes"] = lambda: _kubernetes_ready(main)
    if settings.prometheus_url:
        url = settings.prometheus_url
        controller.readiness["prometheus"] = lambda: _prometheus_ready(url)
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


def _prometheus_ready(url: str) -> str | None:
    try:
        answer = httpx.get(f"{url.rstrip('/')}/-/ready", timeout=3)
    except httpx.HTTPError as exc:
        return f"Prometheus unreachable: {type(exc).__name__}"
    return None if answer.status_code == 200 else f"Prometheus /-/ready answered {answer.status_code}"


def run(*, analysis: AnalysisSource | None = None) -> None:
    """``canaryctl run``: build from the environment, run until SIGTERM/SIGINT, exit within 10 s."""
    settings = load_settings()
    logs.configure(settings.log_level)
    controller = build_controller(settings, analysis=analysis)
    assert controller.metrics is not None
    controller.metrics.leader.set(1)  # one active replica until leader election lands (issue 6)
    server = HealthServer(
        metrics=controller.metrics,
        heartbeat=lambda: controller.heartbeat,
        checks=controller.readiness,
        max_heartbeat_age=max(30.0, 3 * settings.tick_seconds),
        host=settings.http_host,
        port=settings.http_port,
    )
    server.start()
    log.info("serving /healthz, /readyz and /metrics on %s:%d", settings.http_host, server.port)

    def stop(signum: int, frame: FrameType | None) -> None:
        del frame
        log.info("signal %s: stopping", signal.Signals(signum).name)
        controller.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("controller started", extra={"source": ",".join(type(s).__name__ for s in controller.sources)})
    try:
        controller.run_forever()
    finally:
        server.stop()
    log.info("controller stopped")
