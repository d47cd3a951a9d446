"""Judging measurements: PASS, FAIL or INCONCLUSIVE per check, always with the numbers and the reason.

TCP connection errors are sparse counts, mostly zero, so error ratios are judged with exact count
statistics rather than a fixed threshold on a noisy ratio:

* **Count test against the stable version** (``countTest``): is the canary's error rate higher than the
  stable's, beyond chance? ``binomial`` is Fisher's exact test on the 2x2 table (errors / connections of
  canary and stable, one-sided); ``poisson`` is the exact conditional test for two Poisson rates (given
  all errors, how many would fall on the canary if both rates were equal). FAIL when the one-sided
  p-value is below ``1 - confidence`` (default 99 %).
* **Thresholds** (``max``/``min``) and **comparison with stable** (``compareToStable``) on an error
  ratio FAIL only when the evidence is significant at the same confidence: the Clopper-Pearson bound of
  the canary's rate lies beyond the limit. A point estimate beyond the limit without that evidence is
  INCONCLUSIVE, not FAIL, so a handful of connections cannot roll back a healthy canary, while a canary
  refusing every connection fails after a few of them (10 failures in 10 connections give a 99 % lower
  bound of 0.63).
* **Sample size** (``minConnections``, default 100): below it an error ratio cannot PASS.
* **One error budget per step, spent sequentially.** A step is judged several times (every interval, then
  the final gate), and each look at a healthy canary is a chance of a false FAIL. The caller gives each
  look a share of ``1 - confidence`` (``alpha_share``, from ``step_alpha_share``): a group-sequential
  design with a Lan-DeMets spending function, Hwang-Shih-DeCani's with ``gamma = -4``
  (O'Brien-Fleming-like). An in-step look judges one analysis interval, whose information is
  ``interval / stepDuration`` of the step's; it spends what the spending function allows at that
  information, ``alpha(t) = alpha (1 - exp(4 t)) / (1 - exp(4))`` (at ``t = 0.1`` about 0.9 % of the
  budget), so a gross failure fails at once while the final gate keeps most of the budget and its power.
  The final gate spends the rest, so the shares of a step add up to exactly ``1 - confidence`` and
  ``confidence`` bounds the false-rollback rate of a whole step (union bound), not of one look.
* **Alpha, not confidence.** A look carries its alpha (``look_alpha``) and FAILs when ``p < alpha``; the
  Clopper-Pearson bounds are computed from alpha too. ``1 - alpha`` would round to 1 for the tiny alphas
  of early looks, and a look at confidence 1 can fail nothing.

Any query error (unreachable, timeout, NaN, several series) is INCONCLUSIVE with its cause; no data
follows the check's ``onNoData``. A step never advances on INCONCLUSIVE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

from controller.core.measurement import QueryOutcome
from controller.core.policy import MetricCheck
from controller.core.status import Verdict

DEFAULT_MIN_CONNECTIONS = 100
DEFAULT_CONFIDENCE = 0.99
# Hwang-Shih-DeCani's gamma for spending a step's budget over its looks: -4, O'Brien-Fleming-like yet
# spending enough early that a canary refusing every one of a few dozen connections fails at a look with a
# tenth of the step's information (docs/analysis.md, "Judgement").
SPENDING_GAMMA = -4.0


@dataclass(frozen=True)
class SideData:
    """What was measured for one side (canary or stable) of one check."""

    value: QueryOutcome | None = None  # custom queries and istio-tcp-connections
    errors: QueryOutcome | None = None  # error ratios
    total: QueryOutcome | None = None  # error ratios


@dataclass(frozen=True)
class CheckResult:
    """The verdict of one check, with everything measured and why."""

    name: str
    verdict: Verdict
    reason: str
    canary_value: float | None = None
    stable_value: float | None = None
    canary_errors: float | None = None
    canary_connections: float | None = None
    stable_errors: float | None = None
    stable_connections: float | None = None
    threshold: str = ""
    queries: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly form for status and alerts."""
        return {
            "name": self.name,
            "verdict": str(self.verdict),
            "reason": self.reason,
            "canaryValue": self.canary_value,
            "stableValue": self.stable_value,
            "canaryErrors": self.canary_errors,
            "canaryConnections": self.canary_connections,
            "stableErrors": self.stable_errors,
            "stableConnections": self.stable_connections,
            "threshold": self.threshold,
            "queries": list(self.queries),
        }


