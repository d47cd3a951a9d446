"""Leader election on a Lease in the emulator, with a fake monotonic clock (client-go's rules, one by one)."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from canary_sandbox.kubeapi import KubeApiEmulator
from canary_sandbox.kubeapi.faults import FaultInjector
from controller.adapters.kubernetes.api import KubeApi
from controller.adapters.kubernetes.leases import LeaderElector, LeaseLock, LeaseRecord
from controller.adapters.kubernetes.traffic import KubernetesTrafficRouter
from controller.errors import NotLeaderError
from controller.runtime.leadership import FencedRouter
from tests.sandbox.conftest import document
from tests.support.clock import FakeClock

LEASE = "canary-controller"


def _elector(
    kube: KubeApi,
    namespace: str,
    identity: str,
    clock: FakeClock,
    *,
    on_started_leading: Callable[[], None] | None = None,
    on_stopped_leading: Callable[[], None] | None = None,
) -> LeaderElector:
    return LeaderElector(
        LeaseLock(kube, namespace=namespace, name=LEASE),
        identity=identity,
        lease_duration=15,
        renew_deadline=10,
        retry_period=2,
        monotonic=clock,
        on_started_leading=on_started_leading,
        on_stopped_leading=on_stopped_leading,
    )


def _holder(emulator: KubeApiEmulator, namespace: str) -> str | None:
    lease = emulator.get("leases", LEASE, namespace=namespace)
    assert lease is not None
    holder = lease["spec"].get("holderIdentity")
    return str(holder) if holder is not None else None


def test_the_first_candidate_creates_the_lease_and_leads(
    kube: KubeApi, emulator: KubeApiEmulator, namespace: str
) -> None:
    clock = FakeClock()
    started: list[str] = []
    a = _elector(kube, namespace, "a", clock, on_started_leading=lambda: started.append("a"))
    a.step()
    assert a.is_leader()
    assert started == ["a"]
    lease = emulator.get("leases", LEASE, namespace=namespace)
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == "a"
    assert lease["spec"]["leaseDurationSeconds"] == 15
    assert lease["spec"]["leaseTransitions"] == 0
    first_renew = lease["spec"]["renewTime"]
    clock.advance(2)
    a.step()  # renews: same holder, same transitions, a new renewTime
    lease = emulator.get("leases", LEASE, namespace=namespace)
    assert lease is not None
    assert lease["spec"]["renewTime"] != first_renew
    assert lease["spec"]["acquireTime"] == first_renew
    assert started == ["a"]


def test_a_standby_waits_a_lease_duration_after_the_last_change_it_saw(
    kube: KubeApi, emulator: KubeApiEmulator, namespace: str
) -> None:
    clock_a, clock_b = FakeClock(), FakeClock()
    a = _elector(kube, namespace, "a", clock_a)
    b = _elector(kube, namespace, "b", clock_b)
    a.step()
    b.step()
    assert not b.is_leader()
    # The leader keeps renewing: the standby sees the record change each time and never takes over.
    for _ in range(10):
        clock_a.advance(2)
        clock_b.advance(2)
        a.step()
        b.step()
        assert a.is_leader()
        assert not b.is_leader()
    # The leader dies (no more renewals). Just under a lease duration later, the standby still waits...
    clock_b.advance(14.9)
    b.step()
    assert not b.is_leader()
    assert _holder(emulator, namespace) == "a"
    # ...and once a lease duration has passed since it last saw a change, it takes over.
    clock_b.advance(0.2)
    b.step()
    assert b.is_leader()
    lease = emulator.get("leases", LEASE, namespace=namespace)
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == "b"
    assert lease["spec"]["leaseTransitions"] == 1


def test_a_leader_that_cannot_renew_stops_leading_at_the_renew_deadline(
    kube: KubeApi, emulator: KubeApiEmulator, namespace: str, faults: FaultInjector
) -> None:
    clock = FakeClock()
    stopped: list[str] = []
    a = _elector(kube, namespace, "a", clock, on_stopped_leading=lambda: stopped.append("a"))
    a.step()
    assert a.is_leader()
    faults.add(resource="leases", status=500)
    clock.advance(2)
    a.step()
    assert a.is_leader(), "one failed renewal within the deadline keeps the lease"
    assert a.last_error is not None
    assert "500" in a.last_error
    # No further rounds run (a stalled election thread): the fence still closes at the deadline by itself.
    clock.advance(7.99)
    assert a.is_leader()
    clock.advance(0.02)
    assert not a.is_leader()
    a.step()
    assert stopped == ["a"]


def test_a_leader_whose_lease_was_taken_stops_at_its_next_round(
    kube: KubeApi, emulator: KubeApiEmulator, namespace: str
) -> None:
    clock = FakeClock()
    stopped: list[str] = []
    a = _elector(kube, namespace, "a", clock, on_stopped_leading=lambda: stopped.append("a"))
    a.step()
    lease = emulator.get("leases", LEASE, namespace=namespace)
    assert lease is not None
    taken = copy.deepcopy(lease)
    taken["spec"]["holderIdentity"] = "intruder"
    emulator.put(taken, namespace=namespace)
    clock.advance(2)
    a.step()
    assert not a.is_leader()
    assert stopped == ["a"]
    assert _holder(emulator, namespace) == "intruder", "the old leader must not overwrite the new holder"


class StaleReadLock(LeaseLock):
    """A lock whose reads return what it saw first: the candidate read the lease before its rival wrote."""

    def __init__(self, kube: KubeApi, namespace: str) -> None:
        super().__init__(kube, namespace=namespace, name=LEASE)
        self.first = super().get()

    def get(self) -> tuple[LeaseRecord, str] | None:
        return self.first


def test_two_candidates_racing_for_a_free_lease_produce_one_leader(
    kube: KubeApi, emulator: KubeApiEmulator, namespace: str
) -> None:
    clock = FakeClock()
    a = _elector(kube, namespace, "a", clock)
    a.step()
    assert a.release()
    assert _holder(emulator, namespace) is None
    # b reads the released lease; a takes it; b then writes with the resourceVersion it read: 409.
    b = LeaderElector(
        StaleReadLock(kube, namespace),
        identity="b",
        lease_duration=15,
        renew_deadline=10,
        retry_period=2,
        monotonic=clock,
    )
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    assert not b.is_leader()
    assert b.last_error is not None
    assert "conflict" in b.last_error
    assert _holder(emulator, namespace) == "a"


def test_a_released_lease_is_taken_at_once(kube: KubeApi, emulator: KubeApiEmulator, namespace: str) -> None:
    clock_a, clock_b = FakeClock(), FakeClock()
    a = _elector(kube, namespace, "a", clock_a)
    b = _elector(kube, namespace, "b", clock_b)
    a.step()
    b.step()
    assert a.release()
    assert not a.is_leader()
    clock_b.advance(2)  # far less than a lease duration
    b.step()
    assert b.is_leader()
    assert _holder(emulator, namespace) == "b"


def test_a_replica_that_lost_the_lease_writes_no_route(
    kube: KubeApi, emulator: KubeApiEmulator, namespace: str, faults: FaultInjector
) -> None:
    vs = document("tcp-echo-all-v1.yaml", "VirtualService")
    emulator.put(copy.deepcopy(vs), namespace=namespace)
    clock = FakeClock()
    a = _elector(kube, namespace, "a", clock)
    a.step()
    router = FencedRouter(KubernetesTrafficRouter(kube), a.is_leader)
    route = vs["spec"]["tcp"][0]["route"]
    moved = [
        {**route[0], "weight": 80},
        {"destination": {**route[0]["destination"], "subset": "v2"}, "weight": 20},
    ]
    router.replace_route(
        kind="VirtualService",
        namespace=namespace,
        name="tcp-echo",
        pointer="/spec/tcp/0/route",
        expect=route,
        destinations=moved,
    )
    faults.add(resource="leases", status=503)
    clock.advance(10)
    before = len(emulator.history(resource="virtualservices", namespace=namespace))
    with pytest.raises(NotLeaderError, match="does not hold the leader lease"):
        router.replace_route(
            kind="VirtualService",
            namespace=namespace,
            name="tcp-echo",
            pointer="/spec/tcp/0/route",
            expect=moved,
            destinations=route,
        )
    assert len(emulator.history(resource="virtualservices", namespace=namespace)) == before


def test_election_timing_must_be_ordered(kube: KubeApi, namespace: str) -> None:
    with pytest.raises(ValueError, match="retry period < renew deadline < lease duration"):
        LeaderElector(
            LeaseLock(kube, namespace=namespace, name=LEASE),
            identity="a",
            lease_duration=10,
            renew_deadline=10,
            retry_period=2,
        )
