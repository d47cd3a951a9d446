"""Is the canary getting the traffic we wrote? The canary's share of new connections against its weight.

TCP weights apply to new connections. A selector that names the wrong workload, a data plane that did not
apply the weight, or clients that bypass the route all look like "no canary data", or worse like a healthy
canary. From the same counters the checks read (connections opened by each version in the window), the
canary's share ``k / n`` is compared with the written weight ``w``:

* a two-sided 99.9 % Clopper-Pearson interval of the share is computed (each bound at 99.95 %);
* the share is *off* when that whole interval lies outside ``w ± tolerance`` (default 5 percentage points).

So a share is flagged only when it is far from the weight beyond doubt: with few connections the interval
is wide and nothing is said (also never below ``MIN_CONNECTIONS``), and with many connections a small,
harmless deviation (weighted round robin is not exact) stays inside the tolerance. At weight 0 any canary
connection beyond the tolerance means clients reach the canary without the route; at weight 100 the
stable side is not measured now (its counts are the baseline before the step) and nothing is said.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from controller.core.judgement import clopper_pearson

CONFIDENCE = 0.999
"""Two-sided confidence of the share's interval."""
DEFAULT_TOLERANCE_PP = 5.0
"""Percentage points the share may stray from the weight before it counts as off."""
MIN_CONNECTIONS = 20
"""Fewer new connections in the window than this: nothing is said."""

ShareMode = Literal["hold", "fail", "off"]


@dataclass(frozen=True)
class TrafficShare:
    """The canary's observed share of new connections in one window, and whether it is far from the weight.

    Attributes:
        weight: the canary weight written, in percent.
        canary: connections opened to the canary in the window.
        total: connections opened to canary and stable in the window.
        low: lower bound of the share (0..1), two-sided ``CONFIDENCE`` interval.
        high: upper bound of the share (0..1).
        off: True when the whole interval lies outside ``weight ± tolerance``.
        reason: why it is off, in words ("" when it is not).
    """

    weight: int
    canary: int
    total: int
    low: float
    high: float
    off: bool
    reason: str = ""

    @property
    def share(self) -> float:
        """The observed share (0..1)."""
        return self.canary / self.total if self.total else 0.0

    def describe(self) -> str:
        """``17.9 % of 412 new connections (weight 20 %)``."""
        return f"{self.share * 100:.1f} % of {self.total} new connections (weight {self.weight} %)"

    def as_dict(self) -> dict[str, Any]:
        """JSON form, for the analysis result and status."""
        return {
            "weight": self.weight,
            "canaryConnections": self.canary,
            "connections": self.total,
            "share": round(self.share, 6),
            "low": round(self.low, 6),
            "high": round(self.high, 6),
            "off": self.off,
            "reason": self.reason,
        }


def traffic_share(
    *,
    canary: float | None,
    stable: float | None,
    weight: int,
    canary_name: str,
    tolerance_pp: float = DEFAULT_TOLERANCE_PP,
) -> TrafficShare | None:
    """The canary's share of the connections opened in a window, tested against the written weight.

    Args:
        canary: connections opened to the canary (None: its query returned no series, i.e. none opened).
        stable: connections opened to the stable version (None: nothing measured, nothing is said).
        weight: the canary weight written, in percent.
        canary_name: how the canary appears in metrics, for the reason (``tcp-echo-v2``).
        tolerance_pp: percentage points the share may stray from the weight.

    Returns:
        The share, or None when it says nothing: no stable count, weight 100, or fewer than
        ``MIN_CONNECTIONS`` connections in the window.
    """
    if stable is None or weight >= 100 or weight < 0:
        return None
    k = max(0, round(canary or 0.0))
    n = k + max(0, round(stable))
    if n < MIN_CONNECTIONS:
        return None
    # Within 2**-24 (6e-8) of the exact bounds: they are shown and stored to 6 decimals, and a pass computes
    # them at every look of every rollout (a fifth of a pass's CPU with 60 bisections).
    low, high = clopper_pearson(k, n, 1.0 - (1.0 - CONFIDENCE) / 2, steps=24)
    expected_low = max(0.0, (weight - tolerance_pp) / 100)
    expected_high = min(1.0, (weight + tolerance_pp) / 100)
    too_low = high < expected_low
    too_high = low > expected_high
    share = TrafficShare(weight=weight, canary=k, total=n, low=low, high=high, off=too_low or too_high)
    if not share.off:
        return share
    band = f"{expected_low * 100:.0f}-{expected_high * 100:.0f} %"
    if k == 0:
        reason = (
            f"weight {weight} % written, 0 of {n} new connections reached {canary_name}: "
            "check spec.analysis.selector or the data plane"
        )
    elif too_low:
        reason = (
            f"weight {weight} % written, but only {k} of {n} new connections ({share.share * 100:.1f} %) reached "
            f"{canary_name} (expected {band}): check spec.analysis.selector or the data plane"
        )
    elif weight == 0:
        reason = (
            f"weight 0 % written, but {k} of {n} new connections ({share.share * 100:.1f} %) reached "
            f"{canary_name}: clients reach it without the route, or spec.analysis.selector matches more than "
            "the canary"
        )
    else:
        reason = (
            f"weight {weight} % written, but {k} of {n} new connections ({share.share * 100:.1f} %) reached "
            f"{canary_name} (expected {band}): clients reach it without the route, or the data plane runs "
            "another weight"
        )
    return TrafficShare(weight=weight, canary=k, total=n, low=low, high=high, off=True, reason=reason)
