"""The world the browser tests look at: the sandbox, the controller and ``canaryctl dashboard``.

``DashboardWorld`` starts what ``make sandbox`` starts (the API emulator holding the tcp-echo scenario and
the demo's CanaryPolicy as a resource, tcp-echo v1 and v2, a real Envoy as the gateway, real Prometheus and
Alertmanager, the load client), then the controller as ``canaryctl run`` in a subprocess (CRD mode, the
user's kubeconfig) and the dashboard as ``canaryctl dashboard --port 0 -A`` in another, reading the URL it
prints. Everything is stopped, in reverse, when the ``with`` block ends.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from canary_sandbox.demo import POLICY_NAME, DemoOptions, Sandbox, clusters
from canary_sandbox.scenario import NAMESPACE
from canary_sandbox.session import CANARY_POLICIES, SandboxInfo, open_sandbox
from tests.support.paths import REPO

ROLLOUT = f"{NAMESPACE}/{POLICY_NAME}"
URL_PATTERN = re.compile(r"http://127\.0\.0\.1:\d+/?[^\s]*")


class Process:
    """A child process whose output lines are collected by a reader thread (ended when the output closes)."""

    def __init__(self, name: str, command: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            command,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name=f"browser-world-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self, last: int = 40) -> str:
        """The last lines it printed (for failure messages)."""
        return "\n".join(self.lines[-last:])

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s; the reader thread ends with the output."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()


def wait_for(what: str, check: Callable[[], Any], seconds: float, *, explain: Callable[[], str] = str) -> Any:
    """Poll ``check`` until it returns something truthy; AssertionError naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {seconds:g} s\n{explain()}")
        time.sleep(0.2)


class DashboardWorld:
    """The sandbox, the controller and the local dashboard (see the module docstring).

    Args:
        options: the sandbox's options (step length, connection rate).
        workdir: where the sandbox keeps its files.
    """

    def __init__(self, options: DemoOptions, workdir: Path) -> None:
        self.options = options
        self.workdir = workdir
        self._stack = contextlib.ExitStack()
        self.sandbox: Sandbox
        self.info: SandboxInfo
        self.controller: Process
        self.dashboard: Process
        self.url = ""

    def __enter__(self) -> DashboardWorld:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    @property
    def env(self) -> dict[str, str]:
        """The environment of a user whose kubeconfig points at the sandbox."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("CANARY_")}
        env["KUBECONFIG"] = str(self.info.kubeconfig)
        return env

    def _start(self) -> None:
        self.sandbox, self.info = self._stack.enter_context(open_sandbox(self.options, workdir=self.workdir))
        self._start_every_load_thread()
        self.controller = Process(
            "controller",
            [sys.executable, "-m", "controller", "run"],
            {
                **self.env,
                "CANARY_PROMETHEUS_URL": self.info.prometheus_url,
                "CANARY_HTTP_HOST": "127.0.0.1",
                "CANARY_HTTP_PORT": "0",
                "CANARY_TICK_SECONDS": "0.25",
            },
        )
        self._stack.callback(self.controller.stop)
        self.dashboard = Process(
            "dashboard",
            [
                sys.executable,
                "-m",
                "controller",
                "dashboard",
                "--port",
                "0",
                "-A",
                "--prometheus",
                self.info.prometheus_url,
            ],
            self.env,
        )
        self._stack.callback(self.dashboard.stop)
        found = wait_for(
            "canaryctl dashboard prints its URL",
            lambda: (
                self.dashboard.process.poll() is None
                and next((m for line in self.dashboard.lines if (m := URL_PATTERN.search(line))), None)
            ),
            30,
            explain=self.dashboard.output,
        )
        url = found.group(0)
        self.url = url.split("#", 1)[0].rstrip("/") + "/"

    def _start_every_load_thread(self) -> None:
        """Start all of the load client's worker threads now. Its pool starts them lazily, whenever a
        connection finds none idle, so over a module's tests it would keep adding threads that the suite's
        leak guard counts against whichever test was running: one task per worker, each waiting for all."""
        load = self.sandbox.load
        assert load is not None
        pool = load._pool
        workers = pool._max_workers
        barrier = threading.Barrier(workers + 1)
        for _ in range(workers):
            pool.submit(barrier.wait, 20)
        barrier.wait(20)

    def status(self) -> dict[str, Any]:
        """The CanaryPolicy's status as stored in the API (the ground truth the page must show)."""
        emulator = self.sandbox.emulator
        assert emulator is not None
        obj = emulator.get(CANARY_POLICIES, POLICY_NAME, namespace=NAMESPACE) or {}
        status: dict[str, Any] = obj.get("status") or {}
        return status

    def wait_for_phase(self, phase: str, seconds: float) -> dict[str, Any]:
        """Wait until the stored status has ``phase``; the status."""
        result: dict[str, Any] = wait_for(
            f"CanaryPolicy {ROLLOUT} reaches {phase}",
            lambda: (status := self.status()).get("phase") == phase and status,
            seconds,
            explain=lambda: f"status: {self.status()}\ncontroller:\n{self.controller.output()}",
        )
        return result

    def refuse_canary_at(self, weight: int, seconds: float) -> None:
        """Once Envoy runs a route giving the canary ``weight`` % or more, v2 refuses connections (the demo's
        ``--fault-at``)."""
        sync, v2 = self.sandbox.sync, self.sandbox.v2
        assert sync is not None
        assert v2 is not None
        canary = clusters(self.options.variant)[1]
        wait_for(
            f"Envoy runs a route with the canary at {weight} %",
            lambda: any(
                int(change.weights.get(canary, 0)) >= weight and change.confirmed_at is not None
                for change in list(sync.history)
            ),
            seconds,
            explain=lambda: f"status: {self.status()}\ncontroller:\n{self.controller.output()}",
        )
        v2.refuse()
