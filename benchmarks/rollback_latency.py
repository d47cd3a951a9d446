"""Rollback latency in the sandbox, against the physical floor and the anchors' rules.

For each Prometheus scrape interval (1 s and 5 s by default) the benchmark runs ``--runs`` fault runs of
the demo (v2 refuses connections once it carries 50 %), each with a real Envoy, Prometheus and
Alertmanager, and measures from the first refused connection:

* ``scraped``: when Prometheus first held a connect failure of v2's cluster (its raw samples);
* ``api``: when the API accepted the controller's restore of the original route;
* ``envoy``: when Envoy ran the restored route (v2 gets no new connection from then on).

The floor is one scrape interval for the error to be visible plus the measured time to write and reload.
The controller's analysis interval is set to the scrape interval.

The anchors' rules are replayed on the same recorded streams: each run's recorded time at which the first
failure was scraped, with the fault persisting (as it would without a rollback), so every check whose
window holds the fault fails. Flagger: a check every ``interval`` (floor 10 s), rollback on the tick
after failed checks reach ``threshold``. Argo Rollouts: a measurement every ``interval``, abort when failed
measurements exceed ``failureLimit``. The checks' phase relative to the fault is uniform (averaged over
100 phases), and each adds the same measured reload time as ours. Their default settings and the settings
of their Istio tutorials are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from canary_sandbox.demo import DemoOptions, run_demo


@dataclass(frozen=True)
class AnchorRule:
    """One fixed-interval rule: ``checks`` failed checks in a row needed, decision ``extra_ticks`` later."""

    name: str
    interval: float
    failed_needed: int
    extra_ticks: int
    source: str


ANCHOR_RULES = (
    AnchorRule("Flagger, defaults (interval 10 s floor, threshold 1)", 10.0, 1, 1, "flagger.threshold.default"),
    AnchorRule("Flagger, Istio tutorial (interval 1m, threshold 5)", 60.0, 5, 1, "flagger.threshold.tutorials"),
    AnchorRule("Argo Rollouts, default failureLimit 0 (interval 10 s)", 10.0, 1, 0, "argo.failure-limit"),
    AnchorRule("Argo Rollouts, documented example (interval 5m, failureLimit 3)", 300.0, 4, 0, "argo.examples"),
)
PHASES = 100


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def anchor_latency(rule: AnchorRule, visible: float, reload: float) -> float:
    """Mean latency of ``rule`` over uniform check phases: the fault is visible ``visible`` s after onset."""
    total = 0.0
    for i in range(PHASES):
        phase = rule.interval * i / PHASES
        # First check at or after the failure is visible: phase + k * interval >= visible.
        k = max(0, -int(-(visible - phase) // rule.interval))
        first_failed = phase + k * rule.interval
        decision = first_failed + (rule.failed_needed - 1 + rule.extra_ticks) * rule.interval
        total += decision + reload
    return total / PHASES


def summary(values: list[float]) -> dict[str, float]:
    """Median and p95, rounded."""
    return {"median": round(statistics.median(values), 3), "p95": round(percentile(values, 0.95), 3)}


def run_setting(scrape: float, runs: int) -> dict[str, Any]:
    """``runs`` fault runs at one scrape interval."""
    step = max(4.0, 3 * scrape)
    records: list[dict[str, Any]] = []
    for index in range(runs):
        options = DemoOptions(
            fault_at=50,
            step_seconds=step,
            rate=40,
            scrape_seconds=scrape,
            analysis_seconds=scrape,
            timeout_seconds=120 + 10 * step,
        )
        started = time.monotonic()
        result = run_demo(options)
        latency = result.rollback_latency_seconds or {}
        records.append(
            {
                "run": index,
                "outcome": result.outcome,
                "scraped": latency.get("scraped"),
                "api": latency.get("api"),
                "envoy": latency.get("envoy"),
                "v2_connections_after_reload": result.v2_connections_after_reload,
                "seconds": round(time.monotonic() - started, 1),
            }
        )
        print(f"scrape {scrape:g} s, run {index + 1}/{runs}: {records[-1]}", file=sys.stderr)
    good = [r for r in records if r["outcome"] == "rolled_back" and r["api"] is not None and r["envoy"] is not None]
    api = [float(r["api"]) for r in good]
    envoy = [float(r["envoy"]) for r in good]
    scraped = [float(r["scraped"]) for r in good if r["scraped"] is not None]
    reload = [float(r["envoy"]) - float(r["api"]) for r in good]
    out: dict[str, Any] = {
        "scrape_seconds": scrape,
        "analysis_interval_seconds": scrape,
        "step_seconds": step,
        "runs": records,
        "rolled_back": len(good),
    }
    if not good:
        return out
    floor = [scrape + r for r in reload]
    out["ours"] = {"api": summary(api), "envoy": summary(envoy), "scraped": summary(scraped) if scraped else None}
    out["floor_envoy"] = summary(floor)
    out["goal_envoy_seconds"] = 3.0 if scrape == 1.0 else 2 * scrape + scrape
    visible = statistics.median(scraped) if scraped else scrape
    median_reload = statistics.median(reload)
    anchors = []
    for rule in ANCHOR_RULES:
        theirs = anchor_latency(rule, visible, median_reload)
        anchors.append(
            {
                "rule": rule.name,
                "source": rule.source,
                "envoy_seconds_mean_over_phases": round(theirs, 2),
                "ours_over_theirs": round(statistics.median(envoy) / theirs, 3),
            }
        )
    out["anchors"] = anchors
    return out


def machine() -> dict[str, Any]:
    """Cores, memory and platform of this machine."""
    memory = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) // 1024
    except OSError:
        pass
    return {"cores": os.cpu_count(), "memory_mib": memory, "platform": platform.platform(), "python": sys.version}


def markdown(report: dict[str, Any]) -> str:
    """The results as Markdown tables."""
    lines = [
        "| scrape | runs rolled back | first failure scraped (median) | API restored median / p95 | "
        "Envoy without v2 median / p95 | floor (scrape + reload) median | goal |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for setting in report["settings"]:
        ours = setting.get("ours")
        if ours is None:
            lines.append(f"| {setting['scrape_seconds']:g} s | 0 | - | - | - | - | - |")
            continue
        scraped = ours["scraped"]["median"] if ours["scraped"] else "-"
        lines.append(
            f"| {setting['scrape_seconds']:g} s | {setting['rolled_back']}/{len(setting['runs'])} | {scraped} s | "
            f"{ours['api']['median']} / {ours['api']['p95']} s | {ours['envoy']['median']} / {ours['envoy']['p95']} s "
            f"| {setting['floor_envoy']['median']} s | <= {setting['goal_envoy_seconds']:g} s |"
        )
    lines += [
        "",
        "| scrape | rule | theirs (Envoy without v2, mean over phases) | ours / theirs |",
        "|---:|---|---:|---:|",
    ]
    for setting in report["settings"]:
        for anchor in setting.get("anchors", []):
            lines.append(
                f"| {setting['scrape_seconds']:g} s | {anchor['rule']} | {anchor['envoy_seconds_mean_over_phases']} s "
                f"| {anchor['ours_over_theirs']} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; write ``OUT/rollback_latency.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--scrapes", default="1,5", help="comma-separated scrape intervals in seconds")
    args = parser.parse_args(argv)

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Each demo run stops everything it started on KeyboardInterrupt; make SIGTERM and SIGINT raise it.
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        settings = [run_setting(float(s), args.runs) for s in args.scrapes.split(",")]
    except KeyboardInterrupt:
        print("interrupted: every process stopped", file=sys.stderr)
        return 130
    report = {
        "benchmark": "rollback_latency",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "method": __doc__,
        "settings": settings,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rollback_latency.json").write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
