"""SIGKILL the real controller process at exact points of a rollout, restart it, and check the invariants.

For every case: the controller (``canaryctl run``'s code path, file mode, status in a ConfigMap) runs a
four-step rollout against the emulator and is killed at a chosen point (before or after a status write,
before or after a route write, the n-th time); a fresh process then finishes the rollout. From the
emulator's write history and the persisted status we check: no step repeated upward, none skipped, a
step's time never cut short and not stretched by more than the outage plus a tick, an interrupted
rollback completed, and the original route restored exactly.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from canary_sandbox.kubeapi import KubeApiEmulator
from tests.sandbox.conftest import document
from tests.support.paths import REPO

# All cases run in one module fixture, in batches of processes: the fixture's time counts against the first test.
pytestmark = pytest.mark.timeout(600)

STEPS = [0, 20, 50, 100]
STEP_SECONDS = 0.6
TICK = 0.1
CONTROLLER_NS = "canary-system"

CASES = [
    (point, n, fail_at)
    for fail_at in (-1, 2)
    for point in ("before_save", "after_save", "before_write", "after_write")
    # A passing rollout writes the route 4 times; one failing at step 3 writes 3 steps and the restore.
    for n in ((1, 2, 4) if fail_at == -1 else (2, 3, 4))
]


def _policy_file(directory: Path, namespace: str) -> None:
    directory.mkdir()
    (directory / "tcp-echo.yaml").write_text(
        "apiVersion: canaryctl.dev/v1alpha1\nkind: CanaryPolicy\n"
        f"metadata: {{name: tcp-echo, namespace: {namespace}}}\n"
        "spec:\n  target:\n    virtualService: {name: tcp-echo}\n    route: {port: 31400}\n"
        "    stable: {host: tcp-echo, subset: v1, port: 9000}\n    canary: {host: tcp-echo, subset: v2, port: 9000}\n"
        f"  schedule: {{steps: {STEPS}, stepDuration: {int(STEP_SECONDS * 1000)}ms}}\n"
    )


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.support.controller_process"],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:]


def _status(emulator: KubeApiEmulator, namespace: str) -> dict[str, Any] | None:
    cm = emulator.get("configmaps", f"canary-{namespace}-tcp-echo", namespace=CONTROLLER_NS)
    if cm is None or not (cm.get("data") or {}).get("status"):
        return None
    status: dict[str, Any] = json.loads(cm["data"]["status"])
    return status


def _canary_weight(route: list[Any]) -> int | None:
    for entry in route:
        if entry["destination"].get("subset") == "v2":
            return int(entry.get("weight", 0))
    return None


@dataclass
class CaseRun:
    """One crash case: its namespace, processes, logs and what was observed."""

    point: str
    n: int
    fail_at: int
    namespace: str
    env: dict[str, str]
    logs: Path
    original: dict[str, Any]
    first_code: int | None = None
    second_code: int | None = None
    killed_at: float = 0.0
    outage: float = 0.0
    status: dict[str, Any] | None = None
    stopped_in_time: bool = True


BATCH = 8


def _run_first(run: CaseRun) -> subprocess.Popen[bytes]:
    return _start({**run.env, "TEST_CRASH": f"{run.point}:{run.n}"}, run.logs / "first.log")


def _wait_all(processes: list[tuple[CaseRun, subprocess.Popen[bytes]]], timeout: float) -> None:
    """Wait for every first process to die at its crash point; note when each one did."""
    deadline = time.monotonic() + timeout
    alive = list(processes)
    while alive and time.monotonic() < deadline:
        for run, process in list(alive):
            code = process.poll()
            if code is not None:
                run.first_code = code
                run.killed_at = time.monotonic()
                alive.remove((run, process))
        time.sleep(0.02)
    for run, process in alive:  # never reached its crash point: reported by the test
        process.kill()
        process.wait()
        run.killed_at = time.monotonic()


def _finish_all(runs: list[CaseRun], emulator: KubeApiEmulator) -> None:
    processes = [(run, _start(run.env, run.logs / "second.log")) for run in runs]
    deadline = time.monotonic() + 60
    pending = {run.namespace for run in runs}
    while pending and time.monotonic() < deadline:
        for run, _ in processes:
            if run.namespace in pending:
                status = _status(emulator, run.namespace)
                if status is not None and status.get("phase") in {"Promoted", "RolledBack", "Failed"}:
                    run.status = status
                    run.outage = time.monotonic() - run.killed_at
                    pending.discard(run.namespace)
        time.sleep(0.05)
    for run, process in processes:
        if run.status is None:
            run.status = _status(emulator, run.namespace)
        process.send_signal(signal.SIGTERM)
    for run, process in processes:
        try:
            run.second_code = process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            run.stopped_in_time = False
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def crash_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[tuple[str, int, int], CaseRun]]:
    shared = REPO.parent / "shared" / "data" / "istio"
    with KubeApiEmulator(crds=[shared / "virtualservice-crd.yaml"]) as emulator:
        emulator.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": CONTROLLER_NS}})
        kubeconfig = tmp_path_factory.mktemp("kube") / "config"
        emulator.write_kubeconfig(kubeconfig, context_name="emulator")
        runs: dict[tuple[str, int, int], CaseRun] = {}
        for point, n, fail_at in CASES:
            namespace = f"crash-{point.replace('_', '-')}-{n}-{fail_at + 1}"
            emulator.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
            original = copy.deepcopy(document("tcp-echo-all-v1.yaml", "VirtualService"))
            emulator.put(copy.deepcopy(original), namespace=namespace)
            logs = tmp_path_factory.mktemp(namespace)
            _policy_file(logs / "policies", namespace)
            env = {
                **os.environ,
                "KUBECONFIG": str(kubeconfig),
                "CANARY_NAMESPACE": CONTROLLER_NS,
                "CANARY_POLICY_DIR": str(logs / "policies"),
                "CANARY_WATCH_CRDS": "false",
                "CANARY_TICK_SECONDS": str(TICK),
                "CANARY_HTTP_HOST": "127.0.0.1",
                "CANARY_HTTP_PORT": "0",  # many controllers at once: each its own free port
                "CANARY_LOG_LEVEL": "WARNING",
                "TEST_FAIL_AT_STEP": str(fail_at),
            }
            runs[(point, n, fail_at)] = CaseRun(point, n, fail_at, namespace, env, logs, original)
        ordered = list(runs.values())
        for start in range(0, len(ordered), BATCH):
            batch = ordered[start : start + BATCH]
            _wait_all([(run, _run_first(run)) for run in batch], timeout=30)
            _finish_all(batch, emulator)
        for run in ordered:
            run.records = [  # type: ignore[attr-defined]
                r
                for r in emulator.history(resource="virtualservices", namespace=run.namespace, name="tcp-echo")
                if r.verb == "PATCH" and r.changed
            ]
            run.final = emulator.get("virtualservices.networking.istio.io", "tcp-echo", namespace=run.namespace)  # type: ignore[attr-defined]
        yield runs


@pytest.mark.parametrize(("point", "n", "fail_at"), CASES, ids=[f"{p}-{n}-fail{f}" for p, n, f in CASES])
def test_a_killed_controller_resumes_without_breaking_the_rollout(
    crash_runs: dict[tuple[str, int, int], CaseRun], point: str, n: int, fail_at: int
) -> None:
    run = crash_runs[(point, n, fail_at)]
    assert run.first_code == -signal.SIGKILL, f"the crash point was never reached: {_tail(run.logs / 'first.log')}"
    assert run.stopped_in_time, "the controller did not exit within 10 s of SIGTERM"
    assert run.second_code == 0, _tail(run.logs / "second.log")
    status = run.status
    assert status is not None, _tail(run.logs / "second.log")
    expected = "RolledBack" if fail_at >= 0 else "Promoted"
    assert status["phase"] == expected, (
        status.get("lastError") or status.get("message"),
        _tail(run.logs / "second.log"),
    )

    # The route's history: every change the API server accepted, in order.
    weights = [_canary_weight(r.object["spec"]["tcp"][0]["route"]) for r in run.records]  # type: ignore[attr-defined]
    forward = weights[:-1] if fail_at >= 0 else weights
    assert forward == STEPS[: len(forward)], f"steps repeated or skipped: {weights}"
    if fail_at >= 0:
        assert len(forward) == fail_at + 1, weights
        assert run.final is not None  # type: ignore[attr-defined]
        assert run.final["spec"] == run.original["spec"], "the original route was not restored exactly"  # type: ignore[attr-defined]
    else:
        assert forward == STEPS

    # Step timing from the persisted history: never cut short, stretched by at most the outage and a tick.
    advanced = [
        datetime.fromisoformat(h["time"]) for h in status["history"] if h["reason"] in {"StepStarted", "StepAdvanced"}
    ]
    for earlier, later in itertools.pairwise(advanced):
        spent = (later - earlier).total_seconds()
        assert spent >= STEP_SECONDS, f"a step was cut short: {spent:.2f}s"
        assert spent <= STEP_SECONDS + run.outage + 4 * TICK + 1.0, f"a step lost its elapsed time: {spent:.2f}s"
