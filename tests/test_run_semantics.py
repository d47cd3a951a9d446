"""What starts a run, and what never moves traffic (issue 12, item 1), on the pure state machine.

A new run starts only when *what is rolled out* changes: the canary pod template, or the route and its
destinations. Tuning fields apply to the run in flight. After Promoted the route stays as promotion left it.
The operator journeys against the API emulator are in ``tests/integration/test_operator_journeys.py``.
"""

from __future__ import annotations

import copy
from typing import Any

from controller.core.effects import RecordEvent, WriteRoute
from controller.core.policy import CanaryPolicy
from controller.core.rollout import revision_of, route_revision_of
from controller.core.status import CommandKind, Phase, RolloutStatus, Stall, Verdict, with_conditions
from tests.rollout_sim import Sim, pointer_get
from tests.test_rollout import seed_policy, seed_target

TEMPLATE_A = {"spec": {"containers": [{"name": "tcp-echo", "image": "tcp-echo-server:1.3"}]}}
TEMPLATE_B = {"spec": {"containers": [{"name": "tcp-echo", "image": "tcp-echo-server:1.4"}]}}


def observe(sim: Sim, policy: CanaryPolicy, template: dict[str, Any] | None = TEMPLATE_A) -> None:
    """Point the simulation at ``policy`` as the service would see it: its revisions from the real hashes."""
    sim.policy = policy
    sim.revision = revision_of(policy, template)
    sim.route_revision = route_revision_of(policy)


def edited(policy: CanaryPolicy, change: Any) -> CanaryPolicy:
    doc = policy.model_dump(mode="json", by_alias=True, exclude_none=True)
    change(doc)
    return CanaryPolicy.model_validate(doc)


def route(sim: Sim) -> list[Any]:
    assert sim.live is not None
    return copy.deepcopy(pointer_get(sim.live, "/spec/tcp/0/route"))


def writes(decisions: list[Any]) -> list[WriteRoute]:
    return [e for d in decisions for e in d.effects if isinstance(e, WriteRoute)]


def promoted_sim() -> Sim:
    sim = Sim(seed_policy(stepDuration="1m"), seed_target())
    observe(sim, sim.policy)
    sim.run_until({Phase.PROMOTED})
    assert sim.canary_weight() == 100
    return sim


def test_a_tuning_edit_after_promotion_moves_nothing() -> None:
    sim = promoted_sim()
    promoted_route = route(sim)
    observe(sim, seed_policy(stepDuration="5m"))
    before = len(sim.decisions)
    for _ in range(10):
        sim.tick(10)
        assert route(sim) == promoted_route
    assert sim.status.phase == Phase.PROMOTED
    assert sim.status.run_number == 1
    assert writes(sim.decisions[before:]) == []


def test_a_promote_command_then_a_tuning_edit_keeps_the_canary_at_full_weight() -> None:
    # The field report: promote, then a changed stepDuration sent all traffic back to v1.
    sim = Sim(seed_policy(stepDuration="1m"), seed_target())
    observe(sim, sim.policy)
    sim.verdict = Verdict.INCONCLUSIVE
    sim.run_until({Phase.PROGRESSING})
    sim.command(CommandKind.PROMOTE)
    sim.run_until({Phase.PROMOTED}, step=5)
    assert sim.canary_weight() == 100
    observe(sim, seed_policy(stepDuration="3m"))
    for _ in range(6):
        sim.tick(10)
        assert sim.canary_weight() == 100, sim.status.message
    assert sim.status.phase == Phase.PROMOTED


def test_a_new_canary_template_after_promotion_is_reported_once_and_moves_nothing() -> None:
    sim = promoted_sim()
    promoted_route = route(sim)
    observe(sim, sim.policy, TEMPLATE_B)
    decision = sim.tick(10)
    warnings = [e for e in decision.effects if isinstance(e, RecordEvent) and e.event_type == "Warning"]
    expected = (
        "tcp-echo-v2 changed after promotion and carries 100 % of traffic; "
        "to canary a change, point a policy at a new canary"
    )
    assert [(w.reason, w.message) for w in warnings] == [("ChangedAfterPromotion", expected)]
    assert sim.status.message == expected
    assert sim.status.phase == Phase.PROMOTED
    assert route(sim) == promoted_route
    for _ in range(5):
        decision = sim.tick(10)
        assert decision.effects == [], "reported once, not at every pass"
        assert route(sim) == promoted_route


