"""``kubectl canary ...`` through Debian's real kubectl 1.20: the ``kubectl-canary`` entry point on PATH (issue 19 §3).

kubectl finds plugins on PATH only, so these tests put the virtualenv's bin directory (where ``pip install``
puts ``kubectl-canary``) on kubectl's PATH and nothing else. kubectl 1.20 refuses flags placed before a
plugin's name, so the kubeconfig reaches the plugin by ``KUBECONFIG`` or by ``--kubeconfig`` after ``canary``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from canary_sandbox.kubeapi import KubeApiEmulator
from controller.cli import app
from controller.kubectl_plugin import PluginUsageError, canaryctl_args, split_global_flags
from tests.kubectl.conftest import POLICY, Kubectl

VENV_BIN = Path(sys.executable).parent
PLUGIN = VENV_BIN / "kubectl-canary"


def _policy(namespace: str, name: str, phase: str, *, weight: int, step: str) -> dict[str, Any]:
    policy: dict[str, Any] = yaml.safe_load(POLICY.read_text(encoding="utf-8"))
    policy["metadata"] = {"name": name, "namespace": namespace}
    policy["status"] = {"phase": phase, "weight": weight, "step": step, "message": f"{phase.lower()} now"}
    return policy


@pytest.fixture
def plugin_kubectl(kubectl: Kubectl, tmp_path: Path) -> Kubectl:
    """kubectl with the virtualenv's bin directory as its whole PATH; fails when the entry point is missing."""
    assert PLUGIN.is_file(), (
        f"{PLUGIN.name} is not installed beside {Path(sys.executable).name}: reinstall the package "
        "(pip install -e . --no-deps) so that pyproject's [project.scripts] entry exists"
    )
    return Kubectl(kubectl.binary, kubectl.kubeconfig, tmp_path / "home")


