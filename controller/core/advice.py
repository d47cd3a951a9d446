"""Advice on valid policies: what a policy will do that its author may not expect.

A policy can be valid and still never finish by itself. These rules say so before it runs; ``canaryctl
lint`` and ``canaryctl plan`` print them as warnings (on stderr, exit code unchanged). Pure: a policy in,
plain-data advice out.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.core.policy import CanaryPolicy


@dataclass(frozen=True)
class Advice:
    """One warning about a valid policy, at the field it is about (``spec.analysis``)."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def advise(policy: CanaryPolicy) -> list[Advice]:
    """What ``policy`` will do that its author may not expect, most important first.

    Without ``spec.analysis`` no step can pass (a step advances only after a passing analysis of the
    whole step), so the rollout stays at its first step until someone runs ``canaryctl promote``.
    """
    advice: list[Advice] = []
    if policy.spec.analysis is None:
        steps = policy.spec.schedule.steps
        advice.append(
            Advice(
                "spec.analysis",
                f"no analysis: the rollout stays at its first step (canary weight {steps[0]}) and can only "
                "advance by `canaryctl promote`; add spec.analysis for steps to advance on their own",
            )
        )
    return advice
