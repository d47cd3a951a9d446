"""A real kubectl (Debian's ``kubernetes-client`` 1.20, unpacked by ``make kubectl``) against the emulator.

Only the project-local copy is run, by its full path: never a kubectl on PATH. Without it (``make kubectl``
not run, or it could not fetch the package) every test here is skipped with the reason.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from canary_sandbox.kubeapi import KubeApiEmulator
from tests.sandbox.conftest import CRD_FILES, ISTIO_DATA

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = ROOT / ".cache" / "kubectl" / "usr" / "bin" / "kubectl"
CANARYPOLICY_CRD = ROOT / "helm" / "crds" / "canarypolicies.canaryctl.dev.yaml"
POLICY = ROOT / "policies" / "tcp-echo.yaml"
POLICY_NAMESPACE = "istio-io-tcp-traffic-shifting"


@dataclass
class Kubectl:
    """Runs the unpacked kubectl with the emulator's kubeconfig and a private discovery cache."""

    binary: Path
    kubeconfig: Path
    cache_dir: Path

    def args(self, *args: str) -> list[str]:
        """The full command line for ``kubectl ARGS``."""
        return [str(self.binary), f"--kubeconfig={self.kubeconfig}", f"--cache-dir={self.cache_dir}", *args]

    def __call__(self, *args: str, stdin: str | None = None, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        """Run ``kubectl ARGS`` and return the finished process (never raises on a non-zero exit)."""
        return subprocess.run(
            self.args(*args),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={"HOME": str(self.cache_dir)},
        )


@pytest.fixture(scope="session")
def kube_emulator() -> Iterator[KubeApiEmulator]:
    """One emulator for the whole kubectl suite: the CanaryPolicy CRD and Istio's CRDs."""
    with KubeApiEmulator(crds=[CANARYPOLICY_CRD, *(ISTIO_DATA / name for name in CRD_FILES)]) as api:
        yield api


@pytest.fixture(scope="session")
def kubectl(kube_emulator: KubeApiEmulator, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    """The unpacked kubectl pointed at the session's emulator; skips the suite when it is not there."""
    if not KUBECTL.is_file():
        pytest.skip(
            f"Debian's kubectl is not unpacked at {KUBECTL.relative_to(ROOT)}: run `make kubectl` "
            "(apt-get download kubernetes-client; apt-get update may need root)"
        )
    home = tmp_path_factory.mktemp("kubectl")
    config = kube_emulator.write_kubeconfig(home / "kubeconfig")
    return Kubectl(KUBECTL, config, home / "cache")
