"""The dashboard's fleet page at 1,000 rollouts, rendered by a real chromium (issue 17).

``python -m benchmarks.dashboard_render --out DIR [--rollouts 1000] [--runs 5]`` runs the product's own
dashboard server (``controller.dashboard.server``, local mode: the page, its assets and the JSON API) over a
synthetic data source following the API contract: ``--rollouts`` fleet rows over 40 namespaces, every
phase, verdict and stall kind represented, answered by ``/api/rollouts`` and the live stream. Nothing of the
cluster, Prometheus or the controller runs: what is measured is the server's answer and the browser's work,
from navigation to the fleet table holding every row.

Each run opens a fresh page (a new browser context: no cache, no storage) in Debian's chromium, driven by
Playwright with ``executable_path`` (``make browser-deps`` installs chromium; no browser is downloaded), and
records two figures:

* ``page_ms``: the page's own mark, ``window.__fleetRendered`` (set by app.js once the table is in the DOM),
  as milliseconds since the navigation started (``performance.timeOrigin``);
* ``painted_ms``: the start of the animation frame after the first frame that had every row, i.e. once
  that frame was laid out and painted (an init script polling each frame; the headline figure);
* ``wall_ms``: the driver's clock from ``page.goto`` to the moment every ``tr[data-rollout]`` row is in
  ``table#fleet`` (polled every animation frame), a cross-check that includes the driver's round trips.

It writes ``DIR/dashboard_render.json`` (every run, median and max of each figure, chromium's version, the
machine) and prints a one-line summary. It asserts nothing; the goal (under 1 s) is reported, not enforced.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from playwright.sync_api import sync_playwright

from controller.dashboard.data import DashboardData, DashboardError
from controller.dashboard.server import ASSETS, DashboardConfig, DashboardServer

REPO = Path(__file__).resolve().parents[1]

PHASES = ("Pending", "Progressing", "Paused", "RollingBack", "Promoted", "RolledBack", "Aborted", "Failed")
# Roughly what a fleet looks like: most rollouts finished, a fifth in flight, a few needing attention.
PHASE_WEIGHTS = (2, 20, 5, 1, 50, 12, 5, 5)
VERDICTS = ("pass", "fail", "inconclusive", "no-data", "not-yet")
STEPS = [0, 20, 50, 100]


def synthetic_rows(count: int, *, seed: int = 17, now: datetime | None = None) -> list[dict[str, Any]]:
    """``count`` fleet rows as the contract's ROW, over 40 namespaces, reproducible from ``seed``."""
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for i in range(count):
        phase = rng.choices(PHASES, weights=PHASE_WEIGHTS)[0]
        index = 3 if phase == "Promoted" else rng.randrange(len(STEPS))
        weight = 0 if phase in {"RolledBack", "Aborted"} else STEPS[index]
        verdict = rng.choice(VERDICTS)
        stall = "no-data: 4 connections of the 20 needed" if phase == "Paused" and i % 2 else None
        attention = {
            "Paused": "paused by a person" if stall is None else stall,
            "RolledBack": f"connect-errors failed at step {index + 1}/4",
            "Failed": "the target VirtualService vanished",
        }.get(phase)
        started = now - timedelta(seconds=rng.uniform(30, 7 * 86400))
        rows.append(
            {
                "namespace": f"team-{i % 40:02d}",
                "name": f"svc-{i:04d}",
                "target": {"kind": "VirtualService", "name": f"svc-{i:04d}"},
                "phase": phase,
                "step": f"{index + 1}/{len(STEPS)}",
                "stepIndex": index,
                "steps": STEPS,
                "weight": weight,
                "stall": stall,
                "message": f"{phase} at step {index + 1}/{len(STEPS)}",
                "lastVerdict": {"verdict": verdict, "reason": f"connect-errors: canary {i % 7} errors in 412"},
                "startedAt": started.isoformat().replace("+00:00", "Z"),
                "ageSeconds": (now - started).total_seconds(),
                "nextStepInSeconds": rng.uniform(0, 120) if phase == "Progressing" else None,
                "needsAttention": attention is not None,
                "attention": attention,
            }
        )
    return rows


def fleet_body(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``/api/rollouts`` body for ``rows``."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["phase"]] = counts.get(row["phase"], 0) + 1
    return {"generatedAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"), "counts": counts, "rollouts": rows}


class SyntheticFleet:
    """A data source for the dashboard's own server that answers the fleet with fixed rows (and nothing else:
    the fleet page asks for nothing else)."""

    prometheus_url: str | None = None

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.body = fleet_body(rows)

    def rollouts(self, namespaces: Sequence[str] | None, *, now: datetime) -> dict[str, Any]:
        """The same body every time, so the live stream sends it once."""
        del namespaces, now
        return self.body

    def rollout(self, namespace: str, name: str, *, now: datetime) -> dict[str, Any]:
        """A synthetic rollout has no page: 404, as for a rollout that does not exist."""
        del now
        raise DashboardError(404, f"synthetic rollout {namespace}/{name} has no details")

    def close(self) -> None:
        """Nothing to release."""


