"""Fixtures for adapter and service tests against the Kubernetes API emulator."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from canary_sandbox.kubeapi import KubeApiEmulator
from controller.adapters.kubernetes.api import KubeApi
from tests.sandbox.conftest import api_client, close_api_client, emulator, faults, namespace

__all__ = ["api_client", "emulator", "faults", "kube", "namespace", "stored"]


def stored(emulator: KubeApiEmulator, resource: str, name: str, namespace: str) -> dict[str, Any]:
    """An object the test expects to exist in the emulator."""
    obj = emulator.get(resource, name, namespace=namespace)
    assert obj is not None, f"{resource} {namespace}/{name} is missing"
    return obj


@pytest.fixture
def kube(emulator: object, api_client: client.ApiClient) -> KubeApi:
    """The project's KubeApi wrapper on the session's emulator, with a short timeout."""
    del emulator
    return KubeApi(api_client, timeout_seconds=2.0)


@pytest.fixture
def fresh_client(emulator: object) -> Iterator[client.ApiClient]:
    """A client of its own (for tests that break connections)."""
    assert isinstance(emulator, KubeApiEmulator)
    api = client.ApiClient(emulator.client_configuration())
    yield api
    close_api_client(api)