def test_pointing_a_promoted_policy_at_a_new_canary_starts_from_the_route_as_promotion_left_it() -> None:
    sim = promoted_sim()
    promoted_route = route(sim)

    def to_v3(doc: dict[str, Any]) -> None:
        doc["spec"]["target"]["stable"]["subset"] = "v2"
        doc["spec"]["target"]["canary"]["subset"] = "v3"

    # The route gains a v3 destination at weight 0, as a person adds it before pointing the policy at it.
    assert sim.live is not None
    live_route = pointer_get(sim.live, "/spec/tcp/0/route")
    live_route.append({"destination": {"host": "tcp-echo", "port": {"number": 9000}, "subset": "v3"}, "weight": 0})
    with_v3 = route(sim)
    observe(sim, edited(sim.policy, to_v3))
    sim.tick(1)
    assert sim.status.run_number == 2
    assert sim.status.phase == Phase.PROGRESSING
    assert sim.status.original is not None
    assert sim.status.original.destinations == with_v3, "the new run's original is the route as found now"
    by_subset = {d["destination"]["subset"]: d.get("weight", 0) for d in route(sim)}
    assert by_subset["v1"] == 0, "the old stable must never get traffic back"
    assert by_subset["v2"] == 100
    assert by_subset["v3"] == 0
    assert promoted_route != with_v3


def test_a_new_template_after_a_rollback_starts_a_new_run_from_the_restored_route() -> None:
    sim = Sim(seed_policy(stepDuration="1m"), seed_target())
    observe(sim, sim.policy)
    sim.run_until({Phase.PROGRESSING})
    sim.tick(1)
    sim.tick(61)
    sim.tick(1)
    assert sim.canary_weight() == 20
    sim.verdict = Verdict.FAIL
    sim.run_until({Phase.ROLLED_BACK}, step=1)
    restored = route(sim)
    assert sim.live == sim.original
    sim.verdict = Verdict.PASS
    observe(sim, sim.policy, TEMPLATE_B)
    sim.tick(1)
    assert sim.status.run_number == 2
    assert sim.status.phase == Phase.PROGRESSING
    assert sim.status.original is not None
    assert sim.status.original.destinations == restored
    assert sim.canary_weight() == 0


def test_a_new_run_after_a_rollback_takes_the_route_as_found_not_the_older_snapshot() -> None:
    sim = Sim(seed_policy(stepDuration="1m"), seed_target())
    observe(sim, sim.policy)
    sim.run_until({Phase.PROGRESSING})
    sim.verdict = Verdict.FAIL
    sim.run_until({Phase.ROLLED_BACK}, step=1)
    # A person edits the route after the rollback (here: an explicit 100/0 split with both destinations).
    assert sim.live is not None
    sim.live["spec"]["tcp"][0]["route"] = [
        {"destination": {"host": "tcp-echo", "port": {"number": 9000}, "subset": "v1"}, "weight": 100},
        {"destination": {"host": "tcp-echo", "port": {"number": 9000}, "subset": "v2"}, "weight": 0},
    ]
    edited_route = route(sim)
    sim.verdict = Verdict.PASS
    observe(sim, sim.policy, TEMPLATE_B)
    sim.tick(1)
    assert sim.status.original is not None
    assert sim.status.original.destinations == edited_route
    sim.verdict = Verdict.FAIL
    sim.run_until({Phase.ROLLED_BACK}, step=1)
    assert route(sim) == edited_route


def test_a_tuning_edit_mid_run_applies_to_the_step_in_flight_without_restarting() -> None:
    sim = Sim(seed_policy(stepDuration="10m"), seed_target())
    observe(sim, sim.policy)
    sim.run_until({Phase.PROGRESSING})
    sim.tick(1)
    run_id = sim.status.run_id
    sim.tick(120)
    assert sim.canary_weight() == 0, "10 minutes a step: still at step 1 after 2"
    observe(sim, seed_policy(stepDuration="1m"))
    sim.tick(1)
    sim.tick(1)
    assert sim.status.run_id == run_id
    assert sim.status.run_number == 1
    assert sim.canary_weight() == 20, "the shorter step applies to the step in flight"
    assert not [h for h in sim.status.history if h.reason in {"NewRevision", "RestoreRetried"}]


