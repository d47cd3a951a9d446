"""The real daemon process with hostile files in its policy directory (issue 13, items 2 and 3).

Before: a 500-byte alias bomb froze the tick thread (no pass for any policy, ``/healthz`` 503, SIGTERM
ignored). Now the daemon runs the good policy, reports each bad file (a log line, an Event, the
``canary_policy_errors`` metric), and exits within its documented 10 s of SIGTERM, even while a large
file is still being read.
"""

from __future__ import annotations

import copy
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml

from canary_sandbox.kubeapi import KubeApiEmulator
from tests.sandbox.conftest import document
from tests.support.paths import REPO, SHARED_ISTIO
from tests.support.policies import policy_doc
from tests.test_hostile_yaml import alias_bomb

pytestmark = pytest.mark.timeout(120)

CONTROLLER_NS = "canary-system"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _until(check: Callable[[], bool], *, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {seconds} s: {what}; {_metrics_seen[-1:]}")
        time.sleep(0.1)


_metrics_seen: list[str] = []


def _metrics(port: int) -> str:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError as exc:
        text = repr(exc)
    _metrics_seen.append(text[-3000:])
    return text


def _file_errors(port: int) -> float:
    prefix = 'canary_policy_errors{source="file"} '
    values = [float(line[len(prefix) :]) for line in _metrics(port).splitlines() if line.startswith(prefix)]
    return values[0] if values else -1.0


def test_the_daemon_runs_the_good_policy_reports_the_bad_files_and_stops_on_sigterm(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    good = policy_doc(name="tcp-echo", namespace="shop")
    good["spec"]["schedule"]["stepDuration"] = "1h"
    (policies / "good.yaml").write_text(yaml.safe_dump(good, sort_keys=False))
    (policies / "bomb.yaml").write_text(alias_bomb(9))
    (policies / "loop.yaml").write_text("a: &a [*a]\n")
    os.mkfifo(policies / "pipe.yaml")
    # Under every limit but slow to read (hundreds of thousands of nodes): SIGTERM may come while it is read.
    (policies / "zz-large.yaml").write_text("a: [" + ", ".join(["1"] * 100_000) + "]\n")
    port = _free_port()
    with KubeApiEmulator(crds=[SHARED_ISTIO / "virtualservice-crd.yaml"]) as emulator:
        for namespace in ("shop", CONTROLLER_NS):
            emulator.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        emulator.put(copy.deepcopy(document("tcp-echo-all-v1.yaml", "VirtualService")), namespace="shop")
        kubeconfig = tmp_path / "kubeconfig"
        emulator.write_kubeconfig(kubeconfig, context_name="emulator")
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "CANARY_NAMESPACE": CONTROLLER_NS,
            "CANARY_POLICY_DIR": str(policies),
            "CANARY_WATCH_CRDS": "false",
            "CANARY_TICK_SECONDS": "0.2",
            "CANARY_HTTP_HOST": "127.0.0.1",
            "CANARY_HTTP_PORT": str(port),
            "CANARY_LOG_LEVEL": "INFO",
        }
        log = tmp_path / "controller.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "tests.support.controller_process"],
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=sink,
            )
        try:
            _until(
                lambda: emulator.get("configmaps", "canary-shop-tcp-echo", namespace=CONTROLLER_NS) is not None,
                what="a pass of the good policy stored its status",
            )
            _until(
                lambda: _file_errors(port) >= 4,
                what="canary_policy_errors counts the problems of bomb.yaml, loop.yaml, pipe.yaml and zz-large.yaml",
            )
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
            events = emulator.list("events", namespace=CONTROLLER_NS)
            messages = [e["message"] for e in events if e["involvedObject"]["kind"] == "Pod"]
            for name in ("bomb.yaml", "loop.yaml", "pipe.yaml"):
                assert any(message.startswith(f"{policies / name}:") for message in messages), (name, messages)

            # A large file is being read again when SIGTERM comes: the process still ends in time.
            (policies / "zz-large.yaml").write_text("b: [" + ", ".join(["2"] * 100_000) + "]\n")
            time.sleep(1.0)
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    output = log.read_text(errors="replace")
    assert code == 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert sum(f"{policies / 'bomb.yaml'}:1" in line for line in output.splitlines()) == 1, output[-3000:]
