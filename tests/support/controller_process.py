"""Runs the real controller daemon (``canaryctl run``'s code path) for process-level tests.

Test-only additions, set by environment variables:

* ``TEST_FAIL_AT_STEP=k``: an analysis stand-in that passes every step but fails step index ``k``
  (-1: never fails). Allowed in tests only, until Prometheus analysis exists.
* ``TEST_CRASH=point:n``: SIGKILL this process at the n-th occurrence of ``point``:
  ``before_save`` / ``after_save`` (around a status write), ``before_write`` / ``after_write`` (around a
  route write). Used by the crash-safety test to stop the controller at exact places.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from datetime import datetime
from typing import Any

from controller.adapters.kubernetes.status import ConfigMapStatusStore, CrdStatusStore
from controller.adapters.kubernetes.traffic import KubernetesTrafficRouter
from controller.core.policy import CanaryPolicy
from controller.core.status import AnalysisResult, RolloutStatus, Verdict
from controller.runtime.composition import run


class StepFailingAnalysis:
    """Passes every step except ``fail_at`` (a test stand-in for the real analysis).

    ``checks`` are reported with the failing verdict, as the real analysis reports its measurements.
    """

    def __init__(self, fail_at: int, checks: list[dict[str, Any]] | None = None) -> None:
        self.fail_at = fail_at
        self.checks = checks or []

    def verdict(self, *, policy: CanaryPolicy, status: RolloutStatus, now: datetime) -> AnalysisResult | None:
        del policy, now
        if status.run_id is None:
            return None
        failing = status.step_index == self.fail_at
        return AnalysisResult(
            run_id=status.run_id,
            step_index=status.step_index,
            verdict=Verdict.FAIL if failing else Verdict.PASS,
            reason="stand-in: injected failure" if failing else "stand-in: pass",
            checks=self.checks if failing else [],
        )


def _install_crash_point(spec: str) -> None:
    point, _, count = spec.partition(":")
    target = int(count or "1")
    seen = {"n": 0}

    def hit(name: str) -> None:
        if name == point:
            seen["n"] += 1
            if seen["n"] == target:
                os.kill(os.getpid(), signal.SIGKILL)

    def around(cls: type, method: str, before: str, after: str) -> None:
        original: Callable[..., Any] = getattr(cls, method)

        def wrapper(self: Any, **kwargs: Any) -> Any:
            hit(before)
            result = original(self, **kwargs)
            hit(after)
            return result

        setattr(cls, method, wrapper)

    around(ConfigMapStatusStore, "save", "before_save", "after_save")
    around(CrdStatusStore, "save", "before_save", "after_save")
    around(KubernetesTrafficRouter, "replace_route", "before_write", "after_write")


def main() -> None:
    """Run the daemon with the test stand-ins."""
    crash = os.environ.get("TEST_CRASH")
    if crash:
        _install_crash_point(crash)
    run(analysis=StepFailingAnalysis(int(os.environ.get("TEST_FAIL_AT_STEP", "-1"))))


if __name__ == "__main__":
    main()
