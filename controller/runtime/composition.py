"""The composition root: settings -> adapters -> the reconcile loop -> the daemon.

Nothing else builds adapters: ``canaryctl run`` runs :func:`run`, and the CLI's other commands ask here
for the Kubernetes API (:func:`open_kube_api`) and the Prometheus connection (:func:`replay_metrics`) they use.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from pydantic import ValidationError

from controller import __version__
from controller.adapters.alerts import HttpAlertDelivery
from controller.adapters.kubernetes.api import CONFIGMAPS, DEPLOYMENTS, KubeApi, load_api_client
from controller.adapters.kubernetes.events import KubernetesEventRecorder
from controller.adapters.kubernetes.informer import Informer, Informers
from controller.adapters.kubernetes.leases import LeaderElector, LeaseLock
from controller.adapters.kubernetes.secrets import SecretReader
from controller.adapters.kubernetes.status import (
    LABEL_NAME,
    LABEL_NAMESPACE,
    ConfigMapStatusStore,
    CrdStatusStore,
)
from controller.adapters.kubernetes.traffic import KINDS, KubernetesTrafficRouter
from controller.adapters.kubernetes.workloads import KubernetesWorkloadReader
from controller.adapters.policy_sources import (
    CrdPolicySource,
    DirectoryPolicySource,
    file_problem_object,
    merge_snapshots,
    validated_part,
)
from controller.adapters.prometheus import PrometheusMetricsSource
from controller.core.admission import TenantRules
from controller.core.policy import PrometheusSpec
from controller.dashboard.auth import LocalGate, ReviewGate
from controller.dashboard.data import DashboardData
from controller.dashboard.server import DashboardConfig, DashboardServer
from controller.errors import CanaryError
from controller.ports import AnalysisSource, InvolvedObject, PolicyRef, PolicySource, SourceProblem
from controller.runtime import logs
from controller.runtime.daemon import Daemon, tune_gc
from controller.runtime.http import HealthServer
from controller.runtime.leadership import ElectionThread, FencedEvents, FencedRouter, FencedStatusStore
from controller.runtime.loop import ReconcileLoop, SystemClock
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


def build_loop(settings: Settings, *, analysis: AnalysisSource | None = None) -> ReconcileLoop:
    """Wire every adapter from ``settings``; with leader election, ``loop.election`` must be started."""
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
    # Watch caches, each started when first needed (a cluster without TCPRoutes never lists them); their
    # events queue the policies they concern (wired to the loop below).
    namespaces = list(settings.watch_namespaces) or None
    caches = Informers()
    route_cache = workload_cache = None
    if settings.watch_cache:
        route_cache = caches.lazy(lambda kind: Informer(mesh, KINDS[kind], namespaces=namespaces, start=False))
        workload_cache = caches.lazy(lambda _: Informer(main, DEPLOYMENTS, namespaces=namespaces, start=False))
    # Every write of rollout state is fenced: a replica that loses the lease stops writing at once.
    router = FencedRouter(KubernetesTrafficRouter(mesh, cache_for=route_cache), is_leader)
    workloads = KubernetesWorkloadReader(
        main, cache_for=(lambda: workload_cache("Deployment")) if workload_cache is not None else None
    )
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
    crd_source: CrdPolicySource | None = None
    if settings.watch_crds:
        crd_source = CrdPolicySource(main, namespaces=namespaces, label_selector=settings.policy_selector)
        sources.append(crd_source)
    status_cache: Informer | None = None
    if settings.watch_cache and settings.policy_dir is not None:
        status_cache = caches.add(Informer(main, CONFIGMAPS, namespaces=[settings.namespace], start=False))
        # It starts once _feed below has added its handler.
    policy_cache = crd_source.informer if crd_source is not None and settings.watch_cache else None
    # Status writes are stamped with this daemon; another writer seen in a status is reported (and, with
    # election off, exactly one of the two stops writing the policy).
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
            "CanaryPolicy",
            GuardedStatusStore(CrdStatusStore(main, cache=policy_cache), guard, is_leader=is_leader),
            not_found=False,
        ),
        is_leader,
    )
    file_store = FencedStatusStore(
        health.watch(
            f"file-mode (namespace {settings.namespace})",
            GuardedStatusStore(
                ConfigMapStatusStore(main, namespace=settings.namespace, cache=status_cache),
                guard,
                is_leader=is_leader,
            ),
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
    loop = ReconcileLoop(
        sources=sources,
        merge=lambda *snapshots: screen(merge_snapshots(*snapshots), rules),
        dependencies_for=dependencies_for,
        workers=settings.workers,
        tick_seconds=settings.tick_seconds,
        on_problem=on_problem,
        dispatcher=dispatcher,
        metrics=metrics,
        is_leader=is_leader,
        resync_seconds=settings.resync_seconds,
        status_refresh_writes_per_second=settings.status_refresh_writes_per_second,
    )
    _feed(loop, caches, status_cache=status_cache, policy_cache=policy_cache, instance=guard.me.instance)
    loop.on_tick.append(
        lambda: metrics.observe_caches([*caches.all(), *([policy_cache] if policy_cache is not None else [])])
    )
    if elector is not None:
        loop.election = ElectionThread(
            step=elector.step,
            release=elector.release,
            next_delay=elector.next_delay,
            is_leader=elector.is_leader,
            on_leading=loop.took_leadership,  # a new leader looks at every policy now, not at the next tick
        )
        loop.readiness["leader election"] = lambda: _election_ready(elector)
    loop.readiness["kubernetes"] = lambda: _kubernetes_ready(main)
    loop.readiness["status store"] = lambda: health.problem() if is_leader() else None
    if settings.prometheus_url:
        # Through the analysis's own connection: its token, headers and CA bundle.
        loop.readiness["prometheus"] = prometheus.ready
    return loop


def _writer_instance(status: object) -> str | None:
    """The ``instance`` of a stored status's writer stamp (None without one)."""
    writer = status.get("writer") if isinstance(status, dict) else None
    instance = writer.get("instance") if isinstance(writer, dict) else None
    return str(instance) if instance else None


