"""The analysis end to end on a real Prometheus: healthy, refusing, thin traffic, outage, NaN, injection, replay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.adapters.kubernetes.secrets import SecretReader
from controller.adapters.prometheus import PrometheusMetricsSource
from controller.core.policy import CanaryPolicy
from controller.core.problems import validate_policy
from controller.core.promql import ISTIO_OPENED
from controller.core.rollout import decide
from controller.core.status import AnalysisResult, Observations, RolloutStatus, Verdict
from controller.service.prometheus_analysis import PrometheusAnalysis
from controller.service.replay import replay as run_replay
from tests.prom.servers import (
    DrivenExporter,
    Point,
    PrometheusServer,
    history_start,
    prometheus_config,
    wait_until,
)
from tests.prom.test_builtin_queries import Mesh
from tests.test_rollout import seed_policy, seed_target


def _policy(namespace: str, **check: Any) -> CanaryPolicy:
    doc = seed_policy(stepDuration="1m").model_dump(mode="json")
    doc["metadata"] = {"name": "tcp-echo", "namespace": namespace}
    doc["spec"]["analysis"] = {
        "interval": "10s",
        "selector": {"canaryWorkload": "tcp-echo-v2", "stableWorkload": "tcp-echo-v1", "namespace": namespace},
        "metrics": [{"name": "errors", "template": "istio-tcp-connect-error-ratio", "countTest": {}, **check}],
    }
    return CanaryPolicy.model_validate(doc)


def _status(step_start: float, weight: int = 20) -> RolloutStatus:
    return RolloutStatus(
        run_id="r-1", step_index=1, weight=weight, step_started_at=datetime.fromtimestamp(step_start, UTC)
    )


def _evaluate(metrics: PrometheusMetricsSource, policy: CanaryPolicy, status: RolloutStatus) -> AnalysisResult:
    return PrometheusAnalysis(metrics).evaluate(policy, status, now=datetime.now(UTC), final=False)


@pytest.fixture
def mesh(exporter: DrivenExporter, prometheus: PrometheusServer) -> Mesh:
    return Mesh(exporter, prometheus)


def _traffic(mesh: Mesh, *, canary: int, stable: int, canary_failed: int = 0) -> None:
    mesh.connect("tcp-echo-v2", canary)
    mesh.connect("tcp-echo-v1", stable)
    if canary_failed:
        mesh.connect("tcp-echo-v2", canary_failed, flags="UF,URX")
    mesh.settle()


def test_a_healthy_canary_passes(mesh: Mesh, metrics: PrometheusMetricsSource) -> None:
    _traffic(mesh, canary=1, stable=1)
    start = mesh.exporter.step_start()
    _traffic(mesh, canary=400, stable=1600)
    result = _evaluate(metrics, _policy(mesh.namespace), _status(start))
    assert result.verdict == Verdict.PASS, result.reason
    assert result.checks[0].canary_connections == 400
    assert result.checks[0].stable_connections == 1600
    assert 'destination_workload=\\"tcp-echo-v2\\"' in str(result.checks[0].queries) or any(
        'destination_workload="tcp-echo-v2"' in q for q in result.checks[0].queries
    )


def test_a_canary_refusing_connections_fails_within_two_scrapes_of_its_first_errors(
    mesh: Mesh, metrics: PrometheusMetricsSource
) -> None:
    _traffic(mesh, canary=1, stable=1)
    start = mesh.exporter.step_start()
    _traffic(mesh, canary=20, stable=80)
    policy = _policy(mesh.namespace)
    assert _evaluate(metrics, policy, _status(start)).verdict != Verdict.FAIL
    scrapes_before = mesh.exporter.scrapes
    mesh.connect("tcp-echo-v2", 8, flags="UF,URX")  # the first failures create their series
    verdicts: list[tuple[int, Verdict]] = []

    def failed() -> bool:
        result = _evaluate(metrics, policy, _status(start))
        verdicts.append((mesh.exporter.scrapes - scrapes_before, result.verdict))
        return bool(result.verdict == Verdict.FAIL)

    wait_until(failed, timeout=15, interval=0.1, message=lambda: f"never failed: {verdicts[-3:]}")
    first_fail = next(scrapes for scrapes, verdict in verdicts if verdict == Verdict.FAIL)
    assert first_fail <= 2, verdicts


def test_low_traffic_stays_inconclusive_and_never_passes(mesh: Mesh, metrics: PrometheusMetricsSource) -> None:
    _traffic(mesh, canary=1, stable=1)
    start = mesh.exporter.step_start()
    _traffic(mesh, canary=30, stable=120)
    result = _evaluate(metrics, _policy(mesh.namespace, minConnections=300), _status(start))
    assert result.verdict == Verdict.INCONCLUSIVE
    assert "fewer than minConnections 300" in result.reason


def test_nan_from_a_custom_query_is_inconclusive_with_the_cause(mesh: Mesh, metrics: PrometheusMetricsSource) -> None:
    doc = _policy(mesh.namespace).model_dump(mode="json")
    doc["spec"]["analysis"]["metrics"] = [{"name": "ratio", "query": "0/0", "max": 1}]
    result = _evaluate(metrics, CanaryPolicy.model_validate(doc), _status(datetime.now(UTC).timestamp() - 30))
    assert result.verdict == Verdict.INCONCLUSIVE
    assert "NaN" in result.reason


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("canaryWorkload", 'tcp-echo-v2"} or vector(1) #'),
        ("namespace", "shop} or up{"),
        ("stableWorkload", "a\nb"),
        ("canaryCluster", 'outbound|9000|v2|x"} or vector(1) #'),
    ],
)
def test_promql_injection_through_policy_fields_is_rejected_by_lint(field: str, value: str) -> None:
    doc = _policy("shop").model_dump(mode="json")
    doc["spec"]["analysis"]["selector"][field] = value
    _, problems = validate_policy(doc)
    assert any(p.dotted == f"spec.analysis.selector.{field}" for p in problems), problems


def test_istio_cluster_names_are_valid_selectors() -> None:
    doc = _policy("shop").model_dump(mode="json")
    doc["spec"]["analysis"]["selector"]["canaryCluster"] = "outbound|9000|v2|tcp-echo.shop.svc.cluster.local"
    doc["spec"]["analysis"]["selector"]["stableCluster"] = "outbound|9000||tcp-echo-v1.shop.svc.cluster.local"
    _, problems = validate_policy(doc)
    assert problems == []


def test_prometheus_stopped_mid_step_is_inconclusive_and_the_step_holds_then_recovers(
    exporter: DrivenExporter, binaries: Any, tmp_path: Path
) -> None:
    config = prometheus_config({"driven": {"target": exporter.address}})
    server = PrometheusServer(binary=binaries.prometheus, workdir=tmp_path, config=config)
    server.start()
    try:
        mesh = Mesh(exporter, server)
        _traffic(mesh, canary=1, stable=1)
        start = exporter.step_start()
        _traffic(mesh, canary=400, stable=1600)
        metrics = PrometheusMetricsSource(default_url=server.url, secrets=SecretReader(environ={}))
        doc = _policy(mesh.namespace).model_dump(mode="json")
        doc["spec"]["analysis"]["interval"] = "5m"  # the window must still cover the traffic after the outage
        policy = CanaryPolicy.model_validate(doc)
        server.stop()
        down = _evaluate(metrics, policy, _status(start))
        assert down.verdict == Verdict.INCONCLUSIVE
        assert "unreachable" in down.reason or "refused" in down.reason
        # The state machine does not advance on it, even with the step's time up.
        status = _status(start).model_copy(update={"revision": "r", "phase": "Progressing", "expected_weights": None})
        gate = decide(
            policy,
            status,
            Observations(revision="r", target=seed_target(), analysis=down),
            datetime.now(UTC) + timedelta(minutes=5),
        ).status
        assert gate.step_index == 1
        server.start()  # on a new port: the test infrastructure picks a free one at every start
        metrics.close()
        metrics = PrometheusMetricsSource(default_url=server.url, secrets=SecretReader(environ={}))
        last: list[str] = []

        def recovered() -> bool:
            result = _evaluate(metrics, policy, _status(start))
            last[:] = [result.reason]
            return bool(result.verdict == Verdict.PASS)

        wait_until(recovered, timeout=20, message=lambda: f"not recovered: {last}")
        metrics.close()
    finally:
        server.stop()


def test_replay_over_backfilled_history_finds_the_regression(replay: Any) -> None:
    base = history_start(hours_back=2)
    namespace = "replayed"
    points: list[Point] = []

    def labels(workload: str, flags: str) -> dict[str, str]:
        return {
            "reporter": "source",
            "destination_workload": workload,
            "destination_workload_namespace": namespace,
            "response_flags": flags,
        }

    canary_ok = stable_ok = canary_failed = 0.0
    broken_at = base + 8 * 60  # the canary starts refusing 8 minutes in: during its 50 % step
    for second in range(0, 20 * 60, 5):
        at = base + second
        canary_ok += 10 if at < broken_at else 0
        canary_failed += 10 if at >= broken_at else 0
        stable_ok += 40
        points.append(Point(ISTIO_OPENED, labels("tcp-echo-v2", "-"), at, canary_ok))
        points.append(Point(ISTIO_OPENED, labels("tcp-echo-v1", "-"), at, stable_ok))
        if canary_failed:
            points.append(Point(ISTIO_OPENED, labels("tcp-echo-v2", "UF,URX"), at, canary_failed))
    server = replay(points)
    metrics = PrometheusMetricsSource(default_url=server.url, secrets=SecretReader(environ={}))
    try:
        policy = _policy(namespace)
        doc = policy.model_dump(mode="json")
        doc["spec"]["schedule"]["stepDuration"] = "3m"
        report = run_replay(
            CanaryPolicy.model_validate(doc),
            metrics,
            start=datetime.fromtimestamp(base + 30, UTC),
            end=datetime.fromtimestamp(base + 19 * 60, UTC),
            tick_seconds=5,
        )
    finally:
        metrics.close()
    assert report.outcome == "rolled back", report.as_dict()
    assert report.rolled_back_at is not None
    assert datetime.fromtimestamp(broken_at, UTC) <= report.rolled_back_at
    assert report.rolled_back_at <= datetime.fromtimestamp(broken_at + 30, UTC)
    assert [s.outcome for s in report.steps[:2]] == ["passed", "passed"]


def test_canaryctl_replay_prints_the_steps_and_the_rollback_as_json(replay: Any, tmp_path: Path) -> None:
    import json  # noqa: PLC0415

    import yaml  # noqa: PLC0415
    from typer.testing import CliRunner  # noqa: PLC0415

    from controller.cli import app  # noqa: PLC0415

    base = history_start(hours_back=2)
    labels = {"reporter": "source", "destination_workload_namespace": "replayed", "response_flags": "-"}
    points = []
    for second in range(0, 10 * 60, 5):
        points.append(Point(ISTIO_OPENED, {**labels, "destination_workload": "tcp-echo-v2"}, base + second, second))
        points.append(Point(ISTIO_OPENED, {**labels, "destination_workload": "tcp-echo-v1"}, base + second, 4 * second))
    server = replay(points)
    doc = _policy("replayed").model_dump(mode="json", exclude_none=True)
    doc["spec"]["schedule"]["stepDuration"] = "1m"
    policy_file = tmp_path / "p.yaml"
    policy_file.write_text(yaml.safe_dump(doc))
    result = CliRunner().invoke(
        app,
        [
            "replay",
            "--policy",
            str(policy_file),
            "--prometheus",
            server.url,
            "--start",
            str(base + 30),
            "--end",
            str(base + 9 * 60),
            "-o",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["outcome"] == "promoted"
    assert [step["outcome"] for step in report["steps"]] == ["passed"] * 4
    assert all(step["evaluations"] for step in report["steps"])
    text = CliRunner().invoke(
        app,
        [
            "replay",
            "--policy",
            str(policy_file),
            "--prometheus",
            server.url,
            "--start",
            str(base + 30),
            "--end",
            str(base + 9 * 60),
        ],
    )
    assert "outcome: promoted" in text.stdout
