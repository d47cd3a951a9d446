"""A status store the controller cannot write is an error in /readyz and in the log, once, not silence."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from canary_sandbox.kubeapi import KubeApiEmulator
from controller.runtime.composition import build_loop
from controller.runtime.loop import ReconcileLoop
from controller.settings import Settings
from tests.integration.test_controller_modes import CRD, _policy
from tests.sandbox.conftest import document
from tests.support.controller_process import StepFailingAnalysis
from tests.support.paths import SHARED_ISTIO


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[KubeApiEmulator, Path]]:
    """A cluster with the policy's namespace and route, but no controller namespace."""
    with KubeApiEmulator(crds=[CRD, SHARED_ISTIO / "virtualservice-crd.yaml"]) as emulator:
        emulator.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
        emulator.put(copy.deepcopy(document("tcp-echo-all-v1.yaml", "VirtualService")), namespace="shop")
        kubeconfig = tmp_path / "main"
        emulator.write_kubeconfig(kubeconfig, context_name="main")
        yield emulator, kubeconfig


def _file_mode(kubeconfig: Path, tmp_path: Path) -> ReconcileLoop:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "p.yaml").write_text(yaml.safe_dump(_policy("shop")))
    settings = Settings(
        kubeconfig=str(kubeconfig), policy_dir=policies, watch_crds=False, tick_seconds=0.05, namespace="canary-gone"
    )
    return build_loop(settings, analysis=StepFailingAnalysis(-1))


def _passes(controller: ReconcileLoop, count: int) -> None:
    for _ in range(count):
        controller.tick()
        time.sleep(0.1)


def test_a_missing_controller_namespace_fails_readiness_and_is_logged_once_until_it_exists(
    cluster: tuple[KubeApiEmulator, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    emulator, kubeconfig = cluster
    caplog.set_level(logging.INFO, logger="controller")
    controller = _file_mode(kubeconfig, tmp_path)
    try:
        assert controller.readiness["status store"]() is None  # nothing tried yet
        _passes(controller, 6)
        problem = controller.readiness["status store"]()
        assert problem is not None
        assert problem.startswith("file-mode (namespace canary-gone) status store cannot be written: ")
        assert "canary-gone" in problem
        logged = [r for r in caplog.records if "status store cannot be written" in r.getMessage()]
        assert len(logged) == 1
        assert logged[0].levelno == logging.ERROR
        emulator.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "canary-gone"}})
        _passes(controller, 4)
        assert controller.readiness["status store"]() is None
        assert any("status store can be written again" in r.getMessage() for r in caplog.records)
    finally:
        controller.shutdown(timeout=5)