def _annotations(obj: Any) -> Any:
    return ((obj or {}).get("metadata") or {}).get("annotations")


def _own_status_write(old: Any, new: Any, status_of: Callable[[Any], object], instance: str) -> bool:
    """Whether a change is only this process's own status write (its watch event may come back before the
    write's answer is written through): nothing a pass has not already seen, so it queues nothing."""
    if old is None or new is None or _annotations(old) != _annotations(new):
        return False  # created, deleted, or a command (commands live in the annotations)
    return _writer_instance(status_of(new)) == instance


def _configmap_status(obj: Any) -> object:
    raw = ((obj or {}).get("data") or {}).get("status")
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _feed(
    loop: ReconcileLoop,
    caches: Informers,
    *,
    status_cache: Informer | None,
    policy_cache: Informer | None,
    instance: str,
) -> None:
    """Queue the policies each watch event concerns; the caches start with the loop and stop with it."""

    def route_changed(kind: str) -> Callable[[str, tuple[str, str], Any, Any], None]:
        return lambda _type, key, _old, _new: loop.touch_target(kind, *key)

    caches.on_create(
        lambda name, informer: informer.add_handler(
            (lambda _type, key, _old, _new: loop.touch_workload(*key)) if name == "Deployment" else route_changed(name)
        )
    )
    if status_cache is not None:

        def status_changed(_type: str, key: tuple[str, str], old: Any, new: Any) -> None:
            labels = ((new or old or {}).get("metadata") or {}).get("labels") or {}
            if LABEL_NAME not in labels or LABEL_NAMESPACE not in labels:
                return
            if not _own_status_write(old, new, _configmap_status, instance):
                loop.touch((str(labels[LABEL_NAMESPACE]), str(labels[LABEL_NAME])))

        status_cache.add_handler(status_changed)
        status_cache.start()
    if policy_cache is not None:

        def policy_changed(_type: str, key: tuple[str, str], old: Any, new: Any) -> None:
            if old is None or new is None or validated_part(old) != validated_part(new):
                # A new, deleted or edited policy (commands included): take the source's new snapshot now,
                # which queues what changed, instead of waiting for the tick.
                loop.sync()
            elif not _own_status_write(old, new, lambda obj: (obj or {}).get("status"), instance):
                loop.touch(key)

        policy_cache.add_handler(policy_changed)
    loop.on_close.append(caches.close)


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


