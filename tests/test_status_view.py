"""What canaryctl status shows: durations, shortened text, rows computed from a status and ``now``, JSON items."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from controller.core.status import (
    Command,
    CommandKind,
    Condition,
    HistoryEntry,
    Phase,
    RolloutStatus,
    Stall,
    with_conditions,
)
from controller.core.status_view import (
    ITEM_KEYS,
    NOT_SEEN,
    TABLE_HEADERS,
    StatusRow,
    cut,
    display_phase,
    human_duration,
    pending_commands,
    plain_table,
    row_json,
    status_list_document,
    status_row,
    table_cells,
)

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def command(kind: CommandKind, number: int = 1) -> Command:
    return Command(id=f"c{number}", kind=kind, by="alice", at=NOW - timedelta(seconds=number))


def progressing(**changes: object) -> RolloutStatus:
    status = RolloutStatus(
        phase=Phase.PROGRESSING,
        revision="0123456789abcdef",
        run_id="01234567-1",
        run_number=1,
        step_index=1,
        weight=20,
        step_started_at=NOW - timedelta(seconds=65),
        last_verdict="pass: 0 connection errors",
        message="step 2/4: 55s left",
    )
    # Validated, so a change reads as a persisted status would (``last_verdict="fail: why"`` included).
    return RolloutStatus.model_validate(with_conditions(status, NOW, 4).model_dump(by_alias=False) | changes)


def row_of(
    status: RolloutStatus | None,
    commands: list[Command] | None = None,
    *,
    step_count: int | None = None,
    problem: str | None = None,
) -> StatusRow:
    return status_row(
        namespace="shop",
        name="tcp-echo",
        source="crd",
        status=status,
        commands=commands or [],
        now=NOW,
        step_count=step_count,
        problem=problem,
    )


class TestHumanDuration:
    @pytest.mark.parametrize(
        ("seconds", "shown"),
        [
            (0, "0s"),
            (59.9, "59s"),
            (60, "1m00s"),
            (65, "1m05s"),
            (3599, "59m59s"),
            (3600, "1h00m"),
            (2 * 3600 + 3 * 60 + 59, "2h03m"),
            (86400, "1d00h"),
            (3 * 86400 + 4 * 3600 + 5, "3d04h"),
        ],
    )
    def test_shows_the_two_most_significant_units(self, seconds: float, shown: str) -> None:
        assert human_duration(seconds) == shown

    def test_a_negative_duration_from_clock_skew_reads_as_zero(self) -> None:
        assert human_duration(-5) == "0s"


class TestCut:
    def test_short_text_is_kept_as_it_is(self) -> None:
        assert cut("pass", 30) == "pass"

    def test_text_of_exactly_the_width_is_not_cut(self) -> None:
        assert cut("x" * 30, 30) == "x" * 30

    def test_long_text_ends_in_an_ellipsis_within_the_width(self) -> None:
        shown = cut("a" * 100, 30)
        assert len(shown) == 30
        assert shown == "a" * 29 + "…"

    def test_newlines_and_runs_of_spaces_become_one_space(self) -> None:
        assert cut("route\n  write   failed\n", 50) == "route write failed"

    @pytest.mark.parametrize("empty", [None, "", "  \n "])
    def test_nothing_to_show_is_a_dash(self, empty: str | None) -> None:
        assert cut(empty, 30) == "-"


class TestPendingCommands:
    def test_commands_the_controller_consumed_are_not_pending(self) -> None:
        commands = [command(CommandKind.PAUSE, 1), command(CommandKind.RESUME, 2)]
        status = progressing(processed_commands=["c1"])
        assert [c.id for c in pending_commands(commands, status)] == ["c2"]

    def test_without_a_status_every_command_is_pending(self) -> None:
        commands = [command(CommandKind.PAUSE, 1)]
        assert pending_commands(commands, None) == commands


class TestStatusRow:
    def test_time_in_step_is_counted_from_the_step_start_to_now(self) -> None:
        row = row_of(progressing())
        assert row.seconds_in_step == 65
        assert table_cells(row)[6] == "1m05s"

    def test_time_in_step_is_frozen_while_paused(self) -> None:
        row = row_of(progressing(phase=Phase.PAUSED, paused_elapsed_seconds=30.0))
        assert row.seconds_in_step == 30

    def test_there_is_no_time_in_step_before_the_weight_is_live(self) -> None:
        row = row_of(progressing(step_started_at=None))
        assert row.seconds_in_step is None
        assert table_cells(row)[6] == "-"

    @pytest.mark.parametrize("phase", [Phase.PROMOTED, Phase.ROLLED_BACK, Phase.FAILED, Phase.ABORTED])
    def test_there_is_no_time_in_step_once_the_run_has_ended(self, phase: Phase) -> None:
        assert row_of(progressing(phase=phase)).seconds_in_step is None

    def test_a_step_start_in_the_future_reads_as_zero(self) -> None:
        assert row_of(progressing(step_started_at=NOW + timedelta(seconds=3))).seconds_in_step == 0

    def test_a_step_start_without_a_zone_is_taken_as_utc(self) -> None:
        naive = (NOW - timedelta(seconds=10)).replace(tzinfo=None)
        assert row_of(progressing(step_started_at=naive)).seconds_in_step == 10

    def test_the_display_step_comes_from_the_status(self) -> None:
        assert row_of(progressing()).step == "2/4"

    def test_without_a_display_step_the_schedule_length_gives_it(self) -> None:
        assert row_of(progressing(step=""), step_count=5).step == "2/5"

    def test_without_a_display_step_or_a_schedule_the_total_is_unknown(self) -> None:
        assert row_of(progressing(step="")).step == "2/?"
        assert row_of(RolloutStatus()).step is None

    def test_only_the_last_ten_history_entries_are_kept(self) -> None:
        history = [HistoryEntry(time=NOW, from_phase=None, to_phase=Phase.PENDING, reason=f"r{n}") for n in range(12)]
        row = row_of(progressing(history=history))
        assert [h.reason for h in row.history] == [f"r{n}" for n in range(2, 12)]

    def test_a_policy_without_a_status_has_no_phase(self) -> None:
        row = row_of(None)
        assert row.phase is None
        assert table_cells(row)[3:] == ("-", "-", "-", "-", "-", NOT_SEEN)

    def test_an_unreadable_status_is_shown_as_the_last_error(self) -> None:
        row = row_of(None, problem="ConfigMap canary-system/x: data.status is not JSON")
        assert row.last_error == "ConfigMap canary-system/x: data.status is not JSON"


class TestDisplayPhase:
    def test_a_pending_command_is_shown_beside_the_phase(self) -> None:
        assert display_phase(row_of(progressing(), [command(CommandKind.PAUSE)])) == "Progressing (pause pending)"

    def test_several_pending_commands_are_listed_oldest_first(self) -> None:
        commands = [command(CommandKind.PAUSE, 1), command(CommandKind.RESUME, 2)]
        assert display_phase(row_of(progressing(), commands)) == "Progressing (pause, resume pending)"

    def test_a_consumed_command_is_not_shown(self) -> None:
        row = row_of(progressing(processed_commands=["c1"]), [command(CommandKind.PAUSE, 1)])
        assert display_phase(row) == "Progressing"

    def test_a_command_for_a_policy_without_status_is_still_shown(self) -> None:
        assert display_phase(row_of(None, [command(CommandKind.ABORT)])) == "abort pending"


class TestTableCells:
    def test_cells_follow_the_headers(self) -> None:
        cells = table_cells(row_of(progressing()))
        assert dict(zip(TABLE_HEADERS, cells, strict=True)) == {
            "NAMESPACE": "shop",
            "NAME": "tcp-echo",
            "SOURCE": "crd",
            "PHASE": "Progressing",
            "STEP": "2/4",
            "WEIGHT": "20",
            "IN STEP": "1m05s",
            "VERDICT": "pass",
            "REASON": "step 2/4: 55s left",
        }

    def test_a_held_steps_reason_is_shown_in_full_however_long(self) -> None:
        held = "step 1/4 held: no Prometheus URL (set CANARY_PROMETHEUS_URL or spec.analysis.prometheus.url)"
        verdict = "inconclusive: no Prometheus URL (set CANARY_PROMETHEUS_URL or spec.analysis.prometheus.url)"
        cells = table_cells(row_of(progressing(message=held, last_verdict=verdict)))
        assert cells[7] == "inconclusive"
        assert cells[8] == held

    def test_an_analysis_that_did_not_pass_is_added_when_the_message_does_not_say_it(self) -> None:
        verdict = "inconclusive: errors: only 3 connections, 100 needed " + "x" * 80
        cells = table_cells(row_of(progressing(message="step 2/4 at weight 20", last_verdict=verdict)))
        assert cells[8] == f"step 2/4 at weight 20; last analysis: {verdict}"

    def test_the_last_error_is_added_in_full(self) -> None:
        error = "route write failed: " + "the API server answered 500; " * 6
        cells = table_cells(row_of(progressing(last_error=error)))
        assert cells[8] == f"step 2/4: 55s left; last error: {error.strip()}"

    def test_an_error_the_message_already_says_is_not_repeated(self) -> None:
        failed = progressing(phase=Phase.FAILED, message="target gone: VirtualService shop/x not found")
        cells = table_cells(row_of(failed.model_copy(update={"last_error": "VirtualService shop/x not found"})))
        assert cells[8] == "target gone: VirtualService shop/x not found"

    def test_newlines_in_a_reason_become_spaces(self) -> None:
        assert table_cells(row_of(progressing(message="held:\n  canary\tnot ready")))[8] == "held: canary not ready"

    def test_an_unreadable_status_is_the_reason(self) -> None:
        row = row_of(None, problem="ConfigMap canary-system/x: data.status is not JSON")
        assert table_cells(row)[8] == "last error: ConfigMap canary-system/x: data.status is not JSON"

    def test_a_weight_of_zero_is_shown_as_zero(self) -> None:
        assert table_cells(row_of(progressing(step_index=0, weight=0)))[5] == "0"


class TestPlainTable:
    def test_columns_are_aligned_and_lines_have_no_trailing_spaces(self) -> None:
        text = plain_table(("A", "LONGER"), [("xyz", "1"), ("x", "")])
        assert text == "A     LONGER\nxyz   1\nx\n"


class TestJson:
    def test_an_item_has_exactly_the_documented_keys(self) -> None:
        item = row_json(row_of(progressing(), [command(CommandKind.PAUSE)]))
        assert tuple(item) == ITEM_KEYS

    def test_values_come_from_the_status_in_full(self) -> None:
        long_error = "route write failed: " + "x" * 200
        status = progressing(last_error=long_error)
        item = row_json(row_of(status, [command(CommandKind.PAUSE)]))
        assert item["phase"] == "Progressing"
        assert item["step"] == "2/4"
        assert item["stepIndex"] == 1
        assert item["weight"] == 20
        assert item["stepStartedAt"] == "2024-05-01T11:58:55Z"
        assert item["secondsInStep"] == 65
        assert item["lastVerdict"] == "pass: 0 connection errors"
        assert item["lastError"] == long_error
        assert item["message"] == "step 2/4: 55s left"
        assert item["runId"] == "01234567-1"
        assert item["pendingCommands"] == [{"id": "c1", "kind": "pause", "by": "alice", "at": "2024-05-01T11:59:59Z"}]

    def test_history_and_conditions_use_the_kubernetes_spellings(self) -> None:
        entry = HistoryEntry(time=NOW, from_phase=Phase.PENDING, to_phase=Phase.PROGRESSING, reason="StepStarted")
        item = row_json(row_of(progressing(history=[entry])))
        assert item["history"] == [
            {
                "time": "2024-05-01T12:00:00Z",
                "from": "Pending",
                "to": "Progressing",
                "reason": "StepStarted",
                "message": "",
            }
        ]
        conditions = {c["type"]: c["status"] for c in item["conditions"]}
        assert conditions == {"Ready": "True", "Succeeded": "Unknown", "Reconciling": "True"}
        assert set(item["conditions"][0]) == {"type", "status", "reason", "message", "lastTransitionTime"}

    def test_times_in_other_zones_are_written_in_utc(self) -> None:
        plus_two = datetime(2024, 5, 1, 15, 0, 0, tzinfo=timezone(timedelta(hours=2)))
        condition = Condition(type="Ready", status="True", reason="InControl", last_transition_time=plus_two)
        item = row_json(row_of(progressing(conditions=[condition])))
        assert item["conditions"][0]["lastTransitionTime"] == "2024-05-01T13:00:00Z"

    def test_the_stall_reason_is_its_short_name_or_null_while_moving(self) -> None:
        assert row_json(row_of(progressing(stall=Stall.AWAITING_ANALYSIS)))["stall"] == "AwaitingAnalysis"
        assert row_json(row_of(progressing()))["stall"] is None

    def test_a_policy_without_a_status_has_nulls_and_empty_lists(self) -> None:
        item = row_json(row_of(None))
        assert item["phase"] is None
        assert item["stepIndex"] == -1
        assert item["history"] == []
        assert item["conditions"] == []

    def test_the_document_is_a_status_list_and_serialises_to_json(self) -> None:
        document = status_list_document([row_of(progressing())])
        assert document["apiVersion"] == "canaryctl.dev/v1alpha1"
        assert document["kind"] == "StatusList"
        assert len(document["items"]) == 1
        assert json.loads(json.dumps(document)) == document
