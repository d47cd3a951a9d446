"""The two-writers rule (controller.core.writers): sightings on this daemon's own clock, who yields, renewals."""

from __future__ import annotations

from controller.core.writers import (
    CONFLICT_WINDOW_SECONDS,
    Assessment,
    Me,
    WriterStamp,
    WriterState,
    observe,
    wrote,
)

LEASE = 15.0
A = Me("replica-a", "p1", elected=False)
B = Me("replica-b", "p2", elected=False)


def stamp(who: Me, serial: int, *, elected: bool | None = None) -> WriterStamp:
    return WriterStamp(
        identity=who.identity,
        instance=who.instance,
        serial=serial,
        elected=who.elected if elected is None else elected,
    )


def look(state: WriterState, seen: WriterStamp | None, *, me: Me, now: float, finished: bool = False) -> Assessment:
    return observe(state, seen, me=me, now=now, finished=finished, lease_duration=LEASE)


def test_the_writer_found_at_the_first_look_is_not_a_conflict() -> None:
    # A replica that died an hour ago wrote it, most likely: nothing was seen happening.
    first = look(WriterState(), stamp(A, 7), me=B, now=100.0)
    again = look(first.state, stamp(A, 7), me=B, now=105.0)
    assert first.started == again.started == ()
    assert first.active == again.active == ()
    assert again.yield_to is None


def test_a_new_write_by_another_identity_after_the_first_look_starts_a_conflict_once() -> None:
    first = look(WriterState(), stamp(A, 7), me=B, now=100.0)
    seen = look(first.state, stamp(A, 8), me=B, now=101.0)
    assert [s.identity for s in seen.started] == ["replica-a"]
    assert [s.identity for s in seen.active] == ["replica-a"]
    later = look(seen.state, stamp(A, 9), me=B, now=110.0)
    assert later.started == (), "the same conflict must be reported once, not at every write"
    assert [s.last_seen for s in later.active] == [110.0]


def test_a_status_never_written_is_a_baseline_too() -> None:
    first = look(WriterState(), None, me=B, now=0.0)
    seen = look(first.state, stamp(A, 1), me=B, now=1.0)
    assert [s.identity for s in seen.started] == ["replica-a"]


def test_its_own_writes_are_never_a_conflict() -> None:
    state = look(WriterState(), None, me=A, now=0.0).state
    mine = stamp(A, 1)
    state = wrote(state, mine, now=1.0)
    seen = look(state, mine, me=A, now=2.0)
    assert seen.started == seen.active == ()


def test_another_process_with_the_same_identity_is_a_conflict() -> None:
    twin = Me("replica-a", "p9", elected=False)
    first = look(WriterState(), None, me=A, now=0.0)
    seen = look(first.state, stamp(twin, 1), me=A, now=1.0)
    assert [(s.identity, s.instance) for s in seen.started] == [("replica-a", "p9")]


def test_the_identity_that_sorts_later_yields_and_the_other_keeps_writing() -> None:
    b_sees_a = look(look(WriterState(), None, me=B, now=0.0).state, stamp(A, 1), me=B, now=1.0)
    a_sees_b = look(look(WriterState(), None, me=A, now=0.0).state, stamp(B, 1), me=A, now=1.0)
    assert b_sees_a.yield_to is not None
    assert b_sees_a.yield_to.identity == "replica-a"
    assert b_sees_a.resume_at == 1.0 + LEASE
    assert a_sees_b.yield_to is None
    assert a_sees_b.started, "the one that keeps writing reports the conflict too"


def test_without_election_it_yields_to_a_writer_that_runs_with_election() -> None:
    # replica-b sorts later, but the writer holding a Lease wins whatever the names.
    elected_b = stamp(B, 1, elected=True)
    seen = look(look(WriterState(), None, me=A, now=0.0).state, elected_b, me=A, now=1.0)
    assert seen.yield_to is not None
    assert seen.yield_to.identity == "replica-b"


def test_with_election_it_reports_but_never_yields() -> None:
    elected_b = Me("replica-b", "p2", elected=True)
    seen = look(look(WriterState(), None, me=elected_b, now=0.0).state, stamp(A, 1), me=elected_b, now=1.0)
    assert seen.started
    assert seen.yield_to is None


def test_it_writes_again_once_the_other_has_been_silent_for_a_lease_duration() -> None:
    state = look(WriterState(), None, me=B, now=0.0).state
    state = look(state, stamp(A, 1), me=B, now=10.0).state
    still = look(state, stamp(A, 1), me=B, now=10.0 + LEASE - 0.1)
    assert still.yield_to is not None
    free = look(still.state, stamp(A, 1), me=B, now=10.0 + LEASE)
    assert free.yield_to is None
    assert [s.identity for s in free.active] == ["replica-a"], "still a conflict for the metric within the window"


def test_each_new_write_of_the_other_pushes_the_resumption_back() -> None:
    state = look(WriterState(), None, me=B, now=0.0).state
    state = look(state, stamp(A, 1), me=B, now=10.0).state
    seen = look(state, stamp(A, 2), me=B, now=20.0)
    assert seen.resume_at == 20.0 + LEASE
    assert look(seen.state, stamp(A, 2), me=B, now=10.0 + LEASE + 1).yield_to is not None


def test_a_conflict_ends_after_a_window_without_a_new_write() -> None:
    state = look(WriterState(), None, me=A, now=0.0).state
    state = look(state, stamp(B, 1), me=A, now=5.0).state
    inside = look(state, stamp(B, 1), me=A, now=5.0 + CONFLICT_WINDOW_SECONDS - 1)
    assert [s.identity for s in inside.active] == ["replica-b"]
    assert inside.ended == ()
    over = look(inside.state, stamp(B, 1), me=A, now=5.0 + CONFLICT_WINDOW_SECONDS)
    assert over.active == ()
    assert [s.identity for s in over.ended] == ["replica-b"]
    again = look(over.state, stamp(B, 2), me=A, now=100.0)
    assert [s.identity for s in again.started] == ["replica-b"], "a later write starts a new conflict"


def test_the_writer_that_keeps_a_contested_policy_renews_its_stamp_every_third_of_a_lease() -> None:
    state = look(WriterState(), None, me=A, now=0.0).state
    contested = look(state, stamp(B, 1), me=A, now=1.0)
    assert contested.renew, "it never wrote since: show at once that it drives the policy"
    state = wrote(contested.state, stamp(A, 1), now=1.0)
    assert not look(state, stamp(A, 1), me=A, now=1.0 + LEASE / 3 - 0.1).renew
    assert look(state, stamp(A, 1), me=A, now=1.0 + LEASE / 3).renew
    # Long after the other writer's last write, until the rollout ends: quiet steps must not look like silence.
    assert look(state, stamp(A, 1), me=A, now=1.0 + 10 * CONFLICT_WINDOW_SECONDS).renew


def test_renewals_stop_when_the_rollout_ends_and_never_happen_uncontested() -> None:
    state = look(WriterState(), None, me=A, now=0.0).state
    assert not look(state, None, me=A, now=100.0).renew
    state = look(state, stamp(B, 1), me=A, now=1.0).state
    assert not look(state, stamp(B, 1), me=A, now=50.0, finished=True).renew


def test_the_one_that_yields_does_not_renew() -> None:
    state = look(WriterState(), None, me=B, now=0.0).state
    seen = look(state, stamp(A, 1), me=B, now=1.0)
    assert seen.yield_to is not None
    assert not seen.renew
