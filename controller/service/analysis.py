"""Analysis sources that need no metrics backend."""

from __future__ import annotations

from datetime import datetime

from controller.core.policy import CanaryPolicy
from controller.core.status import AnalysisResult, RolloutStatus, Verdict


class NoAnalysis:
    """Used until a policy declares ``spec.analysis``: every step stays INCONCLUSIVE, so nothing advances.

    A rollout never moves on data it does not have; the status says why it waits.
    """

    def verdict(self, *, policy: CanaryPolicy, status: RolloutStatus, now: datetime) -> AnalysisResult | None:
        """INCONCLUSIVE for the current step."""
        del policy, now
        if status.run_id is None:
            return None
        return AnalysisResult(
            run_id=status.run_id,
            step_index=status.step_index,
            verdict=Verdict.INCONCLUSIVE,
            reason="no analysis configured: a step advances only on a passing analysis (or canaryctl promote)",
        )
