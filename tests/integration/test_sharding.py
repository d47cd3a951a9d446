"""Issue 18: sharding keeps working with the watch caches (docs/settings.md, "Sharding").

Two daemons, as two releases of the chart would run them: each with leader election on its own Lease
(``CANARY_LEASE_NAME``) and a label selector on the CanaryPolicies it serves (``CANARY_POLICY_SELECTOR``).
Each drives only its shard's rollout, reading it from its own watch cache. Then an operator moves a running
rollout from shard b to shard a by changing its label, as one does to rebalance: shard a's selector watch
sees it ADDED and takes it over (its route untouched, the move reported as nothing wrong), shard b's sees
it DELETED and never writes it again. Who wrote what is told by the emulator's write history: every
request carries the daemon's identity in its User-Agent.

The real apiserver sends those ADDED and DELETED events to a label-selector watch: its cache watcher
(k8s.io/apiserver/pkg/storage/cacher/cache_watcher.go, ``convertToWatchEvent``) filters both the object and
its previous version::

    case curObjPasses && !oldObjPasses:
        return &watch.Event{Type: watch.Added, Object: getMutableObject(event.Object)}
    case curObjPasses && oldObjPasses:
        return &watch.Event{Type: watch.Modified, Object: getMutableObject(event.Object)}
    case !curObjPasses && oldObjPasses:
        // return a delete event with the previous object content, but with the event's resource version

and the emulator does the same (tests/sandbox/test_kubeapi_watch.py).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from canary_sandbox.kubeapi import KubeApiEmulator
from controller.adapters.kubernetes.api import KubeApi, load_api_client
from controller.adapters.kubernetes.status import CrdStatusStore, new_command
from controller.core.status import CommandKind
from controller.ports import PolicyRef
from controller.runtime.composition import build_daemon
from controller.runtime.daemon import Daemon
from controller.settings import Settings
from tests.integration import test_controller_modes as modes
from tests.integration.test_controller_modes import VS
from tests.sandbox.conftest import close_api_client, document
from tests.support.controller_process import StepFailingAnalysis

pytestmark = pytest.mark.timeout(120)

POLICIES = "canarypolicies.canaryctl.dev"
CONTROLLER_NS = "canary-system"
SHARDS = ("a", "b")

# The emulator with the CRDs, the namespaces and an Available canary Deployment.
cluster = modes.cluster


def _name(shard: str) -> str:
    return f"tcp-echo-{shard}"


def _status(emulator: KubeApiEmulator, name: str) -> dict[str, Any]:
    return dict((emulator.get(POLICIES, name, namespace="shop") or {}).get("status") or {})


def _wait(check: Callable[[], bool], seconds: float, what: str, explain: Callable[[], str] = str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError(f"{what}: not within {seconds} s\n{explain()}")


def _explain(emulator: KubeApiEmulator, daemons: dict[str, Daemon], *, since: float) -> str:
    """What each shard holds and what was written since ``since``, for a failure's message."""
    lines = [f"status of {_name('b')}: {_status(emulator, _name('b'))}"]
    for shard, daemon in daemons.items():
        loop = daemon.loop
        policies = sorted(loop._policies)
        lines.append(f"shard {shard}: leads {loop.is_leader()}, policies {policies}, queued {len(loop.queue)}")
    lines += [
        f"{record.time - since:+.3f} s {record.verb} {record.resource} {record.name} {record.subresource or ''} "
        f"{record.user_agent}"
        for record in emulator.history(since=since - 0.5)
        if "lease" not in record.resource
    ]
    return "\n".join(lines)


def _writers(emulator: KubeApiEmulator, *, since: float = 0.0, **where: str) -> set[str]:
    """The shards (by the identity in their User-Agent) that wrote what ``where`` selects since ``since``; a
    controller with any other identity is listed by its whole User-Agent, so an unexpected writer shows."""
    found = set()
    for record in emulator.history(source="http", since=since, **where):
        agent = record.user_agent or ""
        found |= {shard for shard in SHARDS if f"(shard-{shard})" in agent}
        if "canary-controller/" in agent and not any(f"(shard-{shard})" in agent for shard in SHARDS):
            found.add(agent)
    return found


def _route(emulator: KubeApiEmulator, name: str) -> list[dict[str, Any]]:
    vs = emulator.get(VS, name, namespace="shop")
    assert vs is not None
    return list(vs["spec"]["tcp"][0]["route"])


