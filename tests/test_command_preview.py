"""What canaryctl says a command will do: refused exactly when the state machine refuses it, in its words."""

from __future__ import annotations

import pytest

from controller.core.status import TERMINAL_PHASES, Command, CommandKind, Phase, RolloutStatus, Verdict
from controller.core.status_view import preview_command
from tests.rollout_sim import Sim
from tests.test_rollout import seed_policy, seed_target


def sim_in(phase: str) -> Sim:
    """A simulated rollout brought to ``phase`` through the state machine itself."""
    sim = Sim(seed_policy(stepDuration="1m"), seed_target())
    if phase == "Pending":
        sim.ready = False
        sim.tick()
    elif phase == "Progressing":
        sim.run_until({Phase.PROGRESSING})
    elif phase == "Paused":
        sim.run_until({Phase.PROGRESSING})
        sim.command(CommandKind.PAUSE)
        sim.tick(1)
    elif phase == "Promoted":
        sim.run_until({Phase.PROMOTED})
    elif phase == "RolledBack":
        sim.run_until({Phase.PROGRESSING})
        sim.verdict = Verdict.FAIL
        sim.run_until({Phase.ROLLED_BACK}, step=61)
    elif phase == "Aborted":
        sim.run_until({Phase.PROGRESSING})
        sim.command(CommandKind.ABORT)
        sim.run_until({Phase.ABORTED}, step=1)
    assert sim.status.phase == phase, sim.status.message
    return sim


PHASES = ["Pending", "Progressing", "Paused", "Promoted", "RolledBack", "Aborted"]


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("kind", list(CommandKind))
def test_a_command_is_refused_in_advance_exactly_when_the_controller_refuses_it(phase: str, kind: CommandKind) -> None:
    sim = sim_in(phase)
    preview = preview_command(kind, sim.status)
    command_id = sim.command(kind)
    sim.tick(1)
    refused = [h.message for h in sim.status.history if h.reason == "CommandRefused" and command_id in h.message]
    assert preview.accepted == (not refused)
    if refused:
        assert refused[0].endswith(f"refused: {preview.says}")


def status(phase: Phase, **changes: object) -> RolloutStatus:
    fields: dict[str, object] = {"phase": phase, "run_id": "r-1", "step_index": 1, "weight": 20}
    fields.update(changes)
    return RolloutStatus.model_validate(fields)


def pending(*kinds: CommandKind) -> list[Command]:
    return [Command(id=f"c{n}", kind=kind, by="alice") for n, kind in enumerate(kinds)]


class TestPreview:
    @pytest.mark.parametrize("phase", sorted(TERMINAL_PHASES))
    def test_only_retry_is_accepted_once_the_run_has_ended(self, phase: Phase) -> None:
        accepted = {kind for kind in CommandKind if preview_command(kind, status(phase)).accepted}
        assert accepted == ({CommandKind.RETRY} if phase != Phase.PROMOTED else set())

    def test_a_pause_says_where_the_rollout_stops(self) -> None:
        preview = preview_command(CommandKind.PAUSE, status(Phase.PROGRESSING))
        assert (
            preview.says == "the rollout pauses at weight 20: the weight stays and the step's clock stops until resume"
        )

    def test_a_resume_after_drift_says_the_weight_is_written_again(self) -> None:
        preview = preview_command(CommandKind.RESUME, status(Phase.PAUSED, paused_reason="drift"))
        assert preview.says == "the step's weight 20 is written again and the step starts over"

    def test_commands_still_pending_come_first(self) -> None:
        paused_by_then = preview_command(CommandKind.PAUSE, status(Phase.PROGRESSING), pending(CommandKind.PAUSE))
        assert not paused_by_then.accepted
        assert paused_by_then.says == "only a Pending or Progressing rollout can be paused (it is Paused)"
        aborting = preview_command(CommandKind.RETRY, status(Phase.PROGRESSING), pending(CommandKind.ABORT))
        assert aborting.says == "only a RolledBack, Failed or Aborted run can be retried (it is RollingBack)"

    def test_a_pending_command_that_will_be_refused_changes_nothing(self) -> None:
        preview = preview_command(CommandKind.PAUSE, status(Phase.PROGRESSING), pending(CommandKind.RESUME))
        assert preview.accepted

    def test_a_policy_without_status_is_left_to_the_controller(self) -> None:
        preview = preview_command(CommandKind.PROMOTE, None)
        assert preview.accepted
        assert "has not run this policy yet" in preview.says
