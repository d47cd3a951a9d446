"""Shell completion (issue 19 §3): ``canaryctl completion bash|zsh|fish`` and policy names from the cluster.

The scripts are asked of the installed ``canaryctl``, and completions are asked the way each script asks them
(the ``_CANARYCTL_COMPLETE`` protocol), of a real process; bash, which is on every machine here, also runs its
script end to end. The policy names come from the API emulator.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from typer.testing import CliRunner

from canary_sandbox.kubeapi import KubeApiEmulator
from controller.adapters.kubernetes.api import KubeApi
from controller.adapters.kubernetes.status import ConfigMapStatusStore
from controller.cli import app
from controller.core.status import RolloutStatus
from controller.ports import PolicyRef
from tests.sandbox.conftest import close_api_client
from tests.support.paths import REPO

CONTROLLER_NAMESPACE = "completion-controller"
CANARYCTL = Path(sys.executable).parent / "canaryctl"
CANARYPOLICY_CRD = REPO / "helm" / "crds" / "canarypolicies.canaryctl.dev.yaml"
POLICY = REPO / "policies" / "tcp-echo.yaml"


@pytest.fixture(scope="module")
def emulator() -> Iterator[KubeApiEmulator]:
    with KubeApiEmulator(crds=[CANARYPOLICY_CRD]) as api:
        yield api


@pytest.fixture(scope="module")
def cluster(emulator: KubeApiEmulator, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A kubeconfig and two namespaces: ``tcp-echo`` and ``tcp-orders`` in the first, ``billing`` in the other."""
    shop, other = f"shop-{uuid.uuid4().hex[:6]}", f"other-{uuid.uuid4().hex[:6]}"
    for namespace, names in ((shop, ("tcp-echo", "tcp-orders")), (other, ("billing",))):
        emulator.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        for name in names:
            policy: dict[str, Any] = yaml.safe_load(POLICY.read_text(encoding="utf-8"))
            policy["metadata"] = {"name": name, "namespace": namespace}
            emulator.put(policy)
    # A file-mode policy: its status ConfigMap in the controller's namespace, written by the controller's store.
    emulator.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": CONTROLLER_NAMESPACE}})
    api_client = client.ApiClient(emulator.client_configuration())
    try:
        store = ConfigMapStatusStore(KubeApi(api_client), namespace=CONTROLLER_NAMESPACE)
        store.save(policy=PolicyRef(shop, "tcp-from-file", source="file"), status=RolloutStatus(), version=None)
    finally:
        close_api_client(api_client)
    config = emulator.write_kubeconfig(tmp_path_factory.mktemp("completion") / "kubeconfig")
    return config, shop, other


def _bash_complete(words: str, *, kubeconfig: Path | None) -> tuple[list[str], subprocess.CompletedProcess[str]]:
    """What canaryctl answers the bash script for the line ``words`` (the cursor after its last word)."""
    parts = words.split(" ")
    env = {"PATH": str(CANARYCTL.parent), "_CANARYCTL_COMPLETE": "complete_bash"}
    env |= {"COMP_WORDS": words, "COMP_CWORD": str(len(parts) - 1)}
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    result = subprocess.run([str(CANARYCTL)], capture_output=True, text=True, env=env, timeout=30, check=False)
    return result.stdout.split(), result


@pytest.mark.parametrize(
    ("shell", "expected"),
    [
        ("bash", "complete -o default -F _canaryctl_completion canaryctl"),
        ("zsh", "compdef _canaryctl_completion canaryctl"),
        ("fish", "complete --command canaryctl --no-files"),
    ],
)
def test_completion_prints_the_script_for_each_shell(shell: str, expected: str) -> None:
    result = CliRunner().invoke(app, ["completion", shell])

    assert result.exit_code == 0, result.output
    assert expected in result.output
    assert f"_CANARYCTL_COMPLETE=complete_{shell}" in result.output