# -- exact statistics ----------------------------------------------------------------------------------


def _log_comb(n: float, k: float) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-13:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def binomial_upper_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return betainc(k, n - k + 1, p)


def clopper_pearson(k: int, n: int, confidence: float, *, steps: int = 60) -> tuple[float, float]:
    """One-sided Clopper-Pearson bounds (lower, upper) of a rate at ``confidence`` each."""
    return clopper_pearson_alpha(k, n, 1.0 - confidence, steps=steps)


def clopper_pearson_alpha(k: int, n: int, alpha: float, *, steps: int = 60) -> tuple[float, float]:
    """One-sided Clopper-Pearson bounds (lower, upper) of a rate, each missing with probability ``alpha``.

    Takes ``alpha`` itself, not ``1 - alpha``: an early look's alpha (1e-30 and less) is lost in ``1 - alpha``.
    Both tails are computed directly (never as ``1 -`` the other), so they keep their precision near ``alpha``.
    Each bound is within ``2**-steps`` of the exact one, or 1e-15 of itself where that is wider (60: as
    precise as a float; a bound only shown to 6 decimals needs about 30): in closed form when no or every
    trial failed (the usual case of a healthy canary), else by :func:`_bound`, a bracketing search certified
    to that width, started from the Wilson score bound.
    """
    if n <= 0:
        return 0.0, 1.0
    log_alpha = math.log(alpha) if alpha > 0 else -math.inf
    starts = _wilson(k, n, alpha) if 0 < k < n else (0.0, 1.0)
    if k <= 0:
        lower = 0.0
    elif k >= n:
        lower = math.exp(log_alpha / n)  # P(X >= n | p) = p**n
    else:
        # P(X >= k | p) = I_p(k, n-k+1) grows with p: the lower bound is where it reaches alpha.
        lower = _bound(float(k), float(n - k + 1), log_alpha, flipped=False, start=starts[0], steps=steps)
    if k >= n:
        upper = 1.0
    elif k <= 0:
        upper = -math.expm1(log_alpha / n)  # P(X <= 0 | p) = (1 - p)**n
    else:
        # P(X <= k | p) = I_(1-p)(n-k, k+1) falls with p: the upper bound is where it reaches alpha.
        upper = _bound(float(n - k), float(k + 1), log_alpha, flipped=True, start=starts[1], steps=steps)
    return lower, upper


def _wilson(k: int, n: int, alpha: float) -> tuple[float, float]:
    """The Wilson score bounds at ``alpha`` each: close to Clopper-Pearson's, where their search starts."""
    z = -NormalDist().inv_cdf(min(max(alpha, 1e-300), 0.5))
    rate, spread = k / n, z * z / n
    centre = (rate + spread / 2) / (1 + spread)
    half = z / (1 + spread) * math.sqrt(rate * (1 - rate) / n + spread / (4 * n))
    return centre - half, centre + half


