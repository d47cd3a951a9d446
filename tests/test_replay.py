"""Replay drives the real state machine and analysis over scripted history."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from controller.core.measurement import QueryOutcome
from controller.core.policy import CanaryPolicy
from controller.service.replay import replay
from tests.rollout_sim import T0
from tests.test_prometheus_analysis import _policy


class Timeline:
    """Connections per second of each workload; the canary fails every connection after ``broken_at``."""

    def __init__(self, broken_at: datetime | None) -> None:
        self.broken_at = broken_at

    def query(self, *, query: str, at: datetime, connection: CanaryPolicy | None = None) -> QueryOutcome:
        workload = re.search(r'destination_workload="([^"]+)"', query)
        window = re.search(r"offset (\d+)s", query)
        assert workload is not None
        assert window is not None
        seconds = int(window.group(1))
        rate = 10.0 if workload.group(1) == "tcp-echo-v2" else 40.0
        total = rate * seconds
        errors = 0.0
        if workload.group(1) == "tcp-echo-v2" and self.broken_at is not None and at > self.broken_at:
            errors = rate * min(seconds, (at - self.broken_at).total_seconds())
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