def test_completion_refuses_a_shell_it_has_no_script_for() -> None:
    result = CliRunner().invoke(app, ["completion", "tcsh"])

    assert result.exit_code == 2
    words = " ".join(result.output.replace("│", " ").split())
    assert "Invalid value for 'SHELL': Value error, 'tcsh' is not one of 'bash', 'zsh', 'fish'." in words


def test_the_bash_script_completes_commands_in_bash(tmp_path: Path) -> None:
    script = tmp_path / "canaryctl.bash"
    script.write_text(
        subprocess.run([str(CANARYCTL), "completion", "bash"], capture_output=True, text=True, check=True).stdout
    )
    # bash calls a completion function with the command's name as $1.
    line = f"source {script}; COMP_WORDS=(canaryctl pa); COMP_CWORD=1; _canaryctl_completion canaryctl; "
    line += 'echo "${COMPREPLY[@]}"'

    result = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", line],
        capture_output=True,
        text=True,
        env={"PATH": f"{CANARYCTL.parent}:/usr/bin:/bin"},
        timeout=30,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["pause"]


def test_status_completes_policy_names_of_the_namespace_typed(cluster: tuple[Path, str, str]) -> None:
    config, shop, other = cluster

    in_shop, _ = _bash_complete(f"canaryctl status -n {shop} ", kubeconfig=config)
    prefixed, _ = _bash_complete(f"canaryctl pause --namespace {shop} tcp-o", kubeconfig=config)
    everywhere, _ = _bash_complete("canaryctl status -A ", kubeconfig=config)
    in_other, _ = _bash_complete(f"canaryctl abort -n {other} ", kubeconfig=config)

    assert in_shop == ["tcp-echo", "tcp-orders"]
    assert prefixed == ["tcp-orders"]
    assert {"tcp-echo", "tcp-orders", "billing"} <= set(everywhere)
    assert in_other == ["billing"]


def test_file_mode_policies_complete_from_their_status_configmaps(cluster: tuple[Path, str, str]) -> None:
    config, shop, _ = cluster

    names, _ = _bash_complete(
        f"canaryctl retry -n {shop} --controller-namespace {CONTROLLER_NAMESPACE} tcp-", kubeconfig=config
    )

    assert names == ["tcp-echo", "tcp-from-file", "tcp-orders"]


def test_zsh_and_fish_requests_get_the_same_names(cluster: tuple[Path, str, str]) -> None:
    config, shop, _ = cluster
    base = {"PATH": str(CANARYCTL.parent), "KUBECONFIG": str(config)}
    line = f"canaryctl resume -n {shop} tcp-"

    zsh = subprocess.run(
        [str(CANARYCTL)],
        env=base | {"_CANARYCTL_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": line},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    fish = subprocess.run(
        [str(CANARYCTL)],
        env=base
        | {
            "_CANARYCTL_COMPLETE": "complete_fish",
            "_TYPER_COMPLETE_ARGS": line,
            "_TYPER_COMPLETE_FISH_ACTION": "get-args",
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )

    assert '"tcp-echo":"The CanaryPolicy' not in zsh.stdout  # names carry no help text
    assert "tcp-echo" in zsh.stdout
    assert "tcp-orders" in zsh.stdout
    assert fish.stdout.split() == ["tcp-echo", "tcp-orders"]


def test_an_unreachable_cluster_completes_nothing_within_the_timeout(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on once this closes
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = tmp_path / "kubeconfig"
    config.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "gone", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "gone", "user": {}}],
                "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "gone"}}],
                "current-context": "gone",
            }
        )
    )

    names, result = _bash_complete("canaryctl status ", kubeconfig=config)
    missing, without = _bash_complete("canaryctl status ", kubeconfig=tmp_path / "no-such-kubeconfig")

    assert (names, result.returncode, result.stderr) == ([], 0, "")
    assert (missing, without.returncode, without.stderr) == ([], 0, "")
