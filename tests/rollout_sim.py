"""A tiny in-memory world for driving the pure state machine in tests: a live object, a clock, effects."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from controller.core.effects import Decision, WriteRoute
from controller.core.policy import CanaryPolicy
from controller.core.rollout import decide
from controller.core.status import AnalysisResult, Command, CommandKind, Observations, RolloutStatus, Verdict

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def pointer_get(obj: dict[str, Any], pointer: str) -> Any:
    node: Any = obj
    for part in pointer.strip("/").split("/"):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def pointer_set(obj: dict[str, Any], pointer: str, value: Any) -> None:
    *parents, last = pointer.strip("/").split("/")
    node: Any = obj
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[last] = value


class Sim:
    """One policy, one live target object, a persisted status, and a clock."""

    def __init__(self, policy: CanaryPolicy, target: dict[str, Any], revision: str = "rev-1") -> None:
        self.policy = policy
        self.live: dict[str, Any] | None = copy.deepcopy(target)
        self.original = copy.deepcopy(target)
        self.status = RolloutStatus()
        self.now = T0
        self.revision = revision
        self.route_revision = "route-1"
        self.ready = True
        self.verdict: Verdict | None = Verdict.PASS
        self.pending_commands: list[Command] = []
        self.applied_writes: list[WriteRoute] = []
        self.conflicts = 0
        self.decisions: list[Decision] = []
        self._ids = 0

    def command(self, kind: CommandKind) -> str:
        self._ids += 1
        command = Command(id=f"c{self._ids}", kind=kind, by="tester")
        self.pending_commands.append(command)
        return command.id

    def observations(self) -> Observations:
        analysis = None
        if self.verdict is not None and self.status.run_id is not None:
            analysis = AnalysisResult(
                run_id=self.status.run_id, step_index=self.status.step_index, verdict=self.verdict, reason="stand-in"
            )
        return Observations(
            revision=self.revision,
            route_revision=self.route_revision,
            target=copy.deepcopy(self.live),
            target_missing=None if self.live is not None else "VirtualService default/tcp-echo not found",
            target_namespace=self.policy.target_namespace,
            canary_ready=self.ready,
            analysis=analysis,
            commands=list(self.pending_commands),
        )

    def tick(self, seconds: float = 0, *, apply: bool = True) -> Decision:
        """One pass: decide, persist, then (unless crashing) apply the effects."""
        self.now += timedelta(seconds=seconds)
        decision = decide(self.policy, self.status, self.observations(), self.now)
        self.decisions.append(decision)
        self.status = decision.status
        self.pending_commands = [c for c in self.pending_commands if c.id not in self.status.processed_commands]
        if apply:
            for effect in decision.effects:
                if isinstance(effect, WriteRoute):
                    self.apply_write(effect)
        return decision

    def apply_write(self, effect: WriteRoute) -> None:
        if self.live is None:
            return
        try:
            current = pointer_get(self.live, effect.pointer)
        except (KeyError, IndexError):
            self.conflicts += 1
            return
        if current != effect.expect:
            self.conflicts += 1
            return
        pointer_set(self.live, effect.pointer, copy.deepcopy(effect.destinations))
        self.applied_writes.append(effect)

    def canary_weight(self) -> int | None:
        if self.live is None:
            return None
        for entry in pointer_get(self.live, "/spec/tcp/0/route"):
            if entry["destination"].get("subset") == "v2":
                return int(entry.get("weight", 0))
        return None

    def run_until(self, phases: set[str], *, step: float = 10, limit: int = 500) -> None:
        for _ in range(limit):
            if self.status.phase in phases:
                return
            self.tick(step)
        raise AssertionError(f"never reached {phases}; at {self.status.phase}: {self.status.message}")
