"""Builders of CanaryPolicy documents for the tests."""

from __future__ import annotations

from typing import Any


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
