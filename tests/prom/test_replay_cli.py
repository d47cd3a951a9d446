"""``canaryctl replay`` as a tuning tool, on history backfilled with promtool into a real Prometheus."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from controller.cli import REPLAY_UNMEASURED, app
from controller.core.promql import ISTIO_OPENED
from tests.prom.servers import Point, PrometheusServer, history_start
from tests.prom.test_analysis_live import _policy

Replay = Callable[[Iterable[Point]], PrometheusServer]
NAMESPACE = "tuned"


def _history(base: float, *, broken_at: float | None, failing: int = 5, minutes: int = 20) -> list[Point]:
    """Every 5 s, 100 new connections to each version; from ``broken_at`` ``failing`` of the canary's fail."""
    points: list[Point] = []
    counters = {("tcp-echo-v2", "-"): 0.0, ("tcp-echo-v2", "UF,URX"): 0.0, ("tcp-echo-v1", "-"): 0.0}
    for second in range(0, minutes * 60, 5):
        at = base + second
        broken = broken_at is not None and at >= broken_at
        counters["tcp-echo-v2", "-"] += 100 - (failing if broken else 0)
        counters["tcp-echo-v2", "UF,URX"] += failing if broken else 0
        counters["tcp-echo-v1", "-"] += 100
        for (workload, flags), value in counters.items():
            labels = {
                "reporter": "source",
                "destination_workload": workload,
                "destination_workload_namespace": NAMESPACE,
                "response_flags": flags,
            }
            points.append(Point(ISTIO_OPENED, labels, at, value))
    return points


def _policy_file(tmp_path: Path, *, namespace: str = NAMESPACE, **check: Any) -> Path:
    doc = _policy(namespace, **check).model_dump(mode="json", exclude_none=True)
    doc["spec"]["schedule"]["stepDuration"] = "3m"
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _replay(policy: Path, url: str, base: float, *extra: str) -> Any:
    return CliRunner().invoke(
        app,
        [
            "replay",
            "--policy",
            str(policy),
            "--prometheus",
            url,
            "--start",
            str(base + 30),
            "--end",
            str(base + 19 * 60),
            *extra,
        ],
    )


def test_yaml_output_is_yaml_holding_the_same_report_as_json(replay: Replay, tmp_path: Path) -> None:
    base = history_start(hours_back=2)
    server = replay(_history(base, broken_at=base + 8 * 60))
    policy = _policy_file(tmp_path)
    as_yaml = _replay(policy, server.url, base, "-o", "yaml")
    as_json = _replay(policy, server.url, base, "-o", "json")
    assert as_yaml.exit_code == 0, as_yaml.output
    assert as_json.exit_code == 0, as_json.output
    document = yaml.safe_load(as_yaml.stdout)
    assert document == json.loads(as_json.stdout)
    assert document["outcome"] == "rolled back"


def test_text_output_folds_runs_of_identical_evaluations(replay: Replay, tmp_path: Path) -> None:
    # The canary serves no connections at all: every check of the 20 % step says the same "no data".
    base = history_start(hours_back=2)
    points = [p for p in _history(base, broken_at=None) if p.labels["destination_workload"] == "tcp-echo-v1"]
    server = replay(points)
    result = _replay(_policy_file(tmp_path), server.url, base)
    assert result.exit_code == 0, result.output
    folded = [line for line in result.stdout.splitlines() if " inconclusive x " in line]
    assert folded, result.stdout
    span, _, rest = folded[0].strip().partition(" inconclusive x ")
    count = int(rest.split(":", 1)[0])
    assert count > 10
    assert "-" in span
    assert "no canary connections in the window" in rest
    # The recorded share is shown per step (never judged in a replay): none of stable's connections' share.
    assert "step 2 weight 20: in progress" in result.stdout
    assert "; recorded canary share 0.0% of " in result.stdout
    assert len(result.stdout.splitlines()) < 20, result.stdout


def test_an_unreachable_prometheus_exits_non_zero_with_the_cause(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = CliRunner().invoke(
        app,
        [
            "replay",
            "--policy",
            str(_policy_file(tmp_path)),
            "--prometheus",
            f"http://127.0.0.1:{port}",
            "--start",
            "now-1h",
            "--end",
            "now-30m",
        ],
    )
    assert result.exit_code == REPLAY_UNMEASURED, result.output
    assert f"Prometheus cannot be queried: Prometheus at http://127.0.0.1:{port} unreachable" in result.stderr
    assert "outcome: not replayed" in result.stdout


def test_a_window_with_no_data_exits_non_zero_naming_the_selector(replay: Replay, tmp_path: Path) -> None:
    base = history_start(hours_back=2)
    server = replay(_history(base, broken_at=None))
    result = _replay(_policy_file(tmp_path, namespace="elsewhere"), server.url, base)
    assert result.exit_code == REPLAY_UNMEASURED, result.output
    assert "replay measured nothing: no data from " in result.stderr
    assert "spec.analysis.selector" in result.stderr


def test_a_sweep_shows_the_outcome_and_detection_time_of_each_threshold(replay: Replay, tmp_path: Path) -> None:
    base = history_start(hours_back=2)
    broken_at = base + 8 * 60  # 5 % of the canary's connections fail from here on
    server = replay(_history(base, broken_at=broken_at))
    policy = _policy_file(tmp_path, countTest=None)
    result = _replay(policy, server.url, base, "--sweep", "max=0.01,0.02,0.1", "-o", "json")
    assert result.exit_code == 0, result.output
    runs = json.loads(result.stdout)["runs"]
    assert [run["value"] for run in runs] == [0.01, 0.02, 0.1]
    assert [run["outcome"] for run in runs] == ["rolled back", "rolled back", "promoted"]
    strict, loose = runs[0]["detectionSeconds"], runs[1]["detectionSeconds"]
    assert broken_at - (base + 30) < strict <= loose
    assert runs[2]["detectionSeconds"] is None
    text = _replay(policy, server.url, base, "--sweep", "max=0.01,0.02,0.1")
    assert text.exit_code == 0, text.output
    rows = [line.split() for line in text.stdout.splitlines() if line.lstrip().startswith(("0.01", "0.02", "0.1"))]
    assert "# max=0.01: errors: canary " in text.stdout
    assert "is above max 0.01" in text.stdout
    assert [row[:3] for row in rows] == [
        ["0.01", "rolled", "back"],
        ["0.02", "rolled", "back"],
        ["0.1", "promoted", "-"],
    ]


@pytest.mark.parametrize("value", ["max=", "0.01,0.02", "=0.1"])
def test_a_malformed_sweep_is_a_usage_error(value: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "replay",
            "--policy",
            str(_policy_file(tmp_path)),
            "--prometheus",
            "http://127.0.0.1:9",
            "--start",
            "now-1h",
            "--sweep",
            value,
        ],
    )
    assert result.exit_code == 2, result.output
    assert "expected SETTING=V1,V2" in result.stderr
