"""The dashboard's pure view model: counts per step, needs-attention, countdown, drift and runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from controller.core.dashboard_view import attention, increments, next_step_in, route_view, runs
from controller.core.status import HistoryEntry, PauseReason, Phase, RolloutStatus, Stall

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_increments_tile_the_range_across_a_reset_and_a_series_born_inside_it() -> None:
    steady = [(0.0, 10.0), (2.0, 14.0), (4.0, 3.0), (6.0, 5.0)]  # reset between 2 and 4: it counted 3
    born = [(4.0, 7.0), (6.0, 9.0)]  # first seen at 4: its 7 were counted in the step before
    assert increments([steady, born], first_at=0.0, step=2.0) == {2.0: 4.0, 4.0: 10.0, 6.0: 4.0}


def test_a_series_there_from_the_start_only_gives_the_base() -> None:
    assert increments([[(0.0, 100.0)]], first_at=0.0, step=2.0) == {}


def test_paused_failed_and_held_rollouts_need_attention_and_a_moving_one_does_not() -> None:
    moving = RolloutStatus(phase=Phase.PROGRESSING, step_index=1, weight=20)
    assert attention(moving) is None
    drifted = RolloutStatus(phase=Phase.PAUSED, paused_reason=PauseReason.DRIFT)
    assert "drift" in (attention(drifted) or "")
    rolled_back = RolloutStatus(phase=Phase.ROLLED_BACK, rollback_reason="connect-errors failed")
    assert attention(rolled_back) == "RolledBack: connect-errors failed"
    held = RolloutStatus(phase=Phase.PROGRESSING, stall=Stall.INCONCLUSIVE, message="no data for 10m")
    assert attention(held) == "held: no data for 10m"
    assert attention(None, problem="unreadable status") == "unreadable status"


def test_the_countdown_runs_from_when_the_step_went_live_and_stops_at_zero() -> None:
    status = RolloutStatus(
        phase=Phase.PROGRESSING, step_index=1, schedule=[0, 20, 100], step_started_at=NOW - timedelta(seconds=30)
    )
    assert next_step_in(status, step_seconds=120, now=NOW) == 90
    assert next_step_in(status, step_seconds=10, now=NOW) == 0
    last = status.model_copy(update={"step_index": 2})
    assert next_step_in(last, step_seconds=120, now=NOW) is None
    paused = status.model_copy(update={"phase": Phase.PAUSED})
    assert next_step_in(paused, step_seconds=120, now=NOW) is None


def test_drift_is_a_live_weight_other_than_the_one_written() -> None:
    live = [{"destination": "a", "weight": 80}, {"destination": "b", "weight": 20}]
    assert route_view(live, expected_weights=[80, 20])["drift"] is False
    changed = route_view([{**live[0], "weight": 100}, {**live[1], "weight": 0}], expected_weights=[80, 20])
    assert changed["drift"] is True
    assert changed["desired"] == [{"destination": "a", "weight": 80}, {"destination": "b", "weight": 20}]


def test_runs_are_read_from_the_history_with_their_outcome_and_time_per_step() -> None:
    t = NOW

    def entry(seconds: int, before: Phase | None, after: Phase, reason: str) -> HistoryEntry:
        return HistoryEntry(time=t + timedelta(seconds=seconds), from_phase=before, to_phase=after, reason=reason)

    status = RolloutStatus(
        phase=Phase.PROGRESSING,
        run_id="run-2",
        history=[
            entry(0, None, Phase.PROGRESSING, "Started"),
            entry(60, Phase.PROGRESSING, Phase.PROGRESSING, "StepAdvanced"),
            entry(90, Phase.PROGRESSING, Phase.ROLLED_BACK, "Failed"),
            entry(200, Phase.ROLLED_BACK, Phase.PROGRESSING, "Retry"),
        ],
    )
    found = runs(status)
    assert [run["outcome"] for run in found] == ["RolledBack", None]
    assert [step["seconds"] for step in found[0]["steps"]] == [60.0, 30.0]
    assert found[1]["runId"] == "run-2"
    assert found[0]["runId"] is None


def test_after_a_rollback_the_desired_route_is_the_restored_original_and_drift_is_a_difference_from_it() -> None:
    original = [{"destination": "tcp-echo/v1:9000", "weight": None}]
    restored = route_view(original, expected_weights=None, restored=original)
    assert restored == {"live": original, "desired": original, "drift": False}
    edited = [{"destination": "tcp-echo/v1:9000", "weight": 50}, {"destination": "tcp-echo/v2:9000", "weight": 50}]
    assert route_view(edited, expected_weights=None, restored=original)["drift"] is True