def _bound(a: float, b: float, log_alpha: float, *, flipped: bool, start: float, steps: int) -> float:
    """Where ``I_p(a, b)`` (``flipped``: ``I_(1-p)(a, b)``) crosses ``exp(log_alpha)`` as ``p`` goes over
    [0, 1]: the middle of a bracket at most ``2**-steps`` wide that holds the crossing (or 1e-15 of the bound,
    where that is wider: the tail's rounding decides below it).

    A bisection needs ``steps`` evaluations. This search keeps the bracket too, but moves by Newton's steps
    on the tail's logarithm (its derivative is the beta density, in closed form), halving instead whenever a
    step would leave the bracket; once a step is shorter than a quarter of the final width it tests the two
    points half that width either side, which closes the bracket. About six evaluations instead of ``steps``.
    """
    width = 2.0**-steps
    log_beta = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    lo, hi = 0.0, 1.0

    def look(x: float) -> float:
        """Narrow the bracket by the tail at ``x``; the Newton step from there (NaN when there is none)."""
        nonlocal lo, hi
        u = 1.0 - x if flipped else x
        value = betainc(a, b, u)
        gap = (math.log(value) if value > 0 else -745.0) - log_alpha
        # The tail rises with p (falls when flipped): below the crossing is a low p (a high one when flipped).
        if (gap < 0) != flipped:
            lo = max(lo, x)
        else:
            hi = min(hi, x)
        if value <= 0 or not 0.0 < u < 1.0:
            return math.nan
        density = math.exp((a - 1) * math.log(u) + (b - 1) * math.log1p(-u) - log_beta)
        slope = (-density if flipped else density) / value  # d(log tail)/dp
        return -gap / slope if slope != 0 else math.nan

    x = min(max(start, width), 1.0 - width)

    def closed() -> bool:
        # Finer than 1e-15 of the bound itself, the tail's own rounding decides: stop there too.
        return hi - lo <= max(width, 1e-15 * hi)

    for _ in range(3 * steps + 16):
        step = look(x)
        if closed():
            break
        close = max(width, 1e-15 * hi)
        following = x + step
        if math.isfinite(following) and abs(step) <= close / 4:
            # Settled: the two points half the final width either side close the bracket.
            for point in (following - close / 2, following + close / 2):
                if lo < point < hi:
                    look(point)
            if closed():
                break
            following = math.nan
        x = following if math.isfinite(following) and lo < following < hi else (lo + hi) / 2
        if not lo < x < hi:
            break  # no float left between the ends
    return (lo + hi) / 2


def fisher_one_sided(k_c: int, n_c: int, k_s: int, n_s: int) -> float:
    """P-value of Fisher's exact test that the canary's error proportion exceeds the stable's."""
    total_errors = k_c + k_s
    total = n_c + n_s
    if total_errors == 0 or n_c == 0 or n_s == 0:
        return 1.0
    denominator = _log_comb(total, n_c)
    upper = min(total_errors, n_c)
    p = 0.0
    for x in range(k_c, upper + 1):
        if total_errors - x > n_s:
            continue
        p += math.exp(_log_comb(total_errors, x) + _log_comb(total - total_errors, n_c - x) - denominator)
    return min(1.0, p)


def poisson_conditional_one_sided(k_c: int, n_c: float, k_s: int, n_s: float) -> float:
    """P-value of the exact conditional test that the canary's error rate per connection exceeds the stable's."""
    total_errors = k_c + k_s
    if total_errors == 0 or n_c <= 0 or n_s <= 0:
        return 1.0
    return binomial_upper_tail(k_c, total_errors, n_c / (n_c + n_s))


# -- judging ------------------------------------------------------------------------------------------


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


def _problem(outcomes: list[QueryOutcome | None]) -> str | None:
    for outcome in outcomes:
        if outcome is not None and outcome.error is not None:
            return outcome.error
    return None


@dataclass(frozen=True)
class _Base:
    name: str
    queries: list[str]

    def result(self, verdict: Verdict, reason: str, **numbers: Any) -> CheckResult:
        return CheckResult(name=self.name, queries=self.queries, verdict=verdict, reason=reason, **numbers)


def _no_data(check: MetricCheck, why: str, base: _Base) -> CheckResult:
    verdict = {"hold": Verdict.INCONCLUSIVE, "fail": Verdict.FAIL, "pass": Verdict.PASS}[check.on_no_data]
    return base.result(verdict, f"no data: {why} (onNoData: {check.on_no_data})")