def _run(
    kubectl: Kubectl, *args: str, kubeconfig: Path | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    env = {"HOME": str(kubectl.cache_dir), "PATH": str(VENV_BIN)}
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    return subprocess.run(
        [str(kubectl.binary), *args], capture_output=True, text=True, timeout=timeout, check=False, env=env
    )


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"rc {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result.stdout


@pytest.fixture
def two_namespaces(kube_emulator: KubeApiEmulator) -> tuple[str, str]:
    names = (f"kp-{uuid.uuid4().hex[:8]}", f"kp-{uuid.uuid4().hex[:8]}")
    for name in names:
        kube_emulator.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    kube_emulator.put(_policy(names[0], "tcp-echo", "Progressing", weight=20, step="2/4"))
    kube_emulator.put(_policy(names[1], "orders", "Paused", weight=50, step="3/4"))
    return names


def test_plugin_list_finds_kubectl_canary_on_path(plugin_kubectl: Kubectl) -> None:
    result = _run(plugin_kubectl, "plugin", "list")

    out = _ok(result)
    assert out.splitlines()[0] == "The following compatible plugins are available:"
    assert str(PLUGIN) in out.splitlines()
    assert "warning" not in result.stderr


def test_status_without_namespace_uses_the_kubeconfig_context_namespace(
    plugin_kubectl: Kubectl, kube_emulator: KubeApiEmulator, two_namespaces: tuple[str, str], tmp_path: Path
) -> None:
    first, _ = two_namespaces
    config = kube_emulator.write_kubeconfig(tmp_path / "config", namespace=first)

    out = _ok(_run(plugin_kubectl, "canary", "status", kubeconfig=config))

    header, *rows = out.splitlines()
    assert header.split()[:6] == ["NAMESPACE", "NAME", "SOURCE", "PHASE", "STEP", "WEIGHT"]
    assert [row.split()[:6] for row in rows] == [[first, "tcp-echo", "crd", "Progressing", "2/4", "20"]]


def test_flags_before_the_command_and_after_it_as_kubectl_takes_them(
    plugin_kubectl: Kubectl, kube_emulator: KubeApiEmulator, two_namespaces: tuple[str, str]
) -> None:
    first, second = two_namespaces
    config = str(plugin_kubectl.kubeconfig)  # its context's namespace is "default", where there is no policy

    by_short = _ok(_run(plugin_kubectl, "canary", "-n", second, "status", "-o", "json", f"--kubeconfig={config}"))
    every = _ok(_run(plugin_kubectl, "canary", "status", "-A", "--kubeconfig", config, "--context=kubeapi-emulator"))

    items = json.loads(by_short)["items"]
    assert [(item["namespace"], item["name"], item["phase"]) for item in items] == [(second, "orders", "Paused")]
    listed = {tuple(row.split()[:4]) for row in every.splitlines()[1:]}
    assert {(first, "tcp-echo", "crd", "Progressing"), (second, "orders", "crd", "Paused")} <= listed


def test_pause_through_kubectl_records_the_command_on_the_policy(
    plugin_kubectl: Kubectl, kube_emulator: KubeApiEmulator, two_namespaces: tuple[str, str]
) -> None:
    first, _ = two_namespaces

    out = _ok(
        _run(
            plugin_kubectl,
            "canary",
            "pause",
            "tcp-echo",
            f"--namespace={first}",
            "--by",
            "alice",
            kubeconfig=plugin_kubectl.kubeconfig,
        )
    )

    assert out.startswith(f"pause recorded for CanaryPolicy {first}/tcp-echo")
    stored = kube_emulator.get("canarypolicies", "tcp-echo", namespace=first)
    assert stored is not None
    commands = json.loads(stored["metadata"]["annotations"]["canaryctl.dev/commands"])
    assert [(c["kind"], c["by"]) for c in commands] == [("pause", "alice")]


def test_a_global_flag_a_command_has_no_use_for_is_a_usage_error(plugin_kubectl: Kubectl) -> None:
    result = _run(plugin_kubectl, "canary", "lint", "-n", "shop", str(POLICY))

    assert result.returncode == 2
    assert result.stderr.strip() == "error: kubectl canary lint: --namespace does not apply to this command"


def test_kubectl_flag_forms_are_taken_out_wherever_they_stand() -> None:
    found = split_global_flags(["-nshop", "status", "x", "--context=prod", "-A", "-o", "json", "--", "-n"])

    assert found.values == {"namespace": "shop", "context": "prod", "all_namespaces": True}
    assert found.rest == ["status", "x", "-o", "json", "--", "-n"]
    with pytest.raises(PluginUsageError, match="flag needs an argument: --kubeconfig"):
        split_global_flags(["status", "--kubeconfig"])
    with pytest.raises(PluginUsageError, match="--namespace given twice"):
        split_global_flags(["-n", "a", "status", "--namespace=b"])


def _kubeconfig(path: Path, **namespaces: str | None) -> Path:
    """A kubeconfig with one context per keyword (its namespace, or none); the first is current."""
    contexts = [
        {"name": name, "context": {"cluster": "c", "user": "u", **({"namespace": ns} if ns else {})}}
        for name, ns in namespaces.items()
    ]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {}}],
        "contexts": contexts,
        "current-context": contexts[0]["name"],
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_the_command_line_becomes_canaryctl_with_the_context_namespace(tmp_path: Path) -> None:
    group = typer.main.get_command(app)
    config = str(_kubeconfig(tmp_path / "config", team="team", bare=None))

    assert canaryctl_args(["-n", "shop", "status", "-o", "json"], group) == [
        "status",
        "--namespace",
        "shop",
        "-o",
        "json",
    ]
    assert canaryctl_args(["pause", "x", f"--kubeconfig={config}"], group) == [
        "pause",
        "--kubeconfig",
        config,
        "--namespace",
        "team",
        "x",
    ]
    # --context picks another context: one without a namespace leaves canaryctl's default.
    assert canaryctl_args(["status", "--kubeconfig", config, "--context", "bare"], group) == [
        "status",
        "--kubeconfig",
        config,
        "--context",
        "bare",
    ]
    # The dashboard shows every namespace unless told: the context's namespace is not forced on it.
    assert canaryctl_args(["dashboard", "--kubeconfig", config], group) == ["dashboard", "--kubeconfig", config]
    with pytest.raises(PluginUsageError, match="kubectl canary pause: --all-namespaces does not apply"):
        canaryctl_args(["-A", "pause", "x"], group)
