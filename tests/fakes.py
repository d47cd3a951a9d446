"""In-memory implementations of the ports, for fast service and daemon tests."""

from __future__ import annotations

import copy
import threading
import time
from datetime import datetime
from typing import Any

from controller.core.policy import CanaryPolicy
from controller.core.status import AnalysisResult, Command, RolloutStatus, Verdict
from controller.errors import ConflictError
from controller.ports import CanaryWorkload, InvolvedObject, LoadedStatus, PolicyRef, PolicySnapshot
from tests.rollout_sim import pointer_get, pointer_set


class MemoryRouter:
    def __init__(self, objects: dict[tuple[str, str, str], dict[str, Any]], delay: float = 0.0) -> None:
        self.objects = objects
        self.delay = delay
        self.gets = 0

    def get(self, *, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.gets += 1
        if self.delay:
            time.sleep(self.delay)
        obj = self.objects.get((kind, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def replace_route(
        self, *, kind: str, namespace: str, name: str, pointer: str, expect: list[Any], destinations: list[Any]
    ) -> None:
        obj = self.objects[(kind, namespace, name)]
        if pointer_get(obj, pointer) != expect:
            raise ConflictError(["changed"], code=409)
        pointer_set(obj, pointer, copy.deepcopy(destinations))


class MemoryStore:
    def __init__(self) -> None:
        self.saved: dict[tuple[str, str], tuple[RolloutStatus, int]] = {}
        self.commands: dict[tuple[str, str], list[Command]] = {}
        self.lock = threading.Lock()

    def load(self, *, policy: PolicyRef) -> LoadedStatus:
        with self.lock:
            status, version = self.saved.get((policy.namespace, policy.name), (RolloutStatus(), 0))
            return LoadedStatus(
                status=status,
                version=str(version) if version else None,
                commands=list(self.commands.get((policy.namespace, policy.name), [])),
            )

    def save(self, *, policy: PolicyRef, status: RolloutStatus, version: str | None) -> str:
        with self.lock:
            _, current = self.saved.get((policy.namespace, policy.name), (RolloutStatus(), 0))
            if str(current or "") != (version or ""):
                raise ConflictError(["stale"], code=409)
            self.saved[(policy.namespace, policy.name)] = (status, current + 1)
            return str(current + 1)


class ReadyWorkloads:
    def canary(self, *, namespace: str, name: str) -> CanaryWorkload:
        return CanaryWorkload(ready=True, message="Available", template={"image": "v2"})


class ListEvents:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def record(self, *, involved: InvolvedObject, reason: str, message: str, event_type: str) -> None:
        self.events.append((involved.name, reason))


class PassingAnalysis:
    def verdict(self, *, policy: CanaryPolicy, status: RolloutStatus, now: datetime) -> AnalysisResult | None:
        if status.run_id is None:
            return None
        return AnalysisResult(run_id=status.run_id, step_index=status.step_index, verdict=Verdict.PASS)


class StaticSource:
    def __init__(self, snapshot: PolicySnapshot) -> None:
        self.current = snapshot
        self.closed = False

    def snapshot(self) -> PolicySnapshot:
        return self.current

    def synced(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True
