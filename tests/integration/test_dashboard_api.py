"""The dashboard's HTTP API against the Kubernetes API emulator: every route, actions, auth, CSRF, assets.

The server runs as ``canaryctl dashboard`` builds it (local mode) or as the daemon does with
``CANARY_DASHBOARD=true`` (cluster mode, TokenReview and SubjectAccessReview answered by the emulator's
review table). Statuses are written as the controller writes them.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from kubernetes import client

from canary_sandbox.kubeapi import KubeApiEmulator
from canary_sandbox.scenario import load_scenario
from controller.adapters.kubernetes.api import KubeApi
from controller.adapters.kubernetes.status import COMMANDS_ANNOTATION, CrdStatusStore
from controller.core.status import (
    AlertRecord,
    CheckRecord,
    HistoryEntry,
    Phase,
    RolloutStatus,
    RouteSnapshot,
    Verdict,
    with_conditions,
)
from controller.dashboard.auth import LocalGate, ReviewGate
from controller.dashboard.data import DashboardData
from controller.dashboard.server import DashboardConfig, DashboardServer
from controller.ports import PolicyRef
from tests.sandbox.conftest import close_api_client
from tests.support.paths import REPO
from tests.support.policies import policy_doc

CRD_FILE = REPO / "helm" / "crds" / "canarypolicies.canaryctl.dev.yaml"
CSRF = {"X-Canary-Dashboard": "1"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[KubeApiEmulator]:
    """An emulator serving the CanaryPolicy CRD."""
    with KubeApiEmulator(crds=[CRD_FILE]) as emulator:
        yield emulator


@pytest.fixture
def kube(cluster: KubeApiEmulator) -> Iterator[KubeApi]:
    """The project's API wrapper on the emulator."""
    api_client = client.ApiClient(cluster.client_configuration())
    yield KubeApi(api_client, timeout_seconds=5.0)
    close_api_client(api_client)


