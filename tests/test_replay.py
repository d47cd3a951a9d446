"""Replay drives the real state machine and analysis over scripted history."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from controller.cli import app
from controller.core.measurement import QueryOutcome
from controller.core.policy import CanaryPolicy
from controller.core.status import AnalysisResult, Verdict
from controller.service.replay import fold_evaluations, replay, sweep, with_setting
from tests.rollout_sim import T0
from tests.test_prometheus_analysis import _policy


class Timeline:
    """Connections per second of each workload; the canary fails every connection after ``broken_at``."""

    def __init__(self, broken_at: datetime | None, *, failing: float = 1.0, canary_rate: float = 10.0) -> None:
        self.broken_at = broken_at
        self.failing = failing
        self.canary_rate = canary_rate

    def query(self, *, query: str, at: datetime, connection: CanaryPolicy | None = None) -> QueryOutcome:
        if query == "vector(1)":
            return QueryOutcome(query=query, value=1.0)
        workload = re.search(r'destination_workload="([^"]+)"', query)
        window = re.search(r"offset (\d+)s", query)
        assert workload is not None
        assert window is not None
        seconds = int(window.group(1))
        rate = self.canary_rate if workload.group(1) == "tcp-echo-v2" else 40.0
        total = rate * seconds
        errors = 0.0
        if workload.group(1) == "tcp-echo-v2" and self.broken_at is not None and at > self.broken_at:
            errors = self.failing * rate * min(seconds, (at - self.broken_at).total_seconds())
        value = errors if 'response_flags!="-"' in query else total
        return QueryOutcome(query=query, value=value)


def test_a_healthy_history_replays_to_promotion_step_by_step() -> None:
    report = replay(_policy(), Timeline(broken_at=None), start=T0, end=T0 + timedelta(minutes=30))
    assert report.outcome == "promoted"
    assert [s.outcome for s in report.steps] == ["passed"] * 4
    assert all(s.evaluations for s in report.steps)
    document = report.as_dict()
    assert document["steps"][1]["weight"] == 20


def test_a_regression_in_history_shows_where_the_rollout_would_have_rolled_back() -> None:
    broken = T0 + timedelta(minutes=5)
    report = replay(_policy(), Timeline(broken_at=broken), start=T0, end=T0 + timedelta(minutes=30))
    assert report.outcome == "rolled back"
    assert report.reason == "AnalysisFailed"
    assert report.rolled_back_at is not None
    assert broken < report.rolled_back_at <= broken + timedelta(seconds=45)
    failed = next(s for s in report.steps if s.outcome == "rolled back")
    assert failed.evaluations[-1].verdict == "fail"


def test_a_window_too_short_leaves_the_rollout_running() -> None:
    report = replay(_policy(), Timeline(broken_at=None), start=T0, end=T0 + timedelta(minutes=3))
    assert report.outcome == "still running at the end of the window"
    assert report.steps[-1].outcome == "not reached"


class Silent:
    """A Prometheus that answers, but holds no series for any query."""

    def query(self, *, query: str, at: datetime, connection: CanaryPolicy | None = None) -> QueryOutcome:
        return QueryOutcome(query=query, value=1.0 if query == "vector(1)" else None)


class Unreachable:
    """A Prometheus the way to which is broken: every query fails, as the adapter reports it."""

    def __init__(self) -> None:
        self.queries = 0

    def query(self, *, query: str, at: datetime, connection: CanaryPolicy | None = None) -> QueryOutcome:
        self.queries += 1
        return QueryOutcome(query=query, error="Prometheus at http://prometheus:9090 unreachable: connection refused")


def test_a_window_with_no_data_at_all_is_a_problem_not_a_rollout_still_running() -> None:
    report = replay(_policy(), Silent(), start=T0, end=T0 + timedelta(minutes=30))
    assert report.problem is not None
    assert report.problem.startswith("no data from ")
    assert "spec.analysis.selector" in report.problem
    assert report.as_dict()["problem"] == report.problem


def test_an_unreachable_prometheus_stops_the_replay_at_once_with_the_cause() -> None:
    source = Unreachable()
    report = replay(_policy(), source, start=T0, end=T0 + timedelta(minutes=30))
    assert report.outcome == "not replayed"
    assert report.problem == (
        "Prometheus cannot be queried: Prometheus at http://prometheus:9090 unreachable: connection refused"
    )
    assert source.queries == 1
    assert all(not step.evaluations for step in report.steps)


def test_a_replay_that_measured_traffic_has_no_problem() -> None:
    report = replay(_policy(), Timeline(broken_at=None), start=T0, end=T0 + timedelta(minutes=3))
    assert report.problem is None


def _evaluation(second: int, verdict: Verdict, reason: str) -> AnalysisResult:
    return AnalysisResult(
        run_id="r", step_index=0, verdict=verdict, reason=reason, evaluated_at=T0 + timedelta(seconds=second)
    )


def test_runs_of_identical_evaluations_fold_into_one_with_their_count_and_span() -> None:
    evaluations = [
        *(_evaluation(5 * i, Verdict.INCONCLUSIVE, "errors: no data") for i in range(350)),
        _evaluation(1755, Verdict.PASS, "errors: canary 0 errors in 120 connections"),
        _evaluation(1760, Verdict.INCONCLUSIVE, "errors: no data"),
    ]
    folds = fold_evaluations(evaluations)
    assert [(f.count, f.first.verdict) for f in folds] == [
        (350, Verdict.INCONCLUSIVE),
        (1, Verdict.PASS),
        (1, Verdict.INCONCLUSIVE),
    ]
    assert folds[0].first.evaluated_at == T0
    assert folds[0].last.evaluated_at == T0 + timedelta(seconds=5 * 349)


def _thresholds_policy() -> CanaryPolicy:
    return _policy(metrics=[{"name": "errors", "template": "istio-tcp-connect-error-ratio", "max": 0.01}])


def test_a_sweep_replays_once_per_value_and_reports_outcome_and_detection_time() -> None:
    # From minute 5 the canary fails 3 % of its connections: above a 1 % or 2 % max, below 5 %.
    broken = T0 + timedelta(minutes=5)
    runs = sweep(
        _thresholds_policy(),
        Timeline(broken_at=broken, failing=0.03, canary_rate=40.0),
        setting="max",
        values=[0.01, 0.02, 0.05],
        start=T0,
        end=T0 + timedelta(minutes=30),
    )
    assert [run.value for run in runs] == [0.01, 0.02, 0.05]
    assert [run.report.outcome for run in runs] == ["rolled back", "rolled back", "promoted"]
    strict, loose, _ = (run.report.detection_seconds for run in runs)
    assert strict is not None
    assert loose is not None
    assert 5 * 60 < strict <= loose
    assert runs[2].as_dict()["detectionSeconds"] is None
    assert runs[0].as_dict()["outcome"] == "rolled back"


def test_a_sweep_setting_may_name_the_check_or_an_analysis_field() -> None:
    policy = _thresholds_policy()
    assert with_setting(policy, "errors.max", 0.02).spec.analysis.metrics[0].max == 0.02  # type: ignore[union-attr]
    named = with_setting(policy, "countTest.confidence", 0.999).spec.analysis.metrics[0]  # type: ignore[union-attr]
    assert named.count_test is not None
    assert named.count_test.confidence == 0.999
    assert with_setting(policy, "failureLimit", 3).spec.analysis.failure_limit == 3  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("max", "lots", "max=lots: "),
        ("countTest.confidence", 1.5, "countTest.confidence=1.5: "),
        ("maximum", 0.1, "maximum=0.1: "),
    ],
)
def test_a_sweep_value_the_policy_refuses_is_named(setting: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        with_setting(_thresholds_policy(), setting, value)


@pytest.mark.parametrize("option", ["--start", "--end"])
def test_a_time_the_replay_cannot_read_names_the_accepted_forms(option: str, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(_policy().model_dump(mode="json", exclude_none=True)))
    times = {"--start": "now-1h", "--end": "now", option: "yesterday"}
    result = CliRunner().invoke(
        app,
        [
            "replay",
            "--policy",
            str(policy),
            "--prometheus",
            "http://127.0.0.1:9",
            "--start",
            times["--start"],
            "--end",
            times["--end"],
        ],
    )
    assert result.exit_code == 2, result.output
    assert f"invalid {option}: 'yesterday' is not a time; use RFC 3339 (" in result.stderr
    assert "Unix seconds" in result.stderr
    assert "now-DURATION (now-2h30m)" in result.stderr


def test_a_replay_shows_the_recorded_share_but_never_holds_on_it() -> None:
    # The history's canary got 20 % of new connections at every step: not the replayed 0/50/100 schedule,
    # so a held step would be the replay's artefact. The share is shown; the policy's hold does not apply.
    policy = _policy(trafficShare={"check": "fail"})
    report = replay(policy, Timeline(broken_at=None), start=T0, end=T0 + timedelta(minutes=30))
    assert report.outcome == "promoted"
    shares = [step.recorded_share for step in report.steps]
    assert shares[0] is not None
    assert shares[0]["share"] == 0.2
    assert shares[0]["off"] is True  # 20 % at weight 0: far off, as recorded
    assert shares[3] is None  # weight 100: the stable side is a baseline, no share
    assert report.as_dict()["steps"][1]["recordedShare"]["weight"] == 20