def build_daemon(settings: Settings, *, analysis: AnalysisSource | None = None) -> Daemon:
    """The reconcile loop of :func:`build_loop` with its HTTP endpoints: what ``canaryctl run`` serves."""
    loop = build_loop(settings, analysis=analysis)
    metrics = loop.metrics
    assert metrics is not None
    if loop.election is None:
        metrics.leader.set(1)
    server = HealthServer(
        metrics=metrics,
        heartbeat=lambda: loop.heartbeat,
        checks=loop.readiness,
        max_heartbeat_age=max(30.0, 3 * settings.tick_seconds),
        host=settings.http_host,
        port=settings.http_port,
        timeout_seconds=settings.http_timeout_seconds,
        max_connections=settings.http_max_connections,
    )
    return Daemon(loop, server, host=settings.http_host, dashboard=cluster_dashboard(settings))


def cluster_dashboard(settings: Settings) -> DashboardServer | None:
    """The daemon's read-only dashboard when ``CANARY_DASHBOARD=true``: every request reviewed by the API
    server (TokenReview, then SubjectAccessReview per namespace); None when off."""
    if not settings.dashboard:
        return None
    api = KubeApi(
        load_api_client(kubeconfig=settings.kubeconfig, context=settings.context),
        timeout_seconds=settings.api_timeout_seconds,
    )
    namespaces = list(settings.watch_namespaces) or None
    data = DashboardData(
        api=api,
        controller_namespace=settings.namespace,
        namespaces=namespaces,
        prometheus_url=settings.prometheus_url,
        http=httpx.Client(timeout=settings.prometheus_timeout_seconds),
        file_policies=DirectoryPolicySource(settings.policy_dir) if settings.policy_dir is not None else None,
    )
    config = DashboardConfig(mode="cluster", namespaces=namespaces, tick_seconds=2.0)
    return DashboardServer(
        (settings.http_host, settings.dashboard_port), data=data, config=config, gate=ReviewGate(api)
    )


def open_kube_api(*, kubeconfig: str | None = None, context: str | None = None) -> KubeApi:
    """The Kubernetes API for one ``canaryctl`` command (status, pause, resume...), from the usual kubeconfig
    resolution (``KUBECONFIG``, ``~/.kube/config``, then in-cluster); close it with ``close_kube_api``.

    Raises:
        KubeconfigError: the configuration cannot be loaded.
    """
    return KubeApi(load_api_client(kubeconfig=kubeconfig, context=context), timeout_seconds=10.0)


def open_dashboard(
    *,
    kubeconfig: str | None,
    context: str | None,
    namespaces: list[str] | None,
    prometheus_url: str | None,
    controller_namespace: str,
    host: str,
    port: int,
    actor: str | None,
    tick_seconds: float = 2.0,
    policy_dir: Path | None = None,
) -> DashboardServer:
    """``canaryctl dashboard``: the local dashboard over the user's kubeconfig, serving in the background.

    Raises:
        KubeconfigError: the configuration cannot be loaded.
        OSError: the address cannot be bound.
    """
    api = open_kube_api(kubeconfig=kubeconfig, context=context)
    data = DashboardData(
        api=api,
        controller_namespace=controller_namespace,
        namespaces=namespaces,
        prometheus_url=prometheus_url,
        http=httpx.Client(timeout=10.0),
        file_policies=DirectoryPolicySource(policy_dir) if policy_dir is not None else None,
    )
    config = DashboardConfig(
        mode="local", namespaces=namespaces, actor=actor, prometheus=prometheus_url, tick_seconds=tick_seconds
    )
    return DashboardServer((host, port), data=data, config=config, gate=LocalGate()).start()


def replay_metrics(prometheus_url: str | None) -> PrometheusMetricsSource:
    """The Prometheus connection of ``canaryctl replay`` (credentials from the environment); close it."""
    return PrometheusMetricsSource(default_url=prometheus_url, secrets=SecretReader())


def run(*, analysis: AnalysisSource | None = None) -> None:
    """``canaryctl run``: build from the environment, run until SIGTERM/SIGINT, exit within 10 s."""
    settings = load_settings()
    logs.configure(settings.log_level)
    tune_gc(settings.gc_threshold)
    daemon = build_daemon(settings, analysis=analysis)

    def stop(signum: int, frame: FrameType | None) -> None:
        del frame
        log.info("signal %s: stopping", signal.Signals(signum).name)
        daemon.loop.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    daemon.serve()