def _namespace(cluster: KubeApiEmulator, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    cluster.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


@pytest.fixture
def controller_ns(cluster: KubeApiEmulator) -> str:
    """Where file-mode statuses would live."""
    return _namespace(cluster, "canary")


def _status(phase: Phase, *, weight: int, step_index: int, minutes_ago: float = 10) -> RolloutStatus:
    now = datetime.now(UTC)
    start = now - timedelta(minutes=minutes_ago)
    history = [
        HistoryEntry(time=start, from_phase=None, to_phase=Phase.PENDING, reason="Started"),
        HistoryEntry(
            time=start + timedelta(seconds=5),
            from_phase=Phase.PENDING,
            to_phase=Phase.PROGRESSING,
            reason="StepStarted",
            message="step 1/4 at weight 0",
        ),
        HistoryEntry(
            time=start + timedelta(minutes=2),
            from_phase=Phase.PROGRESSING,
            to_phase=Phase.PROGRESSING,
            reason="StepAdvanced",
            message="step 2/4 at weight 20",
        ),
    ]
    status = RolloutStatus(
        phase=phase,
        run_id="run-1",
        run_number=1,
        step_index=step_index,
        weight=weight,
        schedule=[0, 20, 50, 100],
        step_started_at=now - timedelta(seconds=30),
        history=history,
        original=RouteSnapshot(pointer="/spec/tcp/0/route", destinations=[], target="VirtualService"),
        expected_weights=[100 - weight, weight],
        last_verdict="pass: connect-errors: canary 0 errors in 412 connections",
        last_analysis_at=now - timedelta(seconds=10),
        last_checks=[
            CheckRecord(
                name="connect-errors",
                verdict=Verdict.PASS,
                reason="canary 0 errors in 412 connections",
                canary_value=0.0,
                stable_value=0.0,
                canary_errors=0,
                canary_connections=412,
                stable_errors=0,
                stable_connections=1650,
                threshold="max 0.05",
                queries=["sum(envoy_cluster_upstream_cx_total)"],
            )
        ],
    )
    return with_conditions(status, now, 4)


def _save(kube: KubeApi, namespace: str, name: str, status: RolloutStatus) -> None:
    store = CrdStatusStore(kube)
    ref = PolicyRef(namespace=namespace, name=name, source="crd")
    store.save(policy=ref, status=status, version=store.load(policy=ref).version)


def _policy(cluster: KubeApiEmulator, kube: KubeApi, namespace: str, name: str, status: RolloutStatus) -> None:
    cluster.put(policy_doc(name=name, namespace=namespace))
    _save(kube, namespace, name, status)


def _set_route(cluster: KubeApiEmulator, namespace: str, weights: list[int]) -> None:
    vs = cluster.get("virtualservices.networking.istio.io", "tcp-echo", namespace=namespace)
    assert vs is not None
    vs["spec"]["tcp"][0]["route"] = [
        {"destination": {"host": "tcp-echo", "subset": "v1", "port": {"number": 9000}}, "weight": weights[0]},
        {"destination": {"host": "tcp-echo", "subset": "v2", "port": {"number": 9000}}, "weight": weights[1]},
    ]
    cluster.put(vs)


class Dashboard:
    """A running dashboard server and an HTTP client for it."""

    def __init__(self, server: DashboardServer) -> None:
        self.server = server
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=10.0)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(path, **kwargs)

    def post(self, path: str, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.http.post(path, content=json.dumps(body) if body is not None else b"", headers=headers or {})

    def close(self) -> None:
        self.http.close()
        self.server.stop()


def _start(
    kube: KubeApi, *, mode: str, controller_ns: str, namespaces: list[str] | None, gate: Any = None
) -> Dashboard:
    data = DashboardData(
        api=kube,
        controller_namespace=controller_ns,
        namespaces=namespaces,
        prometheus_url=None,
        http=httpx.Client(timeout=5.0),
    )
    config = DashboardConfig(mode=mode, namespaces=namespaces, tick_seconds=0.2, actor="alice (dashboard)")
    server = DashboardServer(("127.0.0.1", 0), data=data, config=config, gate=gate or LocalGate()).start()
    return Dashboard(server)


@pytest.fixture
def local(kube: KubeApi, controller_ns: str) -> Iterator[Dashboard]:
    """The local dashboard over every namespace."""
    dashboard = _start(kube, mode="local", controller_ns=controller_ns, namespaces=None)
    yield dashboard
    dashboard.close()


@pytest.fixture
def shop(cluster: KubeApiEmulator, kube: KubeApi) -> str:
    """A namespace with the tcp-echo scenario and a policy progressing at 20 %, its route as written."""
    namespace = _namespace(cluster, "shop")
    load_scenario(cluster, "istio", namespace=namespace)
    _set_route(cluster, namespace, [80, 20])
    _policy(cluster, kube, namespace, "tcp-echo", _status(Phase.PROGRESSING, weight=20, step_index=1))
    return namespace


# -- reads -------------------------------------------------------------------------------------------------


def test_the_fleet_lists_every_rollout_with_counts_and_flags_the_ones_needing_attention(
    cluster: KubeApiEmulator, kube: KubeApi, local: Dashboard, shop: str
) -> None:
    _policy(cluster, kube, shop, "paused-one", _status(Phase.PAUSED, weight=50, step_index=2))
    answer = local.get("/api/rollouts", params={"namespace": shop})
    assert answer.status_code == 200
    body = answer.json()
    rows = {row["name"]: row for row in body["rollouts"]}
    assert set(rows) == {"tcp-echo", "paused-one"}
    assert body["counts"] == {"Progressing": 1, "Paused": 1}
    running = rows["tcp-echo"]
    assert running["step"] == "2/4"
    assert running["weight"] == 20
    assert running["steps"] == [0, 20, 50, 100]
    assert running["target"] == {"kind": "VirtualService", "name": "tcp-echo"}
    assert running["lastVerdict"]["verdict"] == "pass"
    assert running["needsAttention"] is False
    # 2 min steps, 30 s into the step: about 90 s to go.
    assert 80 < running["nextStepInSeconds"] <= 90
    assert 590 < running["ageSeconds"] < 700
    assert rows["paused-one"]["needsAttention"] is True
    assert "paused" in rows["paused-one"]["attention"]


def test_the_rollout_page_has_the_route_plan_checks_timeline_and_runs(local: Dashboard, shop: str) -> None:
    answer = local.get(f"/api/rollouts/{shop}/tcp-echo")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["row"]["phase"] == "Progressing"
    assert body["route"]["live"] == [
        {"destination": "tcp-echo/v1:9000", "weight": 80},
        {"destination": "tcp-echo/v2:9000", "weight": 20},
    ]
    assert body["route"]["drift"] is False
    assert [step["weight"] for step in body["plan"]] == [0, 20, 50, 100]
    assert body["plan"][1]["current"] is True
    assert body["plan"][1]["route"][0]["weight"] == 80
    check = body["checks"][0]
    assert check["name"] == "connect-errors"
    assert check["canaryConnections"] == 412
    assert check["verdict"] == "pass"
    kinds = [marker["kind"] for marker in body["timeline"]]
    assert "step" in kinds
    assert "check" in kinds
    assert body["runs"][0]["runId"] == "run-1"
    assert body["runs"][0]["outcome"] is None
    assert body["status"]["phase"] == "Progressing"
    assert body["failure"] is None
    assert body["policy"]["schedule"]["steps"] == [0, 20, 50, 100]


def test_a_route_changed_by_someone_else_is_flagged_as_drift(
    cluster: KubeApiEmulator, local: Dashboard, shop: str
) -> None:
    _set_route(cluster, shop, [100, 0])
    body = local.get(f"/api/rollouts/{shop}/tcp-echo").json()
    assert body["route"]["drift"] is True
    assert [item["weight"] for item in body["route"]["desired"]] == [80, 20]


def test_a_rolled_back_rollout_has_a_failure_banner_with_the_check_and_the_alerts(
    cluster: KubeApiEmulator, kube: KubeApi, local: Dashboard, shop: str
) -> None:
    status = _status(Phase.ROLLED_BACK, weight=50, step_index=2)
    failed = status.last_checks[0].model_copy(
        update={"verdict": Verdict.FAIL, "canary_value": 1.0, "canary_errors": 10, "canary_connections": 10}
    )
    now = datetime.now(UTC)
    status = status.model_copy(
        update={
            "last_checks": [failed],
            "rollback_reason": "connect-errors failed at weight 50",
            "history": [
                *status.history,
                HistoryEntry(time=now, from_phase=Phase.PROGRESSING, to_phase=Phase.ROLLING_BACK, reason="Failed"),
                HistoryEntry(time=now, from_phase=Phase.ROLLING_BACK, to_phase=Phase.ROLLED_BACK, reason="Restored"),
            ],
            "alert_log": [
                AlertRecord(key="k", name="CanaryRolledBack", sink="oncall", result="sent", attempts=1, at=now)
            ],
        }
    )
    _policy(cluster, kube, shop, "broken", status)
    body = local.get(f"/api/rollouts/{shop}/broken").json()
    failure = body["failure"]
    assert failure["check"] == "connect-errors"
    assert failure["value"] == 1.0
    assert failure["threshold"] == "max 0.05"
    assert failure["step"] == "3/4"
    assert failure["reason"] == "connect-errors failed at weight 50"
    assert failure["alerts"][0]["sink"] == "oncall"
    assert failure["alerts"][0]["result"] == "sent"
    kinds = [marker["kind"] for marker in body["timeline"]]
    assert "rollback" in kinds
    assert "alert" in kinds
    assert body["runs"][-1]["outcome"] == "RolledBack"
    fleet = local.get("/api/rollouts", params={"namespace": shop}).json()
    assert {row["name"]: row["needsAttention"] for row in fleet["rollouts"]}["broken"] is True


def test_config_says_local_mode_with_actions(local: Dashboard) -> None:
    body = local.get("/api/config").json()
    assert body["mode"] == "local"
    assert body["actions"] is True
    assert body["namespaces"] == "all"
    assert isinstance(body["version"], str)
    assert body["prometheus"] is None


def test_unknown_rollout_check_and_api_paths_answer_json_errors(local: Dashboard, shop: str) -> None:
    missing = local.get(f"/api/rollouts/{shop}/nope")
    assert missing.status_code == 404
    assert "nope" in missing.json()["error"]
    unknown_check = local.get(f"/api/rollouts/{shop}/tcp-echo/series", params={"check": "nope"})
    assert unknown_check.status_code == 404
    assert "error" in unknown_check.json()
    no_check = local.get(f"/api/rollouts/{shop}/tcp-echo/series")
    assert no_check.status_code == 400
    assert "check" in no_check.json()["error"]
    assert local.get("/api/nothing").status_code == 404
    bad_time = local.get(f"/api/rollouts/{shop}/tcp-echo/series", params={"check": "x", "start": "yesterday"})
    assert bad_time.status_code == 400
    assert "start" in bad_time.json()["error"]


def test_live_updates_stream_the_fleet_and_again_when_it_changes(kube: KubeApi, local: Dashboard, shop: str) -> None:
    events: list[dict[str, Any]] = []
    with local.http.stream("GET", "/api/events", params={"namespace": shop}) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        event = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event == "rollouts":
                events.append(json.loads(line.removeprefix("data: ")))
                if len(events) == 1:
                    _save(kube, shop, "tcp-echo", _status(Phase.PAUSED, weight=20, step_index=1))
                else:
                    break
    assert events[0]["rollouts"][0]["phase"] == "Progressing"
    assert events[1]["rollouts"][0]["phase"] == "Paused"


# -- assets ------------------------------------------------------------------------------------------------


def test_assets_are_served_with_their_type_and_never_from_outside_the_package(local: Dashboard) -> None:
    page = local.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    script = local.get("/assets/vendor/uPlot.iife.min.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    escapes = ("/assets/../server.py", "/assets/%2e%2e/server.py", "/assets/..%2f..%2f__init__.py", "/assets/a%00b")
    for escape in escapes:
        refused = local.get(escape)
        assert refused.status_code == 404, escape
        assert "import" not in refused.text
    # A raw request line, as a client that does not normalise the path would send it.
    with socket.create_connection(("127.0.0.1", local.server.port), timeout=5) as sock:
        sock.sendall(b"GET /assets/../../dashboard/server.py HTTP/1.0\r\n\r\n")
        raw = b"".join(iter(lambda: sock.recv(65536), b""))
    assert raw.startswith(b"HTTP/1.0 404")
    assert b"DashboardServer" not in raw


# -- actions -----------------------------------------------------------------------------------------------


def _commands(cluster: KubeApiEmulator, namespace: str, name: str) -> list[dict[str, Any]]:
    obj = cluster.get("canarypolicies.canaryctl.dev", name, namespace=namespace)
    assert obj is not None
    raw = (obj["metadata"].get("annotations") or {}).get(COMMANDS_ANNOTATION)
    return list(json.loads(raw)) if raw else []


def test_pause_then_resume_record_the_commands_as_the_cli_does(
    cluster: KubeApiEmulator, kube: KubeApi, local: Dashboard, shop: str
) -> None:
    paused = local.post(f"/api/rollouts/{shop}/tcp-echo/pause", {"confirm": True}, CSRF)
    assert paused.status_code == 200, paused.text
    assert paused.json()["ok"] is True
    assert "pause recorded" in paused.json()["message"]
    commands = _commands(cluster, shop, "tcp-echo")
    assert [(c["kind"], c["by"]) for c in commands] == [("pause", "alice (dashboard)")]
    # The controller applies it; then resume is accepted from Paused.
    _save(kube, shop, "tcp-echo", _status(Phase.PAUSED, weight=20, step_index=1))
    # The page offers only what the controller would accept now (the CLI's preview): resume, not pause.
    assert local.get(f"/api/rollouts/{shop}/tcp-echo").json()["actions"] == ["resume", "promote", "abort"]
    resumed = local.post(f"/api/rollouts/{shop}/tcp-echo/resume", {"confirm": True}, CSRF)
    assert resumed.status_code == 200, resumed.text
    assert [c["kind"] for c in _commands(cluster, shop, "tcp-echo")] == ["pause", "resume"]


def test_an_action_the_phase_refuses_is_a_conflict_and_records_nothing(
    cluster: KubeApiEmulator, local: Dashboard, shop: str
) -> None:
    refused = local.post(f"/api/rollouts/{shop}/tcp-echo/retry", {"confirm": True}, CSRF)
    assert refused.status_code == 409
    assert "retry refused" in refused.json()["error"]
    assert _commands(cluster, shop, "tcp-echo") == []


def test_actions_need_the_csrf_header_and_a_confirmation(cluster: KubeApiEmulator, local: Dashboard, shop: str) -> None:
    no_header = local.post(f"/api/rollouts/{shop}/tcp-echo/pause", {"confirm": True})
    assert no_header.status_code == 403
    assert "X-Canary-Dashboard" in no_header.json()["error"]
    unconfirmed = local.post(f"/api/rollouts/{shop}/tcp-echo/pause", {}, CSRF)
    assert unconfirmed.status_code == 400
    assert "confirm" in unconfirmed.json()["error"]
    unknown = local.post(f"/api/rollouts/{shop}/tcp-echo/explode", {"confirm": True}, CSRF)
    assert unknown.status_code == 400
    assert _commands(cluster, shop, "tcp-echo") == []


# -- cluster mode ------------------------------------------------------------------------------------------


@pytest.fixture
def in_cluster(kube: KubeApi, controller_ns: str) -> Iterator[Dashboard]:
    """The daemon's read-only dashboard, every request reviewed by the emulator."""
    dashboard = _start(
        kube, mode="cluster", controller_ns=controller_ns, namespaces=None, gate=ReviewGate(kube, cache_seconds=0)
    )
    yield dashboard
    dashboard.close()


def test_in_the_cluster_only_a_reviewed_token_with_rbac_sees_rollouts_and_only_its_namespaces(
    cluster: KubeApiEmulator, kube: KubeApi, in_cluster: Dashboard, shop: str
) -> None:
    other = _namespace(cluster, "other")
    _policy(cluster, kube, other, "hidden", _status(Phase.PROGRESSING, weight=20, step_index=1))
    alice, bob = f"alice-{uuid.uuid4().hex[:6]}", f"bob-{uuid.uuid4().hex[:6]}"
    cluster.reviews.add_token(f"token-{alice}", alice)
    cluster.reviews.add_token(f"token-{bob}", bob)
    cluster.reviews.grant(alice, verb="get", group="canaryctl.dev", resource="canarypolicies", namespace=shop)
    # bob may list pods in shop, but not get canarypolicies.
    cluster.reviews.grant(bob, verb="get", group="", resource="pods", namespace=shop)

    no_token = in_cluster.get("/api/rollouts")
    assert no_token.status_code == 401
    assert "bearer" in no_token.json()["error"].lower()
    rejected = in_cluster.get("/api/rollouts", headers={"Authorization": "Bearer not-a-token"})
    assert rejected.status_code == 401
    assert "rejected" in rejected.json()["error"]
    as_bob = {"Authorization": f"Bearer token-{bob}"}
    assert in_cluster.get(f"/api/rollouts/{shop}/tcp-echo", headers=as_bob).status_code == 403
    assert in_cluster.get("/api/rollouts", headers=as_bob, params={"namespace": shop}).status_code == 403
    assert in_cluster.get("/api/rollouts", headers=as_bob).json()["rollouts"] == []

    as_alice = {"Authorization": f"Bearer token-{alice}"}
    fleet = in_cluster.get("/api/rollouts", headers=as_alice)
    assert fleet.status_code == 200
    assert {row["namespace"] for row in fleet.json()["rollouts"]} == {shop}
    assert in_cluster.get(f"/api/rollouts/{shop}/tcp-echo", headers=as_alice).status_code == 200
    assert in_cluster.get(f"/api/rollouts/{other}/hidden", headers=as_alice).status_code == 403
    config = in_cluster.get("/api/config", headers=as_alice).json()
    assert config["mode"] == "cluster"
    assert config["actions"] is False
    assert config["user"] == alice


def test_in_the_cluster_actions_are_refused_as_read_only(
    cluster: KubeApiEmulator, in_cluster: Dashboard, shop: str
) -> None:
    user = f"carol-{uuid.uuid4().hex[:6]}"
    cluster.reviews.add_token(f"token-{user}", user)
    cluster.reviews.grant(user)  # everything
    headers = {**CSRF, "Authorization": f"Bearer token-{user}"}
    refused = in_cluster.post(f"/api/rollouts/{shop}/tcp-echo/pause", {"confirm": True}, headers)
    assert refused.status_code == 405
    assert refused.json() == {"error": "read-only"}
    assert _commands(cluster, shop, "tcp-echo") == []
    unauthenticated = in_cluster.post(f"/api/rollouts/{shop}/tcp-echo/pause", {"confirm": True}, CSRF)
    assert unauthenticated.status_code == 401


def test_the_daemon_serves_the_dashboard_read_only_behind_reviews_when_turned_on(
    cluster: KubeApiEmulator, shop: str, tmp_path: Any
) -> None:
    from controller.runtime.composition import cluster_dashboard  # noqa: PLC0415 - the composition root
    from controller.settings import Settings  # noqa: PLC0415

    kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig", context_name="in-cluster")
    base: dict[str, Any] = {"kubeconfig": str(kubeconfig), "http_host": "127.0.0.1", "dashboard_port": 0}
    assert cluster_dashboard(Settings.model_validate(base)) is None
    server = cluster_dashboard(Settings.model_validate({**base, "dashboard": True}))
    assert server is not None
    dashboard = Dashboard(server.start())
    try:
        assert dashboard.get("/api/rollouts").status_code == 401
        user = f"dave-{uuid.uuid4().hex[:6]}"
        cluster.reviews.add_token(f"token-{user}", user, groups=["viewers"])
        cluster.reviews.grant("viewers", verb="get", group="canaryctl.dev", resource="canarypolicies", namespace=shop)
        fleet = dashboard.get("/api/rollouts", headers={"Authorization": f"Bearer token-{user}"})
        assert fleet.status_code == 200
        assert [row["namespace"] for row in fleet.json()["rollouts"]] == [shop]
        assert (
            dashboard.get("/api/config", headers={"Authorization": f"Bearer token-{user}"}).json()["mode"] == "cluster"
        )
    finally:
        dashboard.close()


# -- canaryctl dashboard -----------------------------------------------------------------------------------


def test_canaryctl_dashboard_prints_its_url_and_serves_until_interrupted(
    cluster: KubeApiEmulator, shop: str, tmp_path: Any
) -> None:
    import signal  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig", context_name="workstation")
    command = [sys.executable, "-m", "controller.cli", "dashboard", "--port", "0", "--kubeconfig", str(kubeconfig)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("canary dashboard: http://127.0.0.1:"), line
        url = line.split()[2]
        fleet = httpx.get(f"{url}api/rollouts", params={"namespace": shop}, timeout=10.0)
        assert [row["name"] for row in fleet.json()["rollouts"]] == ["tcp-echo"]
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr


def test_canaryctl_dashboard_on_a_taken_port_says_so(cluster: KubeApiEmulator, tmp_path: Any) -> None:
    from typer.testing import CliRunner  # noqa: PLC0415

    from controller.cli import app  # noqa: PLC0415

    kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig", context_name="workstation")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["dashboard", "--port", str(port), "--kubeconfig", str(kubeconfig)])
    assert result.exit_code == 1
    assert f"127.0.0.1:{port} is taken" in result.output
