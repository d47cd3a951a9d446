"""Why a rollout does not move on, in words people read: the analysis's reason when nothing can be measured."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from controller.adapters.kubernetes.secrets import SecretReader
from controller.adapters.prometheus import PrometheusMetricsSource
from controller.core.measurement import QueryOutcome
from controller.core.policy import CanaryPolicy
from controller.core.status import Phase, RolloutStatus, Verdict
from controller.service.prometheus_analysis import PrometheusAnalysis
from tests.test_rollout import seed_policy

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def analysed_policy(*checks: dict[str, Any]) -> CanaryPolicy:
    doc = seed_policy().model_dump(mode="json", by_alias=True, exclude_none=True)
    doc["spec"]["analysis"] = {
        "interval": "10s",
        "selector": {"canaryWorkload": "tcp-echo-v2", "stableWorkload": "tcp-echo-v1"},
        "metrics": list(checks)
        or [{"name": "errors", "template": "istio-tcp-connect-error-ratio", "countTest": {}, "max": 0.05}],
    }
    return CanaryPolicy.model_validate(doc)


def at_step_one() -> RolloutStatus:
    return RolloutStatus(
        phase=Phase.PROGRESSING, run_id="r-1", step_index=0, weight=0, step_started_at=NOW - timedelta(seconds=30)
    )


class Unreachable:
    """A Prometheus port whose every query fails the same way."""

    def query(self, *, query: str, at: datetime, connection: CanaryPolicy | None = None) -> QueryOutcome:
        return QueryOutcome(query=query, error="Prometheus at http://prom:9090 unreachable: connection refused")


class TestTheAnalysisReason:
    def test_without_any_prometheus_url_the_step_is_held_by_that_reason_and_how_to_fix_it(self) -> None:
        metrics = PrometheusMetricsSource(default_url=None, secrets=SecretReader())
        try:
            result = PrometheusAnalysis(metrics).verdict(policy=analysed_policy(), status=at_step_one(), now=NOW)
        finally:
            metrics.close()
        assert result is not None
        assert result.verdict == Verdict.INCONCLUSIVE
        assert result.reason == "no Prometheus URL (set CANARY_PROMETHEUS_URL or spec.analysis.prometheus.url)"

    def test_one_query_problem_shared_by_every_check_is_said_once(self) -> None:
        policy = analysed_policy(
            {"name": "errors", "template": "istio-tcp-connect-error-ratio", "countTest": {}, "max": 0.05},
            {"name": "volume", "template": "istio-tcp-connections", "min": 1},
        )
        result = PrometheusAnalysis(Unreachable()).evaluate(policy, at_step_one(), now=NOW, final=False)
        assert result.reason == "Prometheus at http://prom:9090 unreachable: connection refused"
        assert [check.name for check in result.checks] == ["errors", "volume"]

    def test_checks_held_for_different_reasons_are_each_named(self) -> None:
        class EachItsOwnProblem:
            def query(self, *, query: str, at: datetime, connection: CanaryPolicy | None = None) -> QueryOutcome:
                problem = "timed out" if "response_flags" in query else "no such metric"
                return QueryOutcome(query=query, error=problem)

        policy = analysed_policy(
            {"name": "errors", "template": "istio-tcp-connect-error-ratio", "countTest": {}, "max": 0.05},
            {"name": "volume", "template": "istio-tcp-connections", "min": 1},
        )
        result = PrometheusAnalysis(EachItsOwnProblem()).evaluate(policy, at_step_one(), now=NOW, final=False)
        assert result.reason == "errors: query failed: timed out; volume: query failed: no such metric"
