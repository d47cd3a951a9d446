"""Hypothesis drives the state machine through random ticks, crashes, edits, verdicts and commands."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from controller.core.effects import WriteRoute
from controller.core.status import (
    HISTORY_LIMIT,
    TERMINAL_PHASES,
    CommandKind,
    HistoryEntry,
    Phase,
    RolloutStatus,
    Verdict,
)
from tests.rollout_sim import Sim, pointer_get
from tests.test_rollout import seed_policy, seed_target


def _new_entries(before: list[HistoryEntry], after: list[HistoryEntry]) -> list[HistoryEntry]:
    """The entries a pass added. The history keeps its last HISTORY_LIMIT entries, so once full, old ones fall
    off the front as new ones arrive and the lengths no longer tell."""
    for added in range(len(after) + 1):
        if (before + after[len(after) - added :])[-HISTORY_LIMIT:] == after:
            return after[len(after) - added :]
    raise AssertionError("the history was rewritten, not appended to")


class RolloutMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sim = Sim(seed_policy(steps=[0, 20, 50, 100], stepDuration="1m"), seed_target())
        self.edited_by_others = False
        self.last_step_written = -1
        self.run_id: str | None = None
        self.revisions = 1
        self.promoted = False  # the route revision never changes here: a promotion is final

    def _live_route(self) -> list[Any] | None:
        if self.sim.live is None:
            return None
        return list(pointer_get(self.sim.live, "/spec/tcp/0/route"))

    @rule(seconds=st.sampled_from([0, 1, 5, 30, 61, 700]), crash=st.booleans())
    def tick(self, seconds: int, crash: bool) -> None:
        given = self.sim.status
        given_json = given.model_dump_json()
        before = self.sim.status.model_copy(deep=True)
        revision_before = before.revision
        decision = self.sim.tick(seconds, apply=not crash)
        after = decision.status
        # The stores share the status they parsed between passes, and write through what they saved: a decision
        # never changes the status it is given, and what it decides reads back from its stored form unchanged.
        assert given.model_dump_json() == given_json
        assert RolloutStatus.model_validate_json(after.model_dump_json(exclude_none=True)) == after
        assert not any(h.reason == "InternalError" for h in after.history), after.last_error
        if after.run_id != self.run_id:
            self.run_id = after.run_id
            self.last_step_written = -1
        added = _new_entries(before.history, after.history)
        applied = {h.message.split(" ")[0] for h in added if h.reason == "CommandApplied"}
        complete = len(added) < HISTORY_LIMIT  # else the pass alone filled the history: some entries fell off
        for effect in decision.effects:
            if isinstance(effect, WriteRoute) and effect.purpose == "step":
                index = after.step_index
                assert effect.weight == self.sim.policy.spec.schedule.steps[index]
                jumped_by_promote = "promote" in applied or before.paused_reason == "promote"
                last = len(self.sim.policy.spec.schedule.steps) - 1
                assert (
                    not complete
                    or index in {self.last_step_written, self.last_step_written + 1}
                    or (jumped_by_promote and index == last)
                ), (self.last_step_written, index)
                self.last_step_written = index
        # After Promoted, no write ever lowers the canary's weight (no human command can ask for it there:
        # retry, abort and pause are refused on a promoted run), whatever changed: tuning, template, edits.
        if self.promoted:
            # Stronger than "never lowers the canary's weight": nothing is written at all.
            written = [e for e in decision.effects if isinstance(e, WriteRoute)]
            assert not written, f"a write after promotion: {written}"
        if after.phase == Phase.PROMOTED:
            self.promoted = True
        # Terminal phases absorb, unless a retry or a new revision started a new run.
        if before.phase in TERMINAL_PHASES and after.phase != before.phase:
            assert not complete or "retry" in applied or after.revision != revision_before
        # Every command taken this pass was applied or refused, with a reason.
        for command_id in set(after.processed_commands) - set(before.processed_commands):
            assert not complete or any(
                command_id in h.message and h.reason in {"CommandApplied", "CommandRefused"} for h in added
            )
        # A rollback ends only with the original route in place.
        if after.phase in {Phase.ROLLED_BACK, Phase.ABORTED} and before.phase != after.phase:
            if after.original is not None:
                assert self._live_route() == after.original.destinations
            self.edited_by_others = False

    @rule(canary=st.integers(0, 100))
    def someone_edits_the_weights(self, canary: int) -> None:
        live = self._live_route()
        if live is None or len(live) < 2:
            return
        live[0]["weight"], live[1]["weight"] = 100 - canary, canary
        assert self.sim.live is not None
        self.sim.live["spec"]["tcp"][0]["route"] = live
        self.edited_by_others = True

    @rule(verdict=st.sampled_from([Verdict.PASS, Verdict.FAIL, Verdict.INCONCLUSIVE, None]))
    def analysis_says(self, verdict: Verdict | None) -> None:
        self.sim.verdict = verdict

    @rule(ready=st.booleans())
    def canary_readiness(self, ready: bool) -> None:
        self.sim.ready = ready

    @rule(kind=st.sampled_from(list(CommandKind)))
    def person_commands(self, kind: CommandKind) -> None:
        self.sim.command(kind)

    @rule()
    def target_deleted(self) -> None:
        self.sim.live = None

    @rule()
    def target_recreated(self) -> None:
        self.sim.live = copy.deepcopy(self.sim.original)
        self.edited_by_others = True

    @rule(duration=st.sampled_from(["30s", "1m", "5m"]))
    def operator_tunes_the_step_duration(self, duration: str) -> None:
        self.sim.policy = seed_policy(steps=[0, 20, 50, 100], stepDuration=duration)

    @rule()
    def new_revision(self) -> None:
        self.revisions += 1
        self.sim.revision = f"rev-{self.revisions}"

    @invariant()
    def canary_never_exceeds_the_current_step(self) -> None:
        status = self.sim.status
        if self.edited_by_others or status.phase not in {Phase.PROGRESSING, Phase.PAUSED} or status.step_index < 0:
            return
        weight = self.sim.canary_weight()
        if weight is not None:
            assert weight <= self.sim.policy.spec.schedule.steps[status.step_index]


RolloutMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)
TestRolloutMachine = RolloutMachine.TestCase
# Passing takes seconds. A found failure is shrunk for up to Hypothesis's 300 s limit; the suite's 120 s
# timeout would cut that short and report a confusing "Flaky" error instead of the minimal failing steps.
TestRolloutMachine = pytest.mark.timeout(400)(TestRolloutMachine)
