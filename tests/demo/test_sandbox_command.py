"""``canaryctl sandbox`` (what ``make sandbox`` runs): the world stays up and the real commands work against it.

One sandbox process serves the module: the controller (``canaryctl run``), ``status`` and ``pause`` run as
separate processes through the kubeconfig it printed, as a person would in other shells; then Ctrl-C.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.demo.support import child_processes
from tests.support.paths import REPO

pytestmark = pytest.mark.timeout(180)

NAMESPACE = "istio-io-tcp-traffic-shifting"


@dataclass
class Running:
    """The sandbox process and what it printed so far."""

    process: subprocess.Popen[str]
    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)

    def printed(self, label: str) -> str:
        """The value printed on the line starting with ``label`` (``kubeconfig``, ``prometheus`` ...)."""
        for line in self.out:
            match = re.match(rf"\s+{label}\s+(\S+)", line)
            if match:
                return match.group(1)
        raise AssertionError(f"the sandbox printed no {label}: {self.out}")


def _drain(stream: Any, into: list[str]) -> None:
    for line in stream:
        into.append(line.rstrip("\n"))


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Running]:
    process = subprocess.Popen(
        [sys.executable, "-m", "controller", "sandbox", "--step-seconds", "60"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    running = Running(process)
    readers = [
        threading.Thread(target=_drain, args=(process.stdout, running.out), daemon=True),
        threading.Thread(target=_drain, args=(process.stderr, running.err), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not any(line.startswith("and in a third") for line in running.out):
            assert process.poll() is None, f"the sandbox exited: {running.err[-20:]}"
            time.sleep(0.2)
        assert any(line.startswith("and in a third") for line in running.out), running.err[-20:]
        yield running
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        for reader in readers:
            reader.join(timeout=5)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def _canaryctl(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def _phase(env: dict[str, str]) -> tuple[str | None, str]:
    done = _canaryctl("status", "tcp-echo", "-n", NAMESPACE, "-o", "json", env=env)
    if done.returncode != 0:
        return None, done.stderr
    items = json.loads(done.stdout)["items"]
    return (items[0]["phase"] if items else None), done.stdout


def _wait_for_phase(env: dict[str, str], wanted: str, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    phase, seen = _phase(env)
    while phase != wanted and time.monotonic() < deadline:
        time.sleep(0.5)
        phase, seen = _phase(env)
    assert phase == wanted, seen
    return seen


def test_the_controller_status_and_pause_work_through_the_printed_kubeconfig(sandbox: Running) -> None:
    kubeconfig = sandbox.printed("kubeconfig")
    assert Path(kubeconfig).is_file()
    env = {**os.environ, "KUBECONFIG": kubeconfig}
    env.pop("CANARY_KUBECONFIG", None)
    status = _canaryctl("status", "tcp-echo", "-n", NAMESPACE, env=env)
    assert status.returncode == 0, status.stderr
    assert "tcp-echo" in status.stdout
    controller = subprocess.Popen(
        [sys.executable, "-m", "controller", "run"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={
            **env,
            "CANARY_PROMETHEUS_URL": sandbox.printed("prometheus"),
            "CANARY_HTTP_PORT": "0",
            "CANARY_TICK_SECONDS": "0.5",
        },
    )
    try:
        _wait_for_phase(env, "Progressing", 40)
        paused = _canaryctl("pause", "tcp-echo", "-n", NAMESPACE, "--by", "sandbox-test", env=env)
        assert paused.returncode == 0, paused.stderr
        assert "pause recorded for CanaryPolicy istio-io-tcp-traffic-shifting/tcp-echo" in paused.stdout
        _wait_for_phase(env, "Paused", 20)
    finally:
        controller.send_signal(signal.SIGTERM)
        _, controller_log = controller.communicate(timeout=30)
    assert controller.returncode == 0, controller_log[-2000:]
    # The sandbox's own progress lines saw it too.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any("] Paused" in line for line in sandbox.err):
        time.sleep(0.2)
    assert any("] Progressing  step 1/4" in line for line in sandbox.err), sandbox.err
    assert any("] Paused" in line for line in sandbox.err), sandbox.err


def test_ctrl_c_stops_the_sandbox_and_everything_it_started(sandbox: Running) -> None:
    started = child_processes(sandbox.process.pid)
    assert len(started) >= 3, f"the sandbox does not run its servers: {started}"  # Envoy, Prometheus, Alertmanager
    sandbox.process.send_signal(signal.SIGINT)
    assert sandbox.process.wait(timeout=30) == 0
    time.sleep(0.5)  # the reader threads catch the last lines
    assert any("stopped; everything it started is stopped" in line for line in sandbox.err), sandbox.err
    alive = {pid for pid in started if Path(f"/proc/{pid}").exists()}
    assert not alive, f"still running after Ctrl-C: {alive}"