def test_a_changed_schedule_mid_run_holds_the_weight_and_continues_from_the_next_step() -> None:
    sim = Sim(seed_policy(stepDuration="1m"), seed_target())
    observe(sim, sim.policy)
    sim.run_until({Phase.PROGRESSING})
    sim.tick(1)
    sim.tick(61)
    sim.tick(1)
    assert sim.canary_weight() == 20
    observe(sim, seed_policy(stepDuration="1m", steps=[0, 10, 30, 60, 100]))
    sim.tick(1)
    assert sim.status.phase == Phase.PROGRESSING, sim.status.last_error
    assert sim.canary_weight() == 20, "a schedule edit never moves traffic by itself"
    assert sim.status.run_number == 1
    seen: list[int | None] = []
    for _ in range(30):
        sim.tick(20)
        if not seen or seen[-1] != sim.canary_weight():
            seen.append(sim.canary_weight())
        if sim.status.phase == Phase.PROMOTED:
            break
    assert seen == [20, 30, 60, 100]
    assert any(h.reason == "ScheduleChanged" for h in sim.status.history)


def test_a_status_from_an_earlier_version_is_adopted_without_restarting_the_run() -> None:
    sim = Sim(seed_policy(stepDuration="1m"), seed_target())
    observe(sim, sim.policy)
    sim.run_until({Phase.PROGRESSING})
    sim.tick(1)
    sim.tick(61)
    sim.tick(1)
    assert sim.canary_weight() == 20
    # What an earlier version persisted: a whole-spec hash and no route revision.
    legacy = sim.status.model_dump(mode="json")
    legacy["revision"], legacy["routeRevision"] = "0123456789abcdef", None
    sim.status = RolloutStatus.model_validate(legacy)
    before = len(sim.applied_writes)
    sim.tick(1)
    assert sim.status.run_number == 1
    assert sim.canary_weight() == 20
    assert len(sim.applied_writes) == before
    assert sim.status.route_revision == route_revision_of(sim.policy)


def test_a_retry_after_failed_first_takes_traffic_off_the_failed_run_canary() -> None:
    sim = Sim(seed_policy(stepDuration="1m"), seed_target())
    observe(sim, sim.policy)
    sim.run_until({Phase.PROGRESSING})
    sim.tick(1)
    sim.tick(61)
    sim.tick(1)
    assert sim.canary_weight() == 20
    # Failed leaves the route where it was (here: the run's status no longer fits the policy).
    sim.status = sim.status.model_copy(update={"step_index": 9})
    sim.tick(1)
    assert sim.status.phase == Phase.FAILED
    assert sim.canary_weight() == 20
    sim.command(CommandKind.RETRY)
    sim.tick(1)
    assert sim.live == sim.original, "a retry of a Failed run starts from the route that run found"


def test_terminal_and_held_rollouts_carry_their_own_message() -> None:
    sim = Sim(seed_policy(stepDuration="1m"), seed_target())
    observe(sim, sim.policy)
    sim.run_until({Phase.PROGRESSING})
    sim.tick(1)
    assert sim.status.message.startswith("step 1/4 at weight 0: ends ")
    assert sim.status.stall is None
    sim.verdict = Verdict.INCONCLUSIVE
    sim.tick(61)
    assert sim.status.message == "step 1/4 held at weight 0: stand-in"
    assert sim.status.stall == Stall.AWAITING_ANALYSIS
    sim.verdict = Verdict.FAIL
    sim.run_until({Phase.ROLLED_BACK}, step=1)
    assert sim.status.message.startswith("original route restored")
    assert "ends" not in sim.status.message
    assert sim.status.stall is None
    conditions = with_conditions(sim.status, sim.now, 4).conditions
    assert {c.type: c.message for c in conditions}["Ready"] == sim.status.message


def test_a_paused_rollout_names_its_stall() -> None:
    sim = Sim(seed_policy(stepDuration="1m"), seed_target())
    observe(sim, sim.policy)
    sim.run_until({Phase.PROGRESSING})
    sim.command(CommandKind.PAUSE)
    sim.tick(1)
    assert sim.status.phase == Phase.PAUSED
    assert sim.status.stall == Stall.PAUSED
    assert sim.status.message == "paused by tester"
    sim.ready = False
    sim.command(CommandKind.RESUME)
    sim.tick(1)
    assert sim.status.stall is None