@contextmanager
def serving(
    rows: list[dict[str, Any]], *, tick_seconds: float = 2.0, keepalive_seconds: float = 15.0
) -> Iterator[DashboardServer]:
    """The product's dashboard server (local mode) over ``rows``; stopped on exit. A short tick and
    keep-alive make a live stream notice a closed page sooner (tests wait for its thread to end)."""
    config = DashboardConfig(
        mode="local", namespaces=None, tick_seconds=tick_seconds, keepalive_seconds=keepalive_seconds
    )
    server = DashboardServer(("127.0.0.1", 0), data=cast(DashboardData, SyntheticFleet(rows)), config=config)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# The page's mark as milliseconds since navigation: app.js may store performance.now() (already relative to
# timeOrigin) or Date.now() (an epoch time, made relative here); a performance mark named fleet-rendered too.
PAGE_MARK_JS = """() => {
  const mark = window.__fleetRendered;
  if (typeof mark === 'number') return mark > 1e12 ? mark - performance.timeOrigin : mark;
  const marks = performance.getEntriesByName('fleet-rendered');
  return marks.length ? marks[marks.length - 1].startTime : null;
}"""


# Installed before the page's own scripts: on every animation frame, look for the full table; the frame after
# the one that first had it starts once that one was laid out and painted, which is when the table is seen.
PAINTED_JS = """(() => {
  const wanted = %d;
  let seen = false;
  const frame = () => {
    if (seen) { window.__benchPainted = performance.now(); return; }
    seen = document.querySelectorAll('table#fleet tr[data-rollout]').length >= wanted;
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
})();"""


def measure(url: str, count: int, runs: int, chromium: str) -> dict[str, Any]:
    """Open the fleet page ``runs`` times in fresh contexts; the figures of each run."""
    results: list[dict[str, float | None]] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            version = browser.version
            for _ in range(runs):
                context = browser.new_context(viewport={"width": 1400, "height": 900})
                context.add_init_script(PAINTED_JS % count)
                page = context.new_page()
                began = time.perf_counter()
                page.goto(url, wait_until="commit")
                page.wait_for_function(
                    f"document.querySelectorAll('table#fleet tr[data-rollout]').length >= {count}",
                    polling="raf",
                    timeout=60_000,
                )
                wall_ms = (time.perf_counter() - began) * 1000
                page.wait_for_function(f"({PAGE_MARK_JS})() !== null", timeout=10_000)
                page_ms = page.evaluate(PAGE_MARK_JS)
                painted_ms = page.wait_for_function("window.__benchPainted", timeout=10_000).json_value()
                results.append(
                    {
                        "page_ms": round(float(page_ms), 1),
                        "painted_ms": round(float(painted_ms), 1),
                        "wall_ms": round(wall_ms, 1),
                    }
                )
                context.close()
        finally:
            browser.close()
    return {"chromium": version, "runs": results}


def summary(runs: list[dict[str, float | None]], key: str) -> dict[str, float]:
    """Median and max of one figure over the runs."""
    values = [value for run in runs if (value := run[key]) is not None]
    return {"median": round(statistics.median(values), 1), "max": round(max(values), 1)}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; write DIR/dashboard_render.json."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dashboard_render", description=__doc__)
    parser.add_argument("--out", required=True, type=Path, help="directory for dashboard_render.json")
    parser.add_argument("--rollouts", type=int, default=1000, help="rows in the synthetic fleet (default 1000)")
    parser.add_argument("--runs", type=int, default=5, help="page loads measured (default 5)")
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium")
    if chromium is None:
        print("chromium is not installed: run make browser-deps (Debian's chromium)", file=sys.stderr)
        return 2
    if not (ASSETS / "index.html").is_file():
        print(f"the dashboard's assets are missing: {ASSETS.relative_to(REPO)}/index.html", file=sys.stderr)
        return 2
    rows = synthetic_rows(args.rollouts)
    load_before = round(os.getloadavg()[0], 2)  # the machine may be shared: say how busy it was
    with serving(rows) as server:
        measured = measure(server.url, args.rollouts, args.runs, chromium)
    result = {
        "benchmark": "dashboard_render",
        "rollouts": args.rollouts,
        "fleet_body_bytes": len(json.dumps(fleet_body(rows))),
        "chromium": measured["chromium"],
        "runs": measured["runs"],
        "page_ms": summary(measured["runs"], "page_ms"),
        "painted_ms": summary(measured["runs"], "painted_ms"),
        "wall_ms": summary(measured["runs"], "wall_ms"),
        "goal_ms": 1000,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_1m_before": load_before,
        },
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dashboard_render.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    page, painted, wall = result["page_ms"], result["painted_ms"], result["wall_ms"]
    print(
        f"fleet page, {args.rollouts} rollouts, {args.runs} runs in chromium {result['chromium']}: "
        f"painted {painted['median']} ms median, {painted['max']} ms max after navigation "
        f"(table in the DOM: {page['median']} / {page['max']} ms; driver's clock: {wall['median']} / {wall['max']} ms)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
