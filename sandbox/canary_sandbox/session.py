"""``canaryctl sandbox`` (``make sandbox``): the demo's world kept running, for you to drive the controller.

It starts what ``canaryctl demo`` starts except the controller: the Kubernetes API emulator holding the
tcp-echo scenario and the CanaryPolicy CRD, tcp-echo v1 and v2, a real Envoy as the ingress gateway, a real
Prometheus and Alertmanager, and the client. It creates the demo's CanaryPolicy as a resource, writes a
kubeconfig, prints how to reach everything, then prints one line per phase or step change of the policy
until Ctrl-C (or SIGTERM), which stops it all. You run ``canaryctl run`` against it yourself, and
``canaryctl status``, ``pause``, ``resume``, ``promote``, ``abort`` and ``retry``.
"""

from __future__ import annotations

import contextlib
import shlex
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from canary_sandbox.demo import (
    POLICY_NAME,
    DemoOptions,
    LineReporter,
    LiveState,
    Sandbox,
    clusters,
    demo_policy,
    policy_text,
)
from canary_sandbox.scenario import NAMESPACE
from controller.core.crd import canarypolicy_crd

CANARY_POLICIES = "canarypolicies.canaryctl.dev"
CONTEXT = "sandbox"


@dataclass(frozen=True)
class SandboxInfo:
    """Where the running sandbox's parts are.

    Attributes:
        workdir: the sandbox's files (kubeconfig, policy, Prometheus and Alertmanager data).
        kubeconfig: a kubeconfig for the API emulator (context ``sandbox``).
        api_url: the emulator's URL.
        prometheus_url: Prometheus, scraping Envoy.
        alertmanager_url: Alertmanager.
        gateway: ``host:port`` of Envoy's tcp-echo listener.
        policy_file: the CanaryPolicy created in the emulator, as a file.
        policy: that policy.
    """

    workdir: Path
    kubeconfig: Path
    api_url: str
    prometheus_url: str
    alertmanager_url: str
    gateway: str
    policy_file: Path
    policy: dict[str, Any]

    def instructions(self) -> str:
        """What to type in another shell, with this sandbox's values."""
        kubeconfig = shlex.quote(str(self.kubeconfig))
        ns = NAMESPACE
        return "\n".join(
            [
                "sandbox running; Ctrl-C stops everything.",
                f"  kubeconfig    {self.kubeconfig}",
                f"  api server    {self.api_url}   (the Kubernetes API emulator)",
                f"  prometheus    {self.prometheus_url}",
                f"  alertmanager  {self.alertmanager_url}",
                f'  gateway       {self.gateway}   (tcp-echo: v1 replies "one ...", v2 "two ...")',
                f"  policy        CanaryPolicy {ns}/{POLICY_NAME} (created; also in {self.policy_file})",
                "",
                "In another shell:",
                f"  export KUBECONFIG={kubeconfig}",
                f"  CANARY_PROMETHEUS_URL={self.prometheus_url} CANARY_HTTP_PORT=0 canaryctl run",
                "",
                "and in a third:",
                f"  export KUBECONFIG={kubeconfig}",
                f"  canaryctl status {POLICY_NAME} -n {ns} --watch",
                f"  canaryctl pause {POLICY_NAME} -n {ns}      # then resume, promote, abort; retry after the end",
                "",
            ]
        )


@contextlib.contextmanager
def open_sandbox(options: DemoOptions, *, workdir: Path | None = None) -> Iterator[tuple[Sandbox, SandboxInfo]]:
    """Start the sandbox (see the module docstring); stopped, everything, when the block exits.

    Raises:
        SandboxError: a component could not start (its ``component`` says which).
    """
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="canaryctl-sandbox-")))
        sandbox = stack.enter_context(Sandbox(options, workdir))
        assert sandbox.emulator is not None
        assert sandbox.prometheus is not None
        assert sandbox.alertmanager is not None
        assert sandbox.envoy is not None
        emulator = sandbox.emulator
        emulator.register_crd(canarypolicy_crd())
        kubeconfig = emulator.write_kubeconfig(workdir / "kubeconfig", context_name=CONTEXT, namespace=NAMESPACE)
        policy = demo_policy(options, prometheus_url=sandbox.prometheus.url, alertmanager_url=sandbox.alertmanager.url)
        policy_file = workdir / "tcp-echo.yaml"
        policy_file.write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")
        emulator.put(policy)
        host, port = sandbox.envoy.listener_address
        yield (
            sandbox,
            SandboxInfo(
                workdir=workdir,
                kubeconfig=kubeconfig,
                api_url=emulator.url,
                prometheus_url=sandbox.prometheus.url,
                alertmanager_url=sandbox.alertmanager.url,
                gateway=f"{host}:{port}",
                policy_file=policy_file,
                policy=policy,
            ),
        )


def policy_state(sandbox: Sandbox, began: float) -> LiveState:
    """The CanaryPolicy's status as the progress lines show it, with the client's counts at its step."""
    assert sandbox.emulator is not None
    assert sandbox.load is not None
    assert sandbox.sync is not None
    obj = sandbox.emulator.get(CANARY_POLICIES, POLICY_NAME, namespace=NAMESPACE)
    status: dict[str, Any] = (obj or {}).get("status") or {}
    state = LiveState(
        phase=str(status.get("phase") or ("no status yet: start canaryctl run" if obj else "policy deleted")),
        step=str(status.get("step") or ""),
        weight=status.get("weight"),
        verdict=str(status.get("lastVerdict") or ""),
        elapsed=time.monotonic() - began,
    )
    if sandbox.sync.history:
        change = sandbox.sync.history[-1]
        tally = sandbox.load.tally(change.confirmed_at or change.seen_at)
        state.share, state.connections, state.errors = tally.canary_share, tally.connections, tally.errors
        state.counted_weight = int(change.weights.get(clusters(sandbox.options.variant)[1], 0))
    return state


def run_sandbox(options: DemoOptions, *, out: TextIO, err: TextIO, stop: threading.Event | None = None) -> None:
    """Start the sandbox, print where everything is on ``out``, then progress lines on ``err`` until ``stop``
    is set or KeyboardInterrupt (Ctrl-C; the CLI turns SIGTERM into one too); everything is stopped on return.

    Raises:
        SandboxError: a component could not start.
    """
    stop = stop or threading.Event()
    with open_sandbox(options) as (sandbox, info):
        out.write(policy_text(info.policy, who="canaryctl sandbox created") + "\n" + info.instructions())
        out.flush()
        began = time.monotonic()
        lines = LineReporter(err)
        while not stop.is_set():
            lines.update(policy_state(sandbox, began))
            stop.wait(0.5)