def obrien_fleming_spent(information: float, *, alpha: float) -> float:
    """The cumulative error ``alpha(t)`` a Lan-DeMets O'Brien-Fleming-like design has spent at information
    ``t`` (0 to 1): ``2 - 2 Phi(z_(1-alpha/2) / sqrt(t))``. It is 0 at ``t = 0``, grows with ``t`` and is
    exactly ``alpha`` at ``t = 1``; early information spends very little (Lan and DeMets, 1983)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if information <= 0:
        return 0.0
    if information >= 1:
        return alpha
    # 2 - 2 Phi(x) = erfc(x / sqrt 2), which keeps its precision in the far tail that early looks use.
    boundary = NormalDist().inv_cdf(1.0 - alpha / 2.0) / math.sqrt(information)
    return min(alpha, math.erfc(boundary / math.sqrt(2.0)))


def hwang_shih_decani_spent(information: float, *, alpha: float, gamma: float = SPENDING_GAMMA) -> float:
    """The cumulative error ``alpha(t)`` a Hwang-Shih-DeCani design with parameter ``gamma`` has spent at
    information ``t`` (0 to 1): ``alpha (1 - exp(-gamma t)) / (1 - exp(-gamma))`` (gamma 0: ``alpha t``).
    It is 0 at ``t = 0``, grows with ``t`` and is exactly ``alpha`` at ``t = 1``; negative ``gamma`` spends
    little early (-4 is O'Brien-Fleming-like, gsDesign's default), 1 is Pocock-like (Hwang, Shih and
    DeCani, 1990)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if information <= 0:
        return 0.0
    if information >= 1:
        return alpha
    if gamma == 0:
        return alpha * information
    return min(alpha, alpha * math.expm1(-gamma * information) / math.expm1(-gamma))


def check_alpha(check: MetricCheck) -> float:
    """A check's error budget per step: ``1 - confidence`` of its countTest (99 % unless stated)."""
    return 1.0 - (check.count_test.confidence if check.count_test is not None else DEFAULT_CONFIDENCE)


def step_alpha_share(*, final: bool, in_step_looks: int, information: float, alpha: float) -> float:
    """The share of a step's error budget ``alpha`` one look at the step spends (see the module docstring).

    Args:
        final: the step's gate (its whole window), not an in-step look.
        in_step_looks: the most in-step looks a step can have (looks are at least an interval apart).
        information: an in-step look's share of the step's information: its interval over the step's
            duration.
        alpha: the step's budget, ``1 - confidence``.

    Each in-step look spends ``alpha(information) / alpha`` (Hwang-Shih-DeCani with ``SPENDING_GAMMA``,
    never more than half the budget over all in-step looks); the final gate spends the rest, so the
    step's shares add up to exactly 1.
    """
    looks = max(1, in_step_looks)
    # Floored above 0 (judge refuses a zero share), for an information of 0.
    per_look = max(1e-300, min(hwang_shih_decani_spent(information, alpha=alpha) / alpha, 0.5 / looks))
    return 1.0 - looks * per_look if final else per_look


def look_alpha(check: MetricCheck, alpha_share: float) -> float:
    """The error a look may spend: ``alpha_share`` of the check's budget, carried as alpha itself (never
    as a confidence ``1 - alpha``, which rounds to 1 for a share below about 1e-14)."""
    return check_alpha(check) * alpha_share


def judge(
    check: MetricCheck, canary: SideData, stable: SideData | None, *, weight: int, alpha_share: float = 1.0
) -> CheckResult:
    """Judge one check from the measurements of the canary and, when needed, the stable version.

    ``alpha_share`` (0 < share <= 1): the part of ``1 - confidence`` this look may spend (see the module
    docstring); 1 judges it alone at the check's confidence.
    """
    if not 0 < alpha_share <= 1:
        raise ValueError(f"alpha_share must be in (0, 1], got {alpha_share}")
    queries = [
        o.query
        for side in (canary, stable)
        if side is not None
        for o in (side.value, side.errors, side.total)
        if o is not None
    ]
    base = _Base(check.name, queries)
    error = _problem(
        [canary.value, canary.errors, canary.total]
        + ([stable.value, stable.errors, stable.total] if stable is not None else [])
    )
    if error is not None:
        return base.result(Verdict.INCONCLUSIVE, f"query failed: {error}")
    if check.is_error_ratio:
        return _judge_ratio(check, canary, stable, weight=weight, base=base, alpha_share=alpha_share)
    return _judge_value(check, canary, stable, weight=weight, base=base)


