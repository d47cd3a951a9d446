"""What-if (issue 15, section 2): judge against a stable baseline over a longer look-back, measured before building it.

``python -m benchmarks.stable_baseline --out DIR`` (about 5 minutes on 2 cores; ``--quick`` for 2,000 trials)
writes ``DIR/stable_baseline.json`` and ``DIR/stable_baseline.md`` and prints the tables. The same seed gives
the same files. The controller does not do this: these figures are why (docs/benchmarks.md).

**The idea.** The controller compares the canary with the stable version's connections of the same window
(the step, or an in-step look's interval). The stable version does not change during a run, so its error
rate could come from far more data: the run so far plus a look-back (``countTest.baselineWindow``), which
makes the stable rate nearly known and the count test close to the known-rate (Neyman-Pearson) bound.
The risk: the stable rate is not stationary (time of day, an incident earlier), and a canary compared
with a stable rate from another time is rolled back for the stable version's drift.

**The model.** The streams of ``benchmarks.judgement_accuracy`` (canary ``n`` connections per step, stable
the complement at the weight, ``K`` intervals, in-step looks with Hwang-Shih-DeCani spending, then the
final gate), plus a baseline: the stable version's connections over ``M`` earlier steps' worth of stable
traffic (``M * stable connections per step``), failing at the baseline rate (0.1 %). Each look judges the
canary's counts with the controller's own ``judge`` against the stable counts of its window *plus* the
baseline's. Scenarios: healthy (canary and stable 0.1 %), +1 pp and +5 pp canaries (stable 0.1 %), and a
drift: the stable rate doubles between the baseline and the step (stable and canary both 0.2 % during
the step: a healthy canary; rolling it back is a false rollback).

**The guard.** Before pooling, the window's own stable counts are compared with the baseline (one-sided
Fisher, the window's stable worse than the baseline): below ``g`` the look falls back to the window's own
stable counts (the controller today). ``g`` trades the drift's false rollbacks against the gain.

**The floor.** For any judgement of the canary's counts against a stable rate taken as known (a baseline
of infinite size), the least false-rollback rate under the doubled stable rate among those that miss at
most ``bound + slack`` of +1 pp regressions (Neyman-Pearson between 0.2 % and 1.1 %, randomized): what no
baseline and no threshold can beat. It leaves out the step's own stable counts, which the guard uses.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.judgement_accuracy import (
    CONFIDENCE,
    GOAL_MAX_FALSE_ROLLBACK,
    ISSUE15_SLACK,
    Binomial,
    best_power,
    our_verdict,
    split,
    wilson,
)
from controller.core.judgement import binomial_upper_tail, fisher_one_sided, step_alpha_share
from controller.core.status import Verdict

SEED = 1502
TRIALS = 10_000
QUICK_TRIALS = 2_000
CONNECTIONS = (100, 300, 1000)
WEIGHTS = (20, 50)
INTERVALS = 5
BASELINE_RATE = 0.001
BASELINE_STEPS = (3, 10, 30)  # the baseline's stable connections, in steps' worth of the step's stable traffic
GUARDS = (0.0, 0.05, 0.2, 0.5)  # 0: no guard
# name: (canary rate, the step's stable rate); the baseline is always at BASELINE_RATE.
SCENARIOS: dict[str, tuple[float, float]] = {
    "healthy": (0.001, 0.001),
    "regressed-1pp": (0.011, 0.001),
    "regressed-5pp": (0.051, 0.001),
    "drift-2x": (0.002, 0.002),
}
HEALTHY = ("healthy", "drift-2x")


@dataclass(frozen=True)
class Variant:
    """One way to get the stable counts of a look: the window's own (M = 0) or pooled with a baseline."""

    baseline_steps: int
    guard: float

    @property
    def key(self) -> str:
        """A short name: ``step-only``, ``baseline-10``, ``baseline-10-guard-0.2``."""
        if not self.baseline_steps:
            return "step-only"
        return f"baseline-{self.baseline_steps}" + (f"-guard-{self.guard:g}" if self.guard else "")


