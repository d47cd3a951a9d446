"""/healthz, /readyz and /metrics of the running controller."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from controller.core.status import Phase, Verdict
from controller.ports import PolicyRef
from controller.runtime.http import HealthServer
from controller.runtime.metrics import ControllerMetrics
from tests.rollout_sim import Sim
from tests.test_rollout import seed_policy, seed_target


def _serve(metrics: ControllerMetrics, beat: datetime | None, checks: dict[str, object]) -> HealthServer:
    server = HealthServer(
        metrics=metrics,
        heartbeat=lambda: beat,
        checks=checks,  # type: ignore[arg-type]
        max_heartbeat_age=30,
        cache_seconds=0,
    )
    server.start()
    return server


def test_healthz_follows_the_scheduler_heartbeat() -> None:
    metrics = ControllerMetrics()
    for beat, code in [(None, 503), (datetime.now(UTC) - timedelta(seconds=60), 503), (datetime.now(UTC), 200)]:
        server = _serve(metrics, beat, {})
        try:
            assert httpx.get(f"http://127.0.0.1:{server.port}/healthz").status_code == code
        finally:
            server.stop()


def test_readyz_names_what_is_not_reachable() -> None:
    server = _serve(
        ControllerMetrics(),
        datetime.now(UTC),
        {"kubernetes": lambda: None, "prometheus": lambda: "Prometheus unreachable: ConnectError"},
    )
    try:
        answer = httpx.get(f"http://127.0.0.1:{server.port}/readyz")
        assert answer.status_code == 503
        assert answer.text == "prometheus: Prometheus unreachable: ConnectError\n"
    finally:
        server.stop()


def test_metrics_follow_a_rollout_through_its_rollback() -> None:
    metrics = ControllerMetrics()
    ref = PolicyRef("shop", "tcp-echo", "file")
    sim = Sim(seed_policy(stepDuration="1m"), seed_target())
    sim.verdict = Verdict.PASS
    for _ in range(3):
        metrics.observe_pass(ref, sim.tick(61), 0.01)
    sim.verdict = Verdict.FAIL
    while sim.status.phase != Phase.ROLLED_BACK:
        metrics.observe_pass(ref, sim.tick(1), 0.01)
    metrics.api_error(409)
    metrics.alert_outcome("alertmanager", "sent")
    metrics.leader.set(1)
    server = _serve(metrics, datetime.now(UTC), {})
    try:
        text = httpx.get(f"http://127.0.0.1:{server.port}/metrics").text
    finally:
        server.stop()
    assert 'canary_phase{namespace="shop",phase="RolledBack",policy="tcp-echo"} 1.0' in text
    assert 'canary_phase{namespace="shop",phase="Progressing",policy="tcp-echo"} 0.0' in text
    assert 'canary_rollbacks_total{reason="AnalysisFailed"} 1.0' in text
    assert 'canary_kubernetes_api_errors_total{code="409"} 1.0' in text
    assert 'canary_alerts_sent_total{result="sent",sink="alertmanager"} 1.0' in text
    assert "canary_tick_duration_seconds_count" in text
    assert "canary_leader 1.0" in text
    assert 'canary_weight{namespace="shop",policy="tcp-echo"} 0.0' in text


def test_metrics_name_filter_renders_only_the_series_named() -> None:
    """``/metrics?name[]=...`` (prometheus_client's own handler's filter): a probe reading one counter often
    does not render every rollout's series."""
    metrics = ControllerMetrics()
    ref = PolicyRef("shop", "tcp-echo", "file")
    sim = Sim(seed_policy(stepDuration="1m"), seed_target())
    sim.verdict = Verdict.FAIL
    while sim.status.phase != Phase.ROLLED_BACK:
        metrics.observe_pass(ref, sim.tick(61), 0.01)
    server = _serve(metrics, datetime.now(UTC), {})
    try:
        base = f"http://127.0.0.1:{server.port}/metrics"
        one = httpx.get(base, params={"name[]": "canary_rollbacks_total"})
        two = httpx.get(f"{base}?name[]=canary_rollbacks_total&name[]=canary_leader")
        unknown = httpx.get(base, params={"name[]": "no_such_series"})
        everything = httpx.get(f"{base}?")
    finally:
        server.stop()
    assert one.status_code == 200
    series = {line.split("{")[0].split(" ")[0] for line in one.text.splitlines() if not line.startswith("#")}
    assert series == {"canary_rollbacks_total"}
    assert 'canary_rollbacks_total{reason="AnalysisFailed"} 1.0' in one.text
    assert "canary_weight" not in one.text
    assert "canary_leader 0.0" in two.text
    assert "canary_rollbacks_total{" in two.text
    assert "canary_weight" not in two.text
    assert unknown.status_code == 200
    assert unknown.text == ""
    assert 'canary_weight{namespace="shop",policy="tcp-echo"}' in everything.text
