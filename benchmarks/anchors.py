"""Reference points for the comparison with fixed-threshold canary analysis (Flagger, Argo Rollouts).

Each anchor states one fact the benchmark's threshold models rest on and where it comes from (the
project's source file or documentation page, by repository and path), so the models can be checked.
They are written into the benchmark's JSON with the figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class Anchor:
    """One sourced fact about how another tool judges a canary."""

    key: str
    fact: str
    source: str

    def as_dict(self) -> dict[str, str]:
        """JSON-friendly form."""
        return {"key": self.key, "fact": self.fact, "source": self.source}


ANCHORS: tuple[Anchor, ...] = (
    Anchor(
        "flagger.threshold.default",
        "analysis.threshold (failed checks before rollback) defaults to 1 when unset",
        "fluxcd/flagger pkg/apis/flagger/v1beta1/canary.go, GetAnalysisThreshold",
    ),
    Anchor(
        "flagger.threshold.tutorials",
        "the tutorials set analysis.threshold: 5 (Skipper: 10) with interval: 1m (Skipper: 10s)",
        "Flagger docs, tutorials (e.g. istio-progressive-delivery, skipper-progressive-delivery)",
    ),
    Anchor(
        "flagger.request-success-rate",
        "the built-in request-success-rate check uses thresholdRange.min: 99 (percent) and fails when value < min",
        "Flagger docs usage/metrics; fluxcd/flagger pkg/controller/scheduler_metrics.go, runBuiltinMetricChecks",
    ),
    Anchor(
        "flagger.failed-checks",
        "every failed analysis run adds 1 to status.failedChecks, which is not reset by a passing run; rollback "
        "when failedChecks >= threshold; a passing run advances the canary weight by stepWeight at once",
        "fluxcd/flagger pkg/controller/scheduler.go, advanceCanary and runCanary",
    ),
    Anchor(
        "flagger.no-values",
        "a query with no values (no traffic) halts advancement and counts as a failed check",
        "fluxcd/flagger pkg/controller/scheduler_metrics.go (ErrNoValuesFound returns false) and scheduler.go",
    ),
    Anchor(
        "argo.failure-limit",
        "a metric is Failed when its failed measurements exceed failureLimit (failed > failureLimit); "
        "failureLimit defaults to 0, so by default the first failed measurement aborts the rollout",
        "argoproj/argo-rollouts analysis/analysis.go, assessMetricStatus",
    ),
    Anchor(
        "argo.examples",
        "the documented success-rate template measures every 5m with successCondition result[0] >= 0.95 and "
        "failureLimit: 3; a background analysis measures every interval while the canary steps run",
        "argoproj/argo-rollouts docs/features/analysis.md",
    ),
)

# The fixed thresholds on the canary's error ratio (errors / connections): FAIL when the ratio is above.
FLAGGER_MAX_ERROR_RATIO = Fraction(1, 100)  # request-success-rate >= 99 %
ARGO_MAX_ERROR_RATIO = Fraction(5, 100)  # success >= 0.95
FLAGGER_DEFAULT_THRESHOLD = 1
FLAGGER_TUTORIAL_THRESHOLD = 5
ARGO_DEFAULT_FAILURE_LIMIT = 0
ARGO_EXAMPLE_FAILURE_LIMIT = 3
