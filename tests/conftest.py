"""Shared test helpers: where the real-world Istio material lives, and small builders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_ISTIO = REPO.parent / "shared" / "data" / "istio"


def pytest_configure(config: pytest.Config) -> None:
    """The real-world test inputs live in ../shared beside the repository (as in CI)."""
    if not SHARED_ISTIO.is_dir():
        raise pytest.UsageError("shared test data missing: expected shared/data/istio beside the repository checkout")


def policy_doc(
    *,
    target: dict[str, Any] | None = None,
    steps: list[Any] | None = None,
    step_duration: Any = "2m",
    name: str = "tcp-echo",
    namespace: str | None = None,
) -> dict[str, Any]:
    """A valid CanaryPolicy document (the seed scenario) with the given parts replaced."""
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "canaryctl.dev/v1alpha1",
        "kind": "CanaryPolicy",
        "metadata": metadata,
        "spec": {
            "target": target
            if target is not None
            else {
                "virtualService": {"name": "tcp-echo"},
                "route": {"protocol": "tcp", "port": 31400},
                "stable": {"host": "tcp-echo", "subset": "v1", "port": 9000},
                "canary": {"host": "tcp-echo", "subset": "v2", "port": 9000},
            },
            "schedule": {
                "steps": steps if steps is not None else [0, 20, 50, 100],
                "stepDuration": step_duration,
            },
        },
    }


@pytest.fixture(scope="session")
def shared_istio() -> Path:
    """The folder of real Istio and Gateway API files."""
    if not SHARED_ISTIO.is_dir():
        pytest.fail(f"shared test data missing: expected {SHARED_ISTIO.relative_to(REPO.parent)} beside the repo")
    return SHARED_ISTIO
