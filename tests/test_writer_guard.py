"""The runtime guard around status stores: reports once, refuses writes while yielding, stamps, renews."""

from __future__ import annotations

import pytest

from controller.core.status import Phase, RolloutStatus
from controller.core.writers import WriterStamp
from controller.errors import ConflictError, WriterYieldedError
from controller.ports import InvolvedObject, LoadedStatus, PolicyRef
from controller.runtime.metrics import ControllerMetrics
from controller.runtime.writers import GuardedStatusStore, WriterGuard

REF = PolicyRef(namespace="shop", name="tcp-echo", source="crd")
LEASE = 2.0


class MemoryStore:
    """One policy's status in memory, versioned like the API server."""

    def __init__(self) -> None:
        self.status = RolloutStatus(phase=Phase.PROGRESSING)
        self.version = 1
        self.writer: WriterStamp | None = None
        self.saves: list[WriterStamp | None] = []

    def load(self, *, policy: PolicyRef) -> LoadedStatus:
        return LoadedStatus(status=self.status, version=str(self.version), commands=[], writer=self.writer)

    def save(
        self, *, policy: PolicyRef, status: RolloutStatus, version: str | None, writer: WriterStamp | None = None
    ) -> str:
        if version != str(self.version):
            raise ConflictError(["stale"], code=409)
        self.status, self.writer = status, writer
        self.version += 1
        self.saves.append(writer)
        return str(self.version)

    def written_by(self, identity: str, serial: int) -> None:
        """Another controller's write."""
        self.writer = WriterStamp(identity=identity, instance="other", serial=serial)
        self.version += 1


class Events:
    def __init__(self) -> None:
        self.recorded: list[tuple[str, str, str]] = []

    def record(self, *, involved: InvolvedObject, reason: str, message: str, event_type: str) -> None:
        self.recorded.append((reason, event_type, message))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def guarded(identity: str) -> tuple[GuardedStatusStore, MemoryStore, Events, Clock, ControllerMetrics]:
    store, events, clock, metrics = MemoryStore(), Events(), Clock(), ControllerMetrics()
    guard = WriterGuard(
        identity=identity,
        elected=False,
        lease_duration=LEASE,
        events=events,
        involved_for=lambda ref: InvolvedObject("CanaryPolicy", "canaryctl.dev/v1alpha1", ref.namespace, ref.name),
        metrics=metrics,
        monotonic=clock,
    )
    return GuardedStatusStore(store, guard), store, events, clock, metrics


def conflicting(metrics: ControllerMetrics) -> float | None:
    return metrics.registry.get_sample_value("canary_conflicting_writers", {"namespace": "shop", "policy": "tcp-echo"})


def test_every_save_is_stamped_with_this_controller() -> None:
    store_, store, _, _, _ = guarded("replica-b")
    loaded = store_.load(policy=REF)
    store_.save(policy=REF, status=loaded.status, version=loaded.version)
    assert store.saves[-1] is not None
    assert store.saves[-1].identity == "replica-b"


def test_the_yielding_controller_reports_once_stamps_once_and_refuses_its_passes() -> None:
    store_, store, events, clock, metrics = guarded("replica-b")
    store_.load(policy=REF)  # the first look
    store.written_by("replica-a", 1)
    clock.now += 0.1
    with pytest.raises(WriterYieldedError, match="replica-a"):
        store_.load(policy=REF)
    assert [(r, t) for r, t, _ in events.recorded] == [("ConflictingWriters", "Warning")]
    assert conflicting(metrics) == 1.0
    assert [s.identity for s in store.saves if s] == ["replica-b"], "one stamp write, so replica-a learns of it"
    assert store.status.phase == Phase.PROGRESSING, "the stamp write changes nothing of the rollout"
    clock.now += 0.1
    with pytest.raises(WriterYieldedError):
        store_.load(policy=REF)
    with pytest.raises(WriterYieldedError):
        store_.save(policy=REF, status=RolloutStatus(phase=Phase.PAUSED), version=str(store.version))
    assert len(events.recorded) == 1
    assert len(store.saves) == 1
    assert store.status.phase == Phase.PROGRESSING


def test_the_yielding_controller_writes_again_after_a_lease_duration_of_silence() -> None:
    store_, store, _, clock, _ = guarded("replica-b")
    store_.load(policy=REF)
    store.written_by("replica-a", 1)
    with pytest.raises(WriterYieldedError):
        store_.load(policy=REF)
    clock.now += LEASE - 0.01
    with pytest.raises(WriterYieldedError):
        store_.load(policy=REF)
    clock.now += 0.01
    loaded = store_.load(policy=REF)
    store_.save(policy=REF, status=RolloutStatus(phase=Phase.PAUSED), version=loaded.version)
    assert store.status.phase == Phase.PAUSED


def test_the_controller_that_keeps_writing_reports_and_renews_its_stamp() -> None:
    store_, store, events, clock, metrics = guarded("replica-a")
    store_.load(policy=REF)
    store.written_by("replica-b", 1)
    loaded = store_.load(policy=REF)
    assert "keeps writing" in events.recorded[0][2]
    assert conflicting(metrics) == 1.0
    assert loaded.writer is not None
    assert loaded.writer.identity == "replica-a", "renewed at once: replica-b must see it is still driven"
    store_.save(policy=REF, status=loaded.status, version=loaded.version)  # the renewal's version is current
    saves = len(store.saves)
    clock.now += LEASE / 3
    store_.load(policy=REF)
    assert len(store.saves) == saves + 1