@pytest.fixture
def shards(cluster: tuple[KubeApiEmulator, Path]) -> Iterator[tuple[KubeApiEmulator, Path, dict[str, Daemon]]]:
    emulator, kubeconfig = cluster
    for shard in SHARDS:
        vs = copy.deepcopy(document("tcp-echo-all-v1.yaml", "VirtualService"))
        vs["metadata"]["name"] = _name(shard)
        emulator.put(vs, namespace="shop")
        policy = modes._policy("shop", name=_name(shard), vs=_name(shard))
        policy["metadata"]["labels"] = {"shard": shard}
        policy["spec"]["schedule"]["stepDuration"] = "1h"  # both stay at their first steps
        policy["spec"].pop("alerts", None)  # nothing to deliver past the test
        emulator.create(policy)
    daemons: dict[str, Daemon] = {}
    try:
        for shard in SHARDS:
            settings = Settings(
                kubeconfig=str(kubeconfig),
                namespace=CONTROLLER_NS,
                watch_crds=True,
                tick_seconds=60,
                resync_seconds=0,
                api_timeout_seconds=2,
                leader_elect=True,
                lease_name=f"canary-{shard}",
                identity=f"shard-{shard}",
                policy_selector=f"shard={shard}",
                lease_duration_seconds=3,
                renew_deadline_seconds=2,
                retry_period_seconds=0.5,
                http_host="127.0.0.1",
                http_port=0,
            )
            daemons[shard] = build_daemon(settings, analysis=StepFailingAnalysis(-1)).start()
        yield emulator, kubeconfig, daemons
    finally:
        for daemon in daemons.values():
            daemon.stop(15)


def test_each_shard_drives_only_its_own_rollout_and_a_relabelled_rollout_moves_to_its_new_shard(
    shards: tuple[KubeApiEmulator, Path, dict[str, Daemon]],
) -> None:
    emulator, kubeconfig, daemons = shards

    # Each shard holds its own Lease and drives its own rollout.
    def progressing(shard: str) -> Callable[[], bool]:
        return lambda: _status(emulator, _name(shard)).get("phase") == "Progressing"

    def route_written(shard: str) -> Callable[[], bool]:
        return lambda: bool(_writers(emulator, resource=VS, name=_name(shard)))

    for shard in SHARDS:
        _wait(progressing(shard), 20, f"shard {shard}'s step")
        lease = emulator.get("leases", f"canary-{shard}", namespace=CONTROLLER_NS)
        assert lease is not None
        assert lease["spec"]["holderIdentity"] == f"shard-{shard}"
    for shard in SHARDS:
        # The status is written before the route (the status-before-route protocol): wait for the route too.
        _wait(route_written(shard), 10, f"shard {shard}'s route")
        assert _writers(emulator, resource=VS, name=_name(shard)) == {shard}
        assert _writers(emulator, resource=POLICIES, name=_name(shard)) == {shard}
    assert _status(emulator, _name("b"))["writer"]["identity"] == "shard-b"
    route_before_move = _route(emulator, _name("b"))

    # The operator moves b's rollout to shard a, as `kubectl label --overwrite` does (a merge patch).
    moved_at = time.monotonic()
    api = KubeApi(load_api_client(kubeconfig=str(kubeconfig)), timeout_seconds=2)
    try:
        client.CustomObjectsApi(api.api_client).patch_namespaced_custom_object(
            "canaryctl.dev", "v1alpha1", "shop", "canarypolicies", _name("b"), {"metadata": {"labels": {"shard": "a"}}}
        )
        time.sleep(1.0)  # both shards' watches have seen the move (watch events come within milliseconds)
        assert _route(emulator, _name("b")) == route_before_move  # neither shard touched the route on the move

        # A pause of the moved rollout is acted on by shard a, its new owner.
        paused_at = time.monotonic()
        CrdStatusStore(api).add_command(
            policy=PolicyRef("shop", _name("b"), "crd"), command=new_command(CommandKind.PAUSE, by="test")
        )
    finally:
        close_api_client(api.api_client)
    _wait(
        lambda: _status(emulator, _name("b")).get("phase") == "Paused",
        10,
        "the pause by shard a (tick 60 s)",
        explain=lambda: _explain(emulator, daemons, since=moved_at),
    )
    status = _status(emulator, _name("b"))
    assert status["writer"]["identity"] == "shard-a"
    assert _route(emulator, _name("b")) == route_before_move
    assert _writers(emulator, resource=POLICIES, name=_name("b"), since=paused_at) == {"a"}
    # Shard b let go of it on the move: not one write of it since.
    assert "b" not in _writers(emulator, resource=POLICIES, name=_name("b"), since=moved_at + 0.5)
    assert "b" not in _writers(emulator, resource="events", since=moved_at + 0.5)
    # Shard a took over a rollout it found written by shard b: a baseline, not a second writer.
    conflicts = [
        e
        for e in emulator.list("events", namespace="shop")
        if e.get("reason") == "ConflictingWriters" and (e.get("involvedObject") or {}).get("name") == _name("b")
    ]
    assert conflicts == []
    # Shard a's own rollout carried on as it was.
    assert _status(emulator, _name("a")).get("phase") == "Progressing"
    assert _writers(emulator, resource=POLICIES, name=_name("a")) == {"a"}