def _judge_value(
    check: MetricCheck, canary: SideData, stable: SideData | None, *, weight: int, base: _Base
) -> CheckResult:
    value = canary.value.value if canary.value is not None else None
    stable_value = stable.value.value if stable is not None and stable.value is not None else None
    if value is None:
        if weight == 0 and (stable is None or stable_value is not None):
            return base.result(
                verdict=Verdict.PASS,
                reason="no canary traffic at weight 0; nothing to judge yet",
                stable_value=stable_value,
            )
        return _no_data(check, "the canary query returned no series", base)
    numbers = {"canary_value": value, "stable_value": stable_value}
    if check.max is not None and value > check.max:
        return base.result(
            verdict=Verdict.FAIL,
            reason=f"{_fmt(value)} is above max {_fmt(check.max)}",
            threshold=f"max {_fmt(check.max)}",
            **numbers,
        )
    if check.min is not None and value < check.min:
        return base.result(
            verdict=Verdict.FAIL,
            reason=f"{_fmt(value)} is below min {_fmt(check.min)}",
            threshold=f"min {_fmt(check.min)}",
            **numbers,
        )
    compare = check.compare_to_stable
    if compare is not None:
        if stable_value is None:
            return _no_data(check, "the stable query returned no series", base)
        limit = stable_value * compare.factor + compare.margin
        if value > limit:
            return base.result(
                verdict=Verdict.FAIL,
                reason=f"{_fmt(value)} is above stable {_fmt(stable_value)} x {compare.factor} + {compare.margin}",
                threshold=f"<= {_fmt(limit)}",
                **numbers,
            )
    return base.result(verdict=Verdict.PASS, reason=f"{_fmt(value)} within limits", **numbers)


def _level(alpha: float) -> str:
    """A look's level from its alpha, without cancellation: 99%, 99.5%, 99.88%, 99.99999974%, or
    ``alpha 3.2e-12`` beyond ten nines (an early in-step look)."""
    if alpha < 1e-10:
        return f"alpha {alpha:.2g}"
    decimals = max(0, 1 - math.floor(math.log10(alpha * 100)))
    text = f"{(1.0 - alpha) * 100:.{decimals}f}"
    return (text.rstrip("0").rstrip(".") if "." in text else text) + "%"


def _counts(side: SideData) -> tuple[float | None, float | None]:
    errors = side.errors.value if side.errors is not None else None
    total = side.total.value if side.total is not None else None
    return errors, total


