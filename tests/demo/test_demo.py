"""``canaryctl demo`` end to end: real Envoy, Prometheus and Alertmanager, both route kinds, with and without a fault.

Each run is the real command (``canaryctl demo --json``) in a subprocess, with short steps and a higher
connection rate so every step still carries a useful sample. Runs go two at a time.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from canary_sandbox.demo import route_of
from canary_sandbox.scenario import manifest_documents
from tests.demo.support import child_processes
from tests.support.paths import REPO

pytestmark = pytest.mark.timeout(300)

STEP_SECONDS = 4
RATE = 40
RUNS = {
    ("istio", None): "promoted",
    ("gateway-api", None): "promoted",
    ("istio", 50): "rolled_back",
    ("gateway-api", 50): "rolled_back",
}


def _demo(variant: str, fault_at: int | None) -> tuple[int, dict[str, Any], str]:
    command = [
        sys.executable,
        "-m",
        "controller",
        "demo",
        "--json",
        "--variant",
        variant,
        "--step-seconds",
        str(STEP_SECONDS),
        "--rate",
        str(RATE),
    ]
    if fault_at is not None:
        command += ["--fault-at", str(fault_at)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=240, check=False, env=os.environ)
    try:
        result = json.loads(done.stdout)
    except ValueError:
        result = {}
    return done.returncode, result, done.stderr


@pytest.fixture(scope="module")
def runs() -> dict[tuple[str, int | None], tuple[int, dict[str, Any], str]]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {key: pool.submit(_demo, *key) for key in RUNS}
        return {key: future.result() for key, future in futures.items()}


def _binomial_interval(n: int, p: float, coverage: float = 0.999) -> tuple[int, int]:
    """The central ``coverage`` interval of Binomial(n, p) (exact, from the probability mass function)."""
    tail = (1 - coverage) / 2
    pmf = [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]
    low, cumulative = 0, 0.0
    while cumulative + pmf[low] < tail:
        cumulative += pmf[low]
        low += 1
    high, cumulative = n, 0.0
    while cumulative + pmf[high] < tail:
        cumulative += pmf[high]
        high -= 1
    return low, high


def _weights(route: Any, variant: str) -> dict[str, int]:
    if variant == "istio":
        entries = route[0]["route"]
        return {e["destination"]["subset"]: int(e.get("weight", 0)) for e in entries}
    backends = route[0]["backendRefs"]
    return {b["name"].removeprefix("tcp-echo-"): int(b.get("weight", 1)) for b in backends}


@pytest.mark.parametrize("variant", ["istio", "gateway-api"])
def test_a_healthy_canary_is_promoted_with_the_planned_traffic_split(
    runs: dict[tuple[str, int | None], tuple[int, dict[str, Any], str]], variant: str
) -> None:
    code, result, stderr = runs[(variant, None)]
    assert code == 0, (result.get("outcome"), stderr[-3000:])
    assert result["outcome"] == "promoted"
    assert [step["weight"] for step in result["steps"]] == [0, 20, 50, 100]
    for step in result["steps"]:
        answered = step["connections"] - step["errors"]
        assert step["errors"] == 0, step
        assert answered >= 0.5 * RATE * STEP_SECONDS, f"too few connections in a step: {step}"
        low, high = _binomial_interval(answered, step["weight"] / 100)
        assert low <= step["canary_replies"] <= high, (
            f"at weight {step['weight']}: {step['canary_replies']} of {answered} replies from v2, "
            f"outside the 99.9 % interval [{low}, {high}]"
        )
        assert step["verdict"] == "pass", step
    # The controller's traffic-share measure (Envoy's counters in Prometheus) agrees with the client's replies.
    measured = {step["weight"]: step["prometheus_canary_share"] for step in result["steps"]}
    client = {step["weight"]: step["observed_canary_share"] for step in result["steps"]}
    assert measured[0] == 0.0
    assert measured[100] is None  # at 100 % the stable side is the step before's baseline: no share
    for weight in (20, 50):
        assert measured[weight] is not None, result["steps"]
        assert abs(measured[weight] - client[weight]) <= 0.1, (weight, measured, client)
    assert _weights(result["final_route"], variant) == {"v1": 0, "v2": 100}
    assert result["rollback_latency_seconds"] is None
    assert result["alerts"] == []
    assert set(result["versions"]) == {"envoy", "prometheus", "alertmanager"}


@pytest.mark.parametrize("fault_at", [None, 50], ids=["promoted", "rolled-back"])
def test_a_run_in_a_log_says_each_phase_change_and_step_once(
    runs: dict[tuple[str, int | None], tuple[int, dict[str, Any], str]], fault_at: int | None
) -> None:
    code, result, stderr = runs[("istio", fault_at)]
    assert code == 0, stderr[-3000:]
    progress = [line.split("] ", 1)[1] for line in stderr.splitlines() if line.startswith("[")]
    moments = [tuple(line.split("  ")[:2]) for line in progress if not line.startswith("fault:")]
    assert len(moments) == len(set(moments)), progress  # no repeats: a line says a change
    steps = [m[1] for m in moments if m[0] == "Progressing"]
    reached = len(result["steps"])
    assert steps == [f"step {n}/4" for n in range(1, reached + 1)], progress
    final = "Promoted" if fault_at is None else "RolledBack"
    assert progress[-1].startswith(final), progress
    assert "last verdict: " in progress[-1]
    printed = yaml.safe_load(stderr.split("\n[", 1)[0])
    assert printed == result["policy"], "the policy printed is not the one the run reports"


@pytest.mark.parametrize("variant", ["istio", "gateway-api"])
def test_a_canary_refusing_connections_is_rolled_back_and_alerted(
    runs: dict[tuple[str, int | None], tuple[int, dict[str, Any], str]], variant: str
) -> None:
    code, result, stderr = runs[(variant, 50)]
    assert code == 0, (result.get("outcome"), stderr[-3000:])
    assert result["outcome"] == "rolled_back"
    weights = [step["weight"] for step in result["steps"]]
    assert weights == [0, 20, 50], weights
    assert result["steps"][-1]["verdict"] == "fail"
    assert result["steps"][-1]["errors"] > 0
    # The route stored at the end is the route as stored before the rollout, exactly (API defaults included),
    # and that is the scenario's own route.
    assert result["final_route"] == result["original_route"]
    original = next(doc for doc in manifest_documents(variant) if doc["kind"] in {"VirtualService", "TCPRoute"})  # type: ignore[arg-type]
    assert _weights(result["final_route"], variant) == _weights(route_of(original, variant), variant)  # type: ignore[arg-type]
    assert result["v2_connections_after_reload"] == 0, "Envoy still opened connections to v2 after the reload"
    latency = result["rollback_latency_seconds"]
    assert latency is not None
    assert 0 < latency["api"] <= latency["envoy"] < 30, latency
    alerts = [a for a in result["alerts"] if a["labels"].get("alertname") == "CanaryRolledBack"]
    assert len(alerts) == 1, result["alerts"]
    labels, annotations = alerts[0]["labels"], alerts[0]["annotations"]
    assert labels["policy"] == "tcp-echo"
    assert labels["namespace"] == "istio-io-tcp-traffic-shifting"
    assert annotations["check_1_name"] == "connect-errors"
    assert annotations["check_1_verdict"] == "fail"
    # The failing window may begin before the fault did (seen: 0.38), so the canary's ratio is not necessarily
    # near 1; the check fails by the max or by the count test against stable, and either way it is worse.
    threshold = annotations["check_1_threshold"]
    assert threshold == "max 0.05" or threshold.startswith("binomial test at "), threshold
    assert float(annotations["check_1_value"]) > float(annotations.get("check_1_stable_value", "0"))
    assert int(annotations["check_1_sample_size"]) > 0


def test_a_sandbox_that_cannot_start_says_which_component_and_why(tmp_path: Any) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # no prometheus, no alertmanager on PATH
    done = subprocess.run(
        [sys.executable, "-m", "controller", "demo", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert done.returncode == 2, done.stderr
    assert "the sandbox could not start: prometheus: not installed" in done.stderr
    assert "apt-get install prometheus" in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_stops_everything_the_demo_started(signum: int) -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "controller", "demo", "--json", "--step-seconds", "30"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        started: set[int] = set()
        while time.monotonic() < deadline and len(started) < 3:  # Envoy, Prometheus, Alertmanager
            time.sleep(0.2)
            started = child_processes(demo.pid)
        assert len(started) >= 3, f"the demo did not start its servers: {started}"
        time.sleep(1)
        demo.send_signal(signum)
        _, stderr = demo.communicate(timeout=30)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.communicate()
    assert demo.returncode == 130, stderr[-2000:]
    assert "interrupted; everything it started is stopped" in stderr
    alive = {pid for pid in started if Path(f"/proc/{pid}").exists()}
    assert not alive, f"still running after {signal.Signals(signum).name}: {alive}"
