"""Who writes a policy's status: noticing a second controller writing it, and which of two keeps writing.

Every status write carries a :class:`WriterStamp`: the writer's identity (``CANARY_IDENTITY`` or hostname),
a random id of the writing process (two processes given the same identity still differ), a serial number
(a new stamp at every write) and whether the writer runs with leader election.

A daemon never compares its clock with another machine's (client-go's rule for leases). It notes, on its
own monotonic clock, when it first *saw* a new stamp of another writer appear in a status it loads; the
stamp found at the first look is only a baseline (a replica that has since died wrote it, most likely).
From those sightings, :func:`observe` decides:

* **conflict**: another writer's new stamp seen within the last :data:`CONFLICT_WINDOW_SECONDS` (a live
  controller refreshes a running rollout's status at least once a minute). The first sighting starts a
  conflict (log an error, record a Warning Event); it ends after a window without a new stamp.
* **yield**: with election off, a daemon stops writing the policy while a writer it yields to was seen
  within the last lease duration. Exactly one of two writers yields, so the rollout is never left without
  a driver: a daemon without election yields to one that runs with election (that one holds a Lease), and
  between two without election the one whose (identity, process id) sorts later yields. A daemon with
  election never yields (the Lease is the authority); it reports the conflict (overlapping shards).
* **renewal**: once a policy is contested, the writer that keeps writing refreshes its stamp at least
  every third of a lease duration until the rollout ends, so the one that yields does not take a quiet
  step (a passing check writes nothing new for up to a minute) for silence.

Time (``now``) is an argument: seconds on the caller's monotonic clock.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

CONFLICT_WINDOW_SECONDS = 60.0
RENEWALS_PER_LEASE = 3


class WriterStamp(BaseModel):
    """Who made one status write (stored as ``status.writer``)."""

    model_config = ConfigDict(
        frozen=True, alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    identity: str = Field(description="The writer's identity (CANARY_IDENTITY, or hostname plus a random suffix).")
    instance: str = Field(description="A random id of the writing process, new at every start.")
    serial: int = Field(ge=0, description="Counts the writer process's status writes; new at every write.")
    elected: bool = Field(False, description="True when the writer runs with leader election.")

    def describe(self) -> str:
        """``identity (process id)`` for messages."""
        return f"{self.identity} (process {self.instance})"


@dataclass(frozen=True)
class Me:
    """This daemon, as its stamps name it."""

    identity: str
    instance: str
    elected: bool


@dataclass(frozen=True)
class Sighting:
    """Another writer seen writing one policy: when this daemon first and last saw a new stamp of it."""

    identity: str
    instance: str
    elected: bool
    first_seen: float
    last_seen: float

    def describe(self) -> str:
        """``identity (process id)`` for messages."""
        return f"{self.identity} (process {self.instance})"


@dataclass(frozen=True)
class WriterState:
    """What one daemon has observed of one policy's writers."""

    observed: bool = False
    last: tuple[str, int] | None = None  # (instance, serial) of the newest stamp seen
    others: tuple[Sighting, ...] = ()
    contested: bool = False  # another writer was seen since the rollout last ended
    my_last_write: float | None = None


@dataclass(frozen=True)
class Assessment:
    """What to do about one policy's writers now."""

    state: WriterState
    started: tuple[Sighting, ...] = ()  # conflicts beginning now: log an error, record a Warning Event
    ended: tuple[Sighting, ...] = ()  # writers silent for a whole window: the conflict is over
    active: tuple[Sighting, ...] = ()  # writers seen within the window (the metric)
    yield_to: Sighting | None = None  # while set, this daemon must not write the policy
    resume_at: float | None = None  # when it may write again, if nobody writes until then
    renew: bool = False  # write the status again now, to show this daemon still drives the policy


def yields_to(me: Me, other: Sighting) -> bool:
    """Whether ``me`` must leave the policy to ``other`` (exactly one of any two yields to the other)."""
    if me.elected:
        return False
    if other.elected:
        return True
    return (other.identity, other.instance) < (me.identity, me.instance)


def observe(
    state: WriterState,
    stamp: WriterStamp | None,
    *,
    me: Me,
    now: float,
    finished: bool,
    lease_duration: float,
    window: float = CONFLICT_WINDOW_SECONDS,
) -> Assessment:
    """Take in the stamp of a freshly loaded status, then :func:`assess`.

    Args:
        state: what was observed of this policy before.
        stamp: the loaded status's writer (None when it has none: never written, or by an older version).
        me: this daemon.
        now: seconds on this daemon's monotonic clock.
        finished: the loaded rollout is in a terminal phase (renewals stop; a new run contests afresh).
        lease_duration: how long a writer must be silent before one that yielded to it writes again.
        window: how long after another writer's last new stamp the conflict lasts.
    """
    key = (stamp.instance, stamp.serial) if stamp is not None else None
    started: tuple[Sighting, ...] = ()
    if not state.observed:
        state = replace(state, observed=True, last=key)
    elif stamp is not None and key != state.last:
        state = replace(state, last=key)
        if stamp.instance != me.instance:
            state, started = _sighted(state, stamp, now)
    if finished:
        state = replace(state, contested=False)
    assessment = assess(state, me=me, now=now, lease_duration=lease_duration, window=window)
    return replace(assessment, started=started)


def _sighted(state: WriterState, stamp: WriterStamp, now: float) -> tuple[WriterState, tuple[Sighting, ...]]:
    for index, seen in enumerate(state.others):
        if (seen.identity, seen.instance) == (stamp.identity, stamp.instance):
            updated = replace(seen, last_seen=now, elected=stamp.elected)
            others = (*state.others[:index], updated, *state.others[index + 1 :])
            return replace(state, others=others, contested=True), ()
    new = Sighting(stamp.identity, stamp.instance, stamp.elected, first_seen=now, last_seen=now)
    return replace(state, others=(*state.others, new), contested=True), (new,)


def assess(
    state: WriterState, *, me: Me, now: float, lease_duration: float, window: float = CONFLICT_WINDOW_SECONDS
) -> Assessment:
    """End conflicts older than ``window``; decide whether to yield, and whether to renew the stamp."""
    active = tuple(s for s in state.others if now - s.last_seen < window)
    ended = tuple(s for s in state.others if now - s.last_seen >= window)
    state = replace(state, others=active)
    holders = [s for s in active if yields_to(me, s) and now - s.last_seen < lease_duration]
    if holders:
        holder = max(holders, key=lambda s: s.last_seen)
        return Assessment(
            state=state, ended=ended, active=active, yield_to=holder, resume_at=holder.last_seen + lease_duration
        )
    renew = state.contested and (
        state.my_last_write is None or now - state.my_last_write >= lease_duration / RENEWALS_PER_LEASE
    )
    return Assessment(state=state, ended=ended, active=active, renew=renew)


def wrote(state: WriterState, stamp: WriterStamp, *, now: float) -> WriterState:
    """Record a status write of this daemon's own (so it is neither a sighting nor missed as a baseline)."""
    return replace(state, observed=True, last=(stamp.instance, stamp.serial), my_last_write=now)