def variants(baseline_steps: Sequence[int] = BASELINE_STEPS, guards: Sequence[float] = GUARDS) -> list[Variant]:
    """The controller today first, then every baseline size with every guard."""
    return [Variant(0, 0.0)] + [Variant(m, g) for m in baseline_steps for g in guards]


@dataclass(frozen=True)
class Config:
    """What to run."""

    trials: int = TRIALS
    seed: int = SEED
    connections: tuple[int, ...] = CONNECTIONS
    weights: tuple[int, ...] = WEIGHTS
    baseline_steps: tuple[int, ...] = BASELINE_STEPS
    guards: tuple[float, ...] = GUARDS
    jobs: int = 1


def pooled(k: int, total: int, k_b: int, n_b: int, guard: float) -> tuple[int, int, bool]:
    """A look's stable counts: its window's plus the baseline's, or the window's alone (and True) when the guard
    finds the window's stable significantly worse than the baseline (one-sided Fisher, p < ``guard``)."""
    if not n_b:
        return k, total, False
    if guard and fisher_one_sided(k, total, k_b, n_b) < guard:
        return k, total, True
    return k + k_b, total + n_b, False


def simulate(config: Config, weight: int, n: int, scenario: str) -> dict[str, Any]:
    """Every trial of one cell through every variant, on the same draws (common random numbers)."""
    rng = random.Random(f"{config.seed}/{weight}/{n}/{scenario}")
    canary_rate, stable_rate = SCENARIOS[scenario]
    n_s_step = round(n * (100 - weight) / weight)
    n_c, n_s = split(n, INTERVALS), split(n_s_step, INTERVALS)
    canary = [Binomial(x, canary_rate) for x in n_c]
    stable = [Binomial(x, stable_rate) for x in n_s]
    chunk = Binomial(n_s_step, BASELINE_RATE)  # one step's worth of baseline; M of them make the baseline
    in_step = step_alpha_share(
        final=False, in_step_looks=INTERVALS - 1, information=1 / INTERVALS, alpha=1 - CONFIDENCE
    )
    final = step_alpha_share(final=True, in_step_looks=INTERVALS - 1, information=1 / INTERVALS, alpha=1 - CONFIDENCE)
    all_variants = variants(config.baseline_steps, config.guards)
    counts = {v.key: {str(verdict): 0 for verdict in Verdict} for v in all_variants}
    fell_back = {v.key: 0 for v in all_variants}
    largest = max(config.baseline_steps, default=0)
    for _ in range(config.trials):
        k_c = [s.draw(rng) for s in canary]
        k_s = [s.draw(rng) for s in stable]
        chunks = [chunk.draw(rng) for _ in range(largest)]
        for variant in all_variants:
            k_b, n_b = sum(chunks[: variant.baseline_steps]), variant.baseline_steps * n_s_step
            fallback = False
            verdict: Verdict | None = None
            for index in range(INTERVALS - 1):
                k, total, fell = pooled(k_s[index], n_s[index], k_b, n_b, variant.guard)
                fallback |= fell
                look = our_verdict("ours", k_c[index], n_c[index], k, total, weight=weight, alpha_share=in_step)
                if look == Verdict.FAIL:
                    verdict = look
                    break
            if verdict is None:
                k, total, fell = pooled(sum(k_s), n_s_step, k_b, n_b, variant.guard)
                fallback |= fell
                verdict = our_verdict("ours", sum(k_c), n, k, total, weight=weight, alpha_share=final)
            counts[variant.key][str(verdict)] += 1
            fell_back[variant.key] += fallback
    wrong = str(Verdict.FAIL) if scenario in HEALTHY else str(Verdict.PASS)
    results = {}
    for key, tally in counts.items():
        low, high = wilson(tally[wrong], config.trials)
        results[key] = {
            "counts": tally,
            "wrongRate": tally[wrong] / config.trials,
            "wrongCi95": [low, high],
            "heldRate": tally[str(Verdict.INCONCLUSIVE)] / config.trials,
            "fellBackRate": fell_back[key] / config.trials,
        }
    return {
        "weight": weight,
        "canaryConnections": n,
        "stableConnectionsPerStep": n_s_step,
        "scenario": scenario,
        "canaryErrorRate": canary_rate,
        "stableErrorRate": stable_rate,
        "baselineErrorRate": BASELINE_RATE,
        "wrongVerdict": wrong,
        "results": results,
    }


