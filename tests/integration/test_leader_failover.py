"""Three controller processes with leader election against the emulator: SIGKILL one leader, SIGTERM the next.

One rollout (file mode, status in a ConfigMap) runs while replica a leads. Once the canary is at 20 % and
standby b watches the lease, a is killed with SIGKILL; b must take over within client-go's bound and carry
on. A third replica c then joins as standby, and b is stopped with SIGTERM at 50 %: it releases the
lease, so c takes over at once and finishes. From the emulator's write history (each write carries the replica's
identity in its User-Agent) we check that there were never two writers and that no step was repeated.
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from canary_sandbox.kubeapi import KubeApiEmulator
from canary_sandbox.kubeapi.store import WriteRecord
from tests.sandbox.conftest import document
from tests.support.paths import REPO

pytestmark = pytest.mark.timeout(180)

CONTROLLER_NS = "canary-system"
NAMESPACE = "failover"
LEASE = "canary-controller"
STEPS = [0, 20, 50, 100]
STEP_SECONDS = 3.0
LEASE_DURATION = 3.0
RENEW_DEADLINE = 2.0
RETRY_PERIOD = 0.5
TICK = 0.1


@dataclass
class Failover:
    """What the scenario observed."""

    killed_at: float = 0.0
    killed_weight: int | None = None
    terminated_at: float = 0.0
    leases: list[WriteRecord] = field(default_factory=list)
    writes: list[WriteRecord] = field(default_factory=list)
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)
    final_status: dict[str, Any] | None = None


def _holder(emulator: KubeApiEmulator) -> str | None:
    lease = emulator.get("leases", LEASE, namespace=CONTROLLER_NS)
    return None if lease is None else lease["spec"].get("holderIdentity")


def _weight(emulator: KubeApiEmulator) -> int | None:
    vs = emulator.get("virtualservices.networking.istio.io", "tcp-echo", namespace=NAMESPACE)
    assert vs is not None
    for entry in vs["spec"]["tcp"][0]["route"]:
        if entry["destination"].get("subset") == "v2":
            return int(entry.get("weight", 0))
    return None


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _identity(record: WriteRecord) -> str:
    agent = record.user_agent or ""
    return agent.rsplit("(", 1)[-1].rstrip(")") if "(" in agent else agent


@pytest.fixture(scope="module")
def failover(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Failover]:
    shared = REPO.parent / "shared" / "data" / "istio"
    work = tmp_path_factory.mktemp("failover")
    result = Failover()
    with KubeApiEmulator(crds=[shared / "virtualservice-crd.yaml"]) as emulator:
        for ns in (CONTROLLER_NS, NAMESPACE):
            emulator.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        emulator.put(copy.deepcopy(document("tcp-echo-all-v1.yaml", "VirtualService")), namespace=NAMESPACE)
        kubeconfig = work / "kubeconfig"
        emulator.write_kubeconfig(kubeconfig, context_name="emulator")
        policies = work / "policies"
        policies.mkdir()
        (policies / "tcp-echo.yaml").write_text(
            "apiVersion: canaryctl.dev/v1alpha1\nkind: CanaryPolicy\n"
            f"metadata: {{name: tcp-echo, namespace: {NAMESPACE}}}\n"
            "spec:\n  target:\n    virtualService: {name: tcp-echo}\n    route: {port: 31400}\n"
            "    stable: {host: tcp-echo, subset: v1, port: 9000}\n"
            "    canary: {host: tcp-echo, subset: v2, port: 9000}\n"
            f"  schedule: {{steps: {STEPS}, stepDuration: {int(STEP_SECONDS * 1000)}ms}}\n"
        )
        processes: dict[str, subprocess.Popen[bytes]] = {}

        def start(name: str) -> None:
            env = {
                **os.environ,
                "KUBECONFIG": str(kubeconfig),
                "CANARY_NAMESPACE": CONTROLLER_NS,
                "CANARY_POLICY_DIR": str(policies),
                "CANARY_WATCH_CRDS": "false",
                "CANARY_TICK_SECONDS": str(TICK),
                "CANARY_HTTP_HOST": "127.0.0.1",
                "CANARY_HTTP_PORT": "0",
                "CANARY_LOG_LEVEL": "INFO",
                "CANARY_LEADER_ELECT": "true",
                "CANARY_IDENTITY": name,
                "CANARY_LEASE_DURATION_SECONDS": str(LEASE_DURATION),
                "CANARY_RENEW_DEADLINE_SECONDS": str(RENEW_DEADLINE),
                "CANARY_RETRY_PERIOD_SECONDS": str(RETRY_PERIOD),
                "TEST_FAIL_AT_STEP": "-1",
            }
            result.logs[name] = work / f"{name}.log"
            with result.logs[name].open("wb") as sink:
                processes[name] = subprocess.Popen(
                    [sys.executable, "-m", "tests.support.controller_process"],
                    cwd=REPO,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=sink,
                )

        def standing_by(name: str) -> bool:
            return "standing by: the lease is held by" in result.logs[name].read_text(errors="replace")

        try:
            start("replica-a")
            _wait(lambda: _holder(emulator) == "replica-a", 30, "replica-a to lead")
            start("replica-b")
            # A candidate waits a lease duration from the first time it sees the lease: kill the leader only
            # once the standby is watching, so the test measures the takeover, not the standby's start-up.
            _wait(lambda: standing_by("replica-b"), 30, "replica-b to stand by")
            _wait(lambda: (_weight(emulator) or 0) >= 20, 30, "the canary at 20 %")
            result.killed_weight = _weight(emulator)
            processes["replica-a"].send_signal(signal.SIGKILL)
            result.killed_at = time.monotonic()
            result.exit_codes["replica-a"] = processes["replica-a"].wait(10)
            start("replica-c")
            _wait(lambda: standing_by("replica-c"), 30, "replica-c to stand by")
            _wait(lambda: _holder(emulator) == "replica-b", 30, "replica-b to take over")
            _wait(lambda: (_weight(emulator) or 0) >= 50, 30, "the canary at 50 %")
            assert _weight(emulator) != 100, "the rollout ended before replica-b could be stopped"
            processes["replica-b"].send_signal(signal.SIGTERM)
            result.terminated_at = time.monotonic()
            result.exit_codes["replica-b"] = processes["replica-b"].wait(15)

            def promoted() -> bool:
                cm = emulator.get("configmaps", f"canary-{NAMESPACE}-tcp-echo", namespace=CONTROLLER_NS)
                return cm is not None and '"phase":"Promoted"' in (cm.get("data") or {}).get("status", "").replace(
                    " ", ""
                )

            _wait(promoted, 30, "the rollout to be promoted")
            cm = emulator.get("configmaps", f"canary-{NAMESPACE}-tcp-echo", namespace=CONTROLLER_NS)
            assert cm is not None
            import json  # noqa: PLC0415

            result.final_status = json.loads(cm["data"]["status"])
        finally:
            for name, process in processes.items():
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    try:
                        result.exit_codes[name] = process.wait(15)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        result.exit_codes[name] = process.wait()
        history = emulator.history()
        result.leases = [r for r in history if r.resource.startswith("leases") and r.changed]
        result.writes = [
            r
            for r in history
            if r.source == "http" and r.changed and not r.resource.startswith("leases") and r.namespace is not None
        ]
        yield result


def _takeover(result: Failover, identity: str, after: float) -> float:
    for record in result.leases:
        if record.time > after and record.object["spec"].get("holderIdentity") == identity:
            return record.time - after
    raise AssertionError(f"{identity} never took the lease")


def test_a_standby_takes_over_after_the_leader_is_killed(failover: Failover) -> None:
    assert failover.exit_codes["replica-a"] == -signal.SIGKILL
    takeover = _takeover(failover, "replica-b", failover.killed_at)
    print(f"takeover after SIGKILL at {failover.killed_weight} %: {takeover:.2f} s (lease {LEASE_DURATION} s)")
    # client-go's rule: the standby waits a lease duration after it last saw the record change (it never
    # compares clocks); it sees the last renewal up to one retry period late, then acts when the lease expires.
    assert takeover <= LEASE_DURATION + RETRY_PERIOD + 0.3, f"takeover took {takeover:.2f} s"
    assert takeover >= LEASE_DURATION - RETRY_PERIOD, f"the standby did not wait for the lease: {takeover:.2f} s"


def test_a_leader_stopped_with_sigterm_hands_over_at_once(failover: Failover) -> None:
    assert failover.exit_codes["replica-b"] == 0, failover.logs["replica-b"].read_text()[-2000:]
    released = [
        r
        for r in failover.leases
        if r.time > failover.terminated_at
        and not r.object["spec"].get("holderIdentity")
        and _identity(r) == "replica-b"
    ]
    assert released, "replica-b did not release the lease on SIGTERM"
    takeover = _takeover(failover, "replica-c", failover.terminated_at)
    print(f"takeover after SIGTERM: {takeover:.2f} s")
    assert takeover < LEASE_DURATION, f"the released lease was not taken at once: {takeover:.2f} s"


def test_there_were_never_two_writers(failover: Failover) -> None:
    order = ["replica-a", "replica-b", "replica-c"]
    writers = [_identity(r) for r in failover.writes]
    assert set(writers) <= set(order), set(writers)
    ranks = [order.index(w) for w in writers]
    assert ranks == sorted(ranks), f"writes interleaved between replicas: {writers}"
    assert "replica-b" in writers
    assert "replica-c" in writers
    # Nobody wrote between the kill and b's takeover, and b wrote nothing before it: the standby never writes.
    takeover_b = failover.killed_at + _takeover(failover, "replica-b", failover.killed_at)
    for record in failover.writes:
        if _identity(record) == "replica-b":
            assert record.time >= takeover_b
        if _identity(record) == "replica-a":
            assert record.time <= failover.killed_at


def test_no_step_was_repeated_or_skipped(failover: Failover) -> None:
    weights = []
    for record in failover.writes:
        if record.resource.startswith("virtualservices"):
            route = record.object["spec"]["tcp"][0]["route"]
            weights.append(next(int(e.get("weight", 0)) for e in route if e["destination"].get("subset") == "v2"))
    assert weights == STEPS, weights
    assert failover.final_status is not None
    assert failover.final_status["phase"] == "Promoted"
