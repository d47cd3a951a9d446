"""Two `canaryctl run` processes with election off serve the same CanaryPolicy (issue 12, item 4).

Both processes start, then the policy is created. The second writer must be noticed: the one that yields
(replica-b, whose identity sorts later) logs an error, records a Warning Event ``ConflictingWriters`` on
the policy and exports ``canary_conflicting_writers`` 1, then writes neither status nor route while
replica-a drives the rollout. Once replica-a has driven a step it is stopped; replica-b writes again once
replica-a has been silent for a lease duration, and finishes the rollout. Who wrote what comes from the emulator's
write history (each write carries the writer's identity in its User-Agent).
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from canary_sandbox.kubeapi import KubeApiEmulator
from canary_sandbox.kubeapi.store import WriteRecord
from canary_sandbox.processes import free_port
from tests.sandbox.conftest import document
from tests.support.paths import REPO, SHARED_ISTIO

pytestmark = pytest.mark.timeout(120)

CRD = REPO / "helm" / "crds" / "canarypolicies.canaryctl.dev.yaml"
NAMESPACE = "two-writers"
STEPS = [0, 10, 20, 50, 100]
STEP_SECONDS = 2.0
LEASE_DURATION = 2.0
TICK = 0.1
METRIC = f'canary_conflicting_writers{{namespace="{NAMESPACE}",policy="tcp-echo"}}'


@dataclass
class Scenario:
    """What the two processes did."""

    stopped_at: float = 0.0
    metric_while_both_ran: float | None = None
    writes: list[WriteRecord] = field(default_factory=list)
    events: list[WriteRecord] = field(default_factory=list)
    logs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    final_phase: str | None = None
    final_weight: int | None = None


def _identity(record: WriteRecord) -> str:
    agent = record.user_agent or ""
    return agent.rsplit("(", 1)[-1].rstrip(")") if "(" in agent else agent


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _weight(emulator: KubeApiEmulator) -> int:
    vs = emulator.get("virtualservices.networking.istio.io", "tcp-echo", namespace=NAMESPACE)
    assert vs is not None
    route = vs["spec"]["tcp"][0]["route"]
    return next(int(e.get("weight", 0)) for e in route if e["destination"].get("subset") == "v2")


def _phase(emulator: KubeApiEmulator) -> str | None:
    policy = emulator.get("canarypolicies.canaryctl.dev", "tcp-echo", namespace=NAMESPACE)
    return None if policy is None else (policy.get("status") or {}).get("phase")


def _metric(port: int) -> float | None:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith(METRIC):
            return float(line.rsplit(" ", 1)[1])
    return None


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _policy() -> dict[str, Any]:
    return {
        "apiVersion": "canaryctl.dev/v1alpha1",
        "kind": "CanaryPolicy",
        "metadata": {"name": "tcp-echo", "namespace": NAMESPACE},
        "spec": {
            "target": {
                "virtualService": {"name": "tcp-echo"},
                "route": {"port": 31400},
                "stable": {"host": "tcp-echo", "subset": "v1", "port": 9000},
                "canary": {"host": "tcp-echo", "subset": "v2", "port": 9000},
            },
            "schedule": {"steps": STEPS, "stepDuration": f"{int(STEP_SECONDS * 1000)}ms"},
        },
    }


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    work = tmp_path_factory.mktemp("two-writers")
    result = Scenario()
    with KubeApiEmulator(crds=[CRD, SHARED_ISTIO / "virtualservice-crd.yaml"]) as emulator:
        for ns in ("canary-system", NAMESPACE):
            emulator.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        emulator.put(copy.deepcopy(document("tcp-echo-all-v1.yaml", "VirtualService")), namespace=NAMESPACE)
        kubeconfig = work / "kubeconfig"
        emulator.write_kubeconfig(kubeconfig, context_name="emulator")
        processes: dict[str, subprocess.Popen[bytes]] = {}
        ports: dict[str, int] = {}
        log_files: dict[str, Path] = {}

        def start(name: str) -> None:
            ports[name] = free_port()
            env = {
                **os.environ,
                "KUBECONFIG": str(kubeconfig),
                "CANARY_NAMESPACE": "canary-system",
                "CANARY_WATCH_CRDS": "true",
                "CANARY_WATCH_NAMESPACES": NAMESPACE,
                "CANARY_TICK_SECONDS": str(TICK),
                "CANARY_HTTP_HOST": "127.0.0.1",
                "CANARY_HTTP_PORT": str(ports[name]),
                "CANARY_LOG_LEVEL": "INFO",
                "CANARY_LEADER_ELECT": "false",
                "CANARY_IDENTITY": name,
                "CANARY_LEASE_DURATION_SECONDS": str(LEASE_DURATION),
                "CANARY_RENEW_DEADLINE_SECONDS": "1.5",
                "CANARY_RETRY_PERIOD_SECONDS": "0.5",
                "TEST_FAIL_AT_STEP": "-1",
            }
            log_files[name] = work / f"{name}.log"
            with log_files[name].open("wb") as sink:
                processes[name] = subprocess.Popen(
                    [sys.executable, "-m", "tests.support.controller_process"],
                    cwd=REPO,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=sink,
                )

        def stop(name: str) -> None:
            process = processes[name]
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

        def b_yielded() -> bool:
            return any(_is_conflict_event(r) and _identity(r) == "replica-b" for r in emulator.history())

        try:
            start("replica-a")
            start("replica-b")
            # Created once both serve, so that both drive it from its first step (start-up takes seconds).
            _wait(lambda: all(_healthy(port) for port in ports.values()), 30, "both controllers to serve")
            emulator.create(_policy())
            _wait(b_yielded, 30, "replica-b to notice replica-a and record the Warning Event")
            _wait(lambda: _metric(ports["replica-b"]) == 1.0, 10, "replica-b to export the conflict")
            result.metric_while_both_ran = _metric(ports["replica-b"])

            def a_stepped() -> bool:
                detected = min(r.time for r in emulator.history() if _is_conflict_event(r))
                return any(
                    r.resource.startswith("virtualservices") and _identity(r) == "replica-a" and r.time > detected
                    for r in emulator.history()
                )

            _wait(a_stepped, 30, "replica-a to drive a step")
            assert _weight(emulator) != 100, "the rollout ended before replica-a could be stopped"
            stop("replica-a")
            result.stopped_at = time.monotonic()
            _wait(lambda: _phase(emulator) == "Promoted", 30, "replica-b to finish the rollout")
            result.final_phase = _phase(emulator)
            result.final_weight = _weight(emulator)
        except AssertionError as exc:
            tails = {name: path.read_text(errors="replace")[-3000:] for name, path in log_files.items()}
            raise AssertionError(f"{exc}; logs: {tails}") from None
        finally:
            for name in list(processes):
                stop(name)
            for name, path in log_files.items():
                result.logs[name] = [
                    json.loads(line) for line in path.read_text(errors="replace").splitlines() if line.startswith("{")
                ]
        history = emulator.history()
        result.events = [r for r in history if _is_conflict_event(r)]
        result.writes = [
            r
            for r in history
            if r.source == "http" and r.changed and r.resource.split(".")[0] in ("virtualservices", "canarypolicies")
        ]
        yield result


def _is_conflict_event(record: WriteRecord) -> bool:
    return record.resource == "events" and record.object.get("reason") == "ConflictingWriters"


def _detected_at(scenario: Scenario) -> float:
    return min(r.time for r in scenario.events if _identity(r) == "replica-b")


def test_the_writer_that_yields_logs_an_error_naming_the_other_and_the_policy(scenario: Scenario) -> None:
    errors = [e for e in scenario.logs["replica-b"] if e["level"] == "error"]
    assert any(
        "replica-a" in e["message"] and f"{NAMESPACE}/tcp-echo" in e["message"] and "stops writing" in e["message"]
        for e in errors
    ), errors


def test_a_warning_event_on_the_policy_says_who_else_writes_it(scenario: Scenario) -> None:
    mine = [r.object for r in scenario.events if _identity(r) == "replica-b"]
    assert len(mine) == 1, "one Event per conflict, not one per pass"
    event = mine[0]
    assert event["type"] == "Warning"
    assert event["involvedObject"]["kind"] == "CanaryPolicy"
    assert event["involvedObject"]["name"] == "tcp-echo"
    assert "replica-a" in event["message"]


def test_the_conflict_is_exported_as_a_metric(scenario: Scenario) -> None:
    assert scenario.metric_while_both_ran == 1.0


def _without_writer(record: WriteRecord) -> dict[str, Any]:
    return {k: v for k, v in (record.object.get("status") or {}).items() if k != "writer"}


def test_after_detection_only_one_identity_writes_until_it_stops(scenario: Scenario) -> None:
    detected = _detected_at(scenario)
    between = [r for r in scenario.writes if detected < r.time < scenario.stopped_at]
    routes = [r for r in between if r.resource.startswith("virtualservices")]
    assert routes, "replica-a drove no step while replica-b yielded"
    assert {_identity(r) for r in routes} == {"replica-a"}, [_identity(r) for r in routes]
    # replica-b's one status write as it starts yielding repeats the status it read, with its stamp only
    # (so that replica-a learns of it): nothing of the rollout changes.
    statuses = [r for r in scenario.writes if r.resource.startswith("canarypolicies")]
    from_b = [r for r in statuses if detected < r.time < scenario.stopped_at and _identity(r) == "replica-b"]
    assert len(from_b) <= 1, [r.time for r in from_b]
    for record in from_b:
        before = statuses[statuses.index(record) - 1]
        assert _without_writer(record) == _without_writer(before)
        assert record.object["status"]["writer"]["identity"] == "replica-b"
    assert {_identity(r) for r in between if r not in from_b} == {"replica-a"}


def test_the_writer_that_yielded_resumes_after_the_other_is_silent_for_a_lease_duration(scenario: Scenario) -> None:
    last_a = max(r.time for r in scenario.writes if _identity(r) == "replica-a")
    # (Before replica-a stopped, replica-b wrote nothing but its stamp: the test above.)
    resumed = min(r.time for r in scenario.writes if _identity(r) == "replica-b" and r.time > scenario.stopped_at)
    print(f"replica-b wrote again {resumed - last_a:.2f} s after replica-a's last write (lease {LEASE_DURATION} s)")
    # replica-b saw replica-a's last write no earlier than it happened, and waits a lease duration from then.
    assert resumed >= last_a + LEASE_DURATION - 0.05
    assert resumed <= last_a + LEASE_DURATION + 2.0, "replica-b did not take the policy back promptly"
    assert any("writing it again" in e["message"] for e in scenario.logs["replica-b"])
    assert scenario.final_phase == "Promoted"
    assert scenario.final_weight == 100


def test_the_writer_that_kept_the_policy_reports_the_conflict_and_says_it_keeps_writing(scenario: Scenario) -> None:
    messages = [e["message"] for e in scenario.logs["replica-a"] if e["level"] == "error"]
    assert messages, "replica-a never reported the other writer"
    assert all("keeps writing" in m and "replica-b" in m for m in messages), messages
    events = [r.object for r in scenario.events if _identity(r) == "replica-a"]
    assert len(events) == 1
    assert events[0]["type"] == "Warning"