def _job(job: tuple[Config, int, int, str]) -> dict[str, Any]:
    return simulate(*job)


def known_rate_bound(n: int) -> float:
    """The least share of +1 pp canaries not rolled back by any judgement with <= 1 % false rollbacks, stable
    rate known (the bound of ``benchmarks.judgement_accuracy``)."""
    return 1.0 - best_power(n, BASELINE_RATE, SCENARIOS["regressed-1pp"][0], GOAL_MAX_FALSE_ROLLBACK)


def drift_floor(n: int, *, drifted: float, regressed: float, max_missed: float) -> float:
    """The least false-rollback rate at a stable (and canary) rate ``drifted`` of any judgement of the canary's
    ``n`` connections that misses at most ``max_missed`` of canaries at rate ``regressed``.

    Neyman-Pearson between the two rates: reject the largest counts (the edge one randomized) until the power
    at ``regressed`` is ``1 - max_missed``; the false rollbacks are that test's size at ``drifted``.
    """
    need = 1.0 - max_missed
    critical = 0  # the largest count c whose tail P(X >= c) at `regressed` still reaches `need`
    while binomial_upper_tail(critical + 1, n, regressed) >= need:
        critical += 1
    above, at_edge = binomial_upper_tail(critical + 1, n, regressed), binomial_upper_tail(critical, n, regressed)
    gamma = (need - above) / (at_edge - above) if at_edge > above else 0.0
    drift_above = binomial_upper_tail(critical + 1, n, drifted)
    return drift_above + gamma * (binomial_upper_tail(critical, n, drifted) - drift_above)


def goals(config: Config, cells: list[dict[str, Any]]) -> dict[str, Any]:
    """Issue 15's goals for each variant at each weight, plus false rollbacks <= 1 % under the drift."""
    out: dict[str, Any] = {}
    for weight in config.weights:
        per_variant: dict[str, Any] = {}
        for variant in variants(config.baseline_steps, config.guards):
            at = {
                (c["scenario"], c["canaryConnections"]): c["results"][variant.key]["wrongRate"]
                for c in cells
                if c["weight"] == weight
            }
            met = {}
            for n in config.connections:
                met[f"falseRollback@{n}"] = at[("healthy", n)] <= GOAL_MAX_FALSE_ROLLBACK
                met[f"driftFalseRollback@{n}"] = at[("drift-2x", n)] <= GOAL_MAX_FALSE_ROLLBACK
                if n in ISSUE15_SLACK:
                    met[f"missed1pp@{n}"] = at[("regressed-1pp", n)] <= known_rate_bound(n) + ISSUE15_SLACK[n]
            if 300 in config.connections:
                met["missed5pp@300"] = at[("regressed-5pp", 300)] <= GOAL_MAX_FALSE_ROLLBACK
            per_variant[variant.key] = {"met": met, "all": all(met.values())}
        out[str(weight)] = per_variant
    return out


