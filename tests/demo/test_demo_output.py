"""What a person sees of ``canaryctl demo``: the policy it runs, progress lines in logs, a final panel that agrees.

No sandbox starts here: ``run_demo`` is replaced by a script of the states a real run goes through (the
real runs are in test_demo.py), so these tests take milliseconds.
"""

from __future__ import annotations

import io
import signal
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from canary_sandbox import demo
from canary_sandbox.envoy_gateway import RouteChange
from controller.cli import app

STABLE, CANARY = demo.clusters("istio")


@pytest.fixture(autouse=True)
def _keep_signal_handlers() -> Iterator[None]:
    """The demo command installs SIGINT/SIGTERM handlers for its own process; give pytest its own back."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def _state(elapsed: float, phase: str, step: str = "", weight: int | None = None, **counts: Any) -> demo.LiveState:
    return demo.LiveState(phase=phase, step=step, weight=weight, elapsed=elapsed, **counts)


# A promoted run as the live loop sees it: many refreshes per step, the same phase and step repeated.
SCRIPT = [
    _state(0.2, "Starting"),
    _state(0.5, "Pending", "0/4"),
    *[_state(1.0 + i / 5, "Progressing", "1/4", 0, connections=i, counted_weight=0) for i in range(10)],
    *[_state(11.0 + i / 5, "Progressing", "2/4", 20, connections=i, counted_weight=20) for i in range(10)],
    _state(13.0, "Paused", "2/4", 20, connections=40, counted_weight=20),
    _state(14.0, "Progressing", "2/4", 20, connections=50, counted_weight=20),
    *[_state(21.0 + i / 5, "Progressing", "3/4", 50, connections=i, counted_weight=50) for i in range(10)],
    *[_state(31.0 + i / 5, "Progressing", "4/4", 100, connections=i, counted_weight=100) for i in range(10)],
    *[
        _state(41.0 + i / 5, "Promoted", "4/4", 100, verdict="pass: all checks passed", counted_weight=100)
        for i in range(3)
    ],
]


def _fake_run_demo(script: list[demo.LiveState]) -> Callable[..., demo.DemoResult]:
    def run_demo(
        options: demo.DemoOptions,
        *,
        on_update: Callable[[demo.LiveState], None] | None = None,
        on_policy: Callable[[dict[str, Any]], None] | None = None,
        workdir: Any = None,
        on_dashboard: Callable[[str], None] | None = None,
    ) -> demo.DemoResult:
        policy = demo.demo_policy(options, prometheus_url="http://127.0.0.1:9", alertmanager_url="http://127.0.0.1:9")
        if on_policy is not None:
            on_policy(policy)
        if on_dashboard is not None and options.dashboard_port is not None:
            on_dashboard(f"http://127.0.0.1:{options.dashboard_port}/")
        for state in script:
            if on_update is not None:
                on_update(state)
        return demo.DemoResult(
            outcome="promoted",
            steps=[],
            rollback_latency_seconds=None,
            final_route=None,
            original_route=None,
            alerts=[],
            versions={"envoy": "x", "prometheus": "y", "alertmanager": "z"},
            policy=policy,
        )

    return run_demo


def test_a_piped_demo_prints_its_policy_then_one_line_per_phase_change_and_per_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(demo, "run_demo", _fake_run_demo(SCRIPT))
    result = CliRunner().invoke(app, ["demo", "--step-seconds", "10"])
    assert result.exit_code == 0, result.output
    policy_part, _, progress = result.stderr.partition("\n[")
    printed = yaml.safe_load(policy_part)
    assert printed["kind"] == "CanaryPolicy"
    assert printed["spec"]["schedule"] == {"steps": [0, 20, 50, 100], "stepDuration": "10000ms"}
    assert printed["spec"]["analysis"]["metrics"][0]["minConnections"] == 10
    lines = ("[" + progress).splitlines()
    assert [line.split("] ", 1)[1].split("  ")[:2] for line in lines] == [
        ["Starting"],
        ["Pending", "step 0/4"],
        ["Progressing", "step 1/4"],
        ["Progressing", "step 2/4"],
        ["Paused", "step 2/4"],
        ["Progressing", "step 2/4"],
        ["Progressing", "step 3/4"],
        ["Progressing", "step 4/4"],
        ["Promoted", "step 4/4"],
    ]
    assert "(at 0 %: 9 connections" in lines[3], lines[3]
    assert lines[-1].endswith("last verdict: pass: all checks passed")
    assert "outcome: promoted (expected promoted)" in result.stdout
    assert "# dashboard: http://127.0.0.1:3100/ (served while the demo runs)" in policy_part


def test_a_demo_with_json_output_prints_progress_lines_and_keeps_stdout_one_json_object(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(demo, "run_demo", _fake_run_demo(SCRIPT))
    result = CliRunner().invoke(app, ["demo", "--json"])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.stdout)["policy"]["kind"] == "CanaryPolicy"
    assert len(result.stdout.strip().splitlines()) == 1
    assert sum(line.startswith("[") for line in result.stderr.splitlines()) == 9


def _change(weight: int, at: float) -> RouteChange:
    weights = {STABLE: 100 - weight, CANARY: weight} if weight else {STABLE: 100}
    return RouteChange(str(at), weights, seen_at=at, written_at=at + 0.05, confirmed_at=at + 0.1, version=str(at))


def test_after_a_rollback_the_panel_counts_the_step_that_failed_not_the_restored_route() -> None:
    changes = [_change(0, 1.0), _change(20, 11.0), _change(50, 21.0), _change(0, 27.0)]
    window = demo._counting_window(changes, "RolledBack", CANARY)
    assert window.weight == 50
    assert window.span == (21.1, 27.05)


def test_while_stepping_the_panel_counts_the_current_step() -> None:
    changes = [_change(0, 1.0), _change(20, 11.0)]
    window = demo._counting_window(changes, "Progressing", CANARY)
    assert window.weight == 20
    assert window.span == (11.1, None)


def test_the_final_panel_shows_the_whole_verdict_and_says_which_step_its_counts_are_from() -> None:
    verdict = (
        "fail: connect-errors: canary 0.875 > max 0.05 at 99 % (Clopper-Pearson lower bound 0.61); "
        "21 errors in 24 connections"
    )
    state = demo.LiveState(
        phase="RolledBack", step="3/4", weight=0, connections=54, errors=30, verdict=verdict, counted_weight=50
    )
    console = Console(record=True, width=100, file=io.StringIO())
    console.print(demo.render_panel(state))
    text = " ".join(console.export_text().split())
    assert "21 errors in 24 connections" in text
    assert "..." not in text
    assert "client: errors (at 50 %)" in text