def _judge_ratio(
    check: MetricCheck, canary: SideData, stable: SideData | None, *, weight: int, base: _Base, alpha_share: float
) -> CheckResult:
    alpha = look_alpha(check, alpha_share)
    minimum = check.min_connections if check.min_connections is not None else DEFAULT_MIN_CONNECTIONS
    errors, total = _counts(canary)
    stable_errors, stable_total = _counts(stable) if stable is not None else (None, None)
    needs_stable = check.count_test is not None or check.compare_to_stable is not None
    numbers: dict[str, Any] = {
        "canary_errors": errors,
        "canary_connections": total,
        "stable_errors": stable_errors,
        "stable_connections": stable_total,
    }
    if needs_stable and (stable_total is None or stable_total <= 0):
        return _no_data(check, "no stable connections to compare with", base)
    if total is None or total <= 0:
        if weight == 0:
            return base.result(
                verdict=Verdict.PASS,
                reason="weight 0: stable baseline observed "
                f"({_fmt(stable_errors or 0)} errors in {_fmt(stable_total)} connections)"
                if needs_stable
                else "weight 0: no canary traffic expected",
                **numbers,
            )
        return _no_data(check, "no canary connections in the window", base)
    k_c = round(errors or 0)
    n_c = round(total)
    k_c = min(k_c, n_c)
    rate = k_c / n_c
    stable_rate = (
        round(stable_errors or 0) / round(stable_total) if stable_total is not None and stable_total > 0 else None
    )
    numbers.update(canary_value=rate, stable_value=stable_rate)
    lower, upper = clopper_pearson_alpha(k_c, n_c, alpha)
    measured = f"{k_c} errors in {n_c} connections ({rate:.4%})"
    if check.count_test is not None and stable_total is not None:
        k_s, n_s = round(stable_errors or 0), round(stable_total)
        if check.count_test.method == "poisson":
            p_value = poisson_conditional_one_sided(k_c, n_c, k_s, n_s)
        else:
            p_value = fisher_one_sided(k_c, n_c, k_s, n_s)
        if p_value < alpha:
            return base.result(
                verdict=Verdict.FAIL,
                reason=f"canary {measured} is worse than stable {k_s}/{n_s} ({(stable_rate or 0):.4%}): "
                f"one-sided {check.count_test.method} p={p_value:.2g} < {alpha:.2g}",
                threshold=f"{check.count_test.method} test at {_level(alpha)}",
                **numbers,
            )
    limits: list[tuple[str, float]] = []
    if check.max is not None:
        limits.append((f"max {_fmt(check.max)}", check.max))
    if check.compare_to_stable is not None and stable_rate is not None:
        limit = stable_rate * check.compare_to_stable.factor + check.compare_to_stable.margin
        limits.append(
            (f"stable {stable_rate:.4%} x {check.compare_to_stable.factor} + {check.compare_to_stable.margin}", limit)
        )
    for label, limit in limits:
        if lower > limit:
            return base.result(
                verdict=Verdict.FAIL,
                reason=f"canary {measured} is above {label}: its lower bound at {_level(alpha)} is {lower:.4%}",
                threshold=label,
                **numbers,
            )
    if check.min is not None and upper < check.min:
        return base.result(
            verdict=Verdict.FAIL,
            reason=f"canary {measured} is below min {_fmt(check.min)}",
            threshold=f"min {_fmt(check.min)}",
            **numbers,
        )
    if n_c < minimum:
        return base.result(
            verdict=Verdict.INCONCLUSIVE,
            reason=f"canary {measured}: fewer than minConnections {minimum}",
            threshold=f"minConnections {minimum}",
            **numbers,
        )
    for label, limit in limits:
        if rate > limit:
            return base.result(
                verdict=Verdict.INCONCLUSIVE,
                reason=f"canary {measured} is above {label}, but not significantly at {_level(alpha)}",
                threshold=label,
                **numbers,
            )
    return base.result(
        verdict=Verdict.PASS,
        reason=f"canary {measured}"
        + (f"; stable {round(stable_errors or 0)}/{round(stable_total)}" if stable_total else ""),
        **numbers,
    )


def combine(results: list[CheckResult]) -> tuple[Verdict, str]:
    """FAIL if any check fails, else INCONCLUSIVE if any is, else PASS; the reason names the deciding checks."""
    failing = [r for r in results if r.verdict == Verdict.FAIL]
    if failing:
        return Verdict.FAIL, "; ".join(f"{r.name}: {r.reason}" for r in failing)
    unsure = [r for r in results if r.verdict == Verdict.INCONCLUSIVE]
    if unsure:
        return Verdict.INCONCLUSIVE, "; ".join(f"{r.name}: {r.reason}" for r in unsure)
    return Verdict.PASS, "; ".join(f"{r.name}: {r.reason}" for r in results)