def run(config: Config) -> dict[str, Any]:
    """Every cell, the goals and the floor."""
    jobs = [(config, w, n, s) for w in config.weights for n in config.connections for s in SCENARIOS]
    if config.jobs > 1:
        with ProcessPoolExecutor(max_workers=config.jobs) as pool:
            cells = list(pool.map(_job, jobs))
    else:
        cells = [_job(job) for job in jobs]
    floor = {
        str(n): {
            "knownRateBound": known_rate_bound(n),
            "maxMissed": known_rate_bound(n) + ISSUE15_SLACK[n],
            "leastDriftFalseRollback": drift_floor(
                n,
                drifted=SCENARIOS["drift-2x"][0],
                regressed=SCENARIOS["regressed-1pp"][0],
                max_missed=known_rate_bound(n) + ISSUE15_SLACK[n],
            ),
        }
        for n in config.connections
        if n in ISSUE15_SLACK
    }
    return {
        "benchmark": "stable-baseline-what-if",
        "issue": "15, section 2",
        "config": {
            "trials": config.trials,
            "seed": config.seed,
            "canaryConnections": list(config.connections),
            "weights": list(config.weights),
            "intervalsPerStep": INTERVALS,
            "baselineErrorRate": BASELINE_RATE,
            "baselineSteps": list(config.baseline_steps),
            "guards": list(config.guards),
            "scenarios": {name: {"canary": c, "stable": s} for name, (c, s) in SCENARIOS.items()},
            "check": {
                "template": "istio-tcp-connect-error-ratio",
                "countTest": {"method": "binomial", "confidence": CONFIDENCE},
            },
        },
        "variants": [v.key for v in variants(config.baseline_steps, config.guards)],
        "cells": cells,
        "goals": goals(config, cells),
        "driftFloor": floor,
    }


def _pct(value: float) -> str:
    return f"{100 * value:.2f}"


def markdown(report: dict[str, Any]) -> str:
    """One table per weight: rows by variant, the wrong-verdict % of the cells the goals read."""
    config = report["config"]
    columns = (
        [("healthy", n, "false rollback") for n in config["canaryConnections"]]
        + [("drift-2x", n, "false rollback, stable 2x") for n in config["canaryConnections"]]
        + [("regressed-1pp", n, "missed +1 pp") for n in config["canaryConnections"] if str(n) in report["driftFloor"]]
        + [("regressed-5pp", 300, "missed +5 pp")]
    )
    lines = [
        f"Stable baseline what-if: seed {config['seed']}, {config['trials']} trials per cell; % of steps judged "
        "wrong; baseline-M = the step's stable plus M steps' worth of baseline stable connections at 0.1 %; "
        "guard g = fall back to the window's own stable when it is worse than the baseline at p < g.",
        "",
    ]
    for weight in config["weights"]:
        cells = {(c["scenario"], c["canaryConnections"]): c for c in report["cells"] if c["weight"] == weight}
        lines += [
            f"*weight {weight} %*",
            "",
            "| variant | " + " | ".join(f"{label} @{n}" for _, n, label in columns) + " | all goals |",
            "|---|" + "---:|" * (len(columns) + 1),
        ]
        for key in report["variants"]:
            figures = [_pct(cells[(s, n)]["results"][key]["wrongRate"]) for s, n, _ in columns]
            met = report["goals"][str(weight)][key]
            missing = [name for name, ok in met["met"].items() if not ok]
            lines.append(
                f"| {key} | " + " | ".join(figures) + f" | {'met' if met['all'] else 'not: ' + ', '.join(missing)} |"
            )
        lines.append("")
    lines.append("*floor* (stable rate known, canary counts only): ")
    for n, floor in report["driftFloor"].items():
        lines.append(
            f"- {n} connections: missing at most {_pct(floor['maxMissed'])} % of +1 pp canaries (bound "
            f"{_pct(floor['knownRateBound'])} % + slack) rolls back at least "
            f"{_pct(floor['leastDriftFalseRollback'])} % of healthy canaries when the stable rate has doubled"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.stable_baseline", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--out", required=True, type=Path, help="directory for stable_baseline.json")
    parser.add_argument("--trials", type=int, default=TRIALS, help=f"trials per cell (default {TRIALS})")
    parser.add_argument("--seed", type=int, default=SEED, help=f"random seed (default {SEED})")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_TRIALS} trials per cell")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes")
    args = parser.parse_args(argv)
    if args.trials < 1:
        parser.error("--trials must be positive")
    config = Config(trials=QUICK_TRIALS if args.quick else args.trials, seed=args.seed, jobs=max(1, args.jobs))
    started = time.monotonic()
    report = run(config)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "stable_baseline.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (args.out / "stable_baseline.md").write_text(markdown(report), encoding="utf-8")
    sys.stdout.write(markdown(report))
    sys.stderr.write(f"{len(report['cells'])} cells in {time.monotonic() - started:.1f} s\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
