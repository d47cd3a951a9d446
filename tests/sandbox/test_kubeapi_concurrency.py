"""Optimistic concurrency: stale writes conflict, and racing writers get exactly one winner."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from canary_sandbox.kubeapi import KubeApiEmulator
from tests.sandbox.conftest import ISTIO, close_api_client, document, make_api, status_of

CONFLICT_MESSAGE = (
    'Operation cannot be fulfilled on virtualservices.networking.istio.io "tcp-echo": the object has been '
    "modified; please apply your changes to the latest version and try again"
)


def create_tcp_echo(custom: Any, namespace: str) -> dict[str, Any]:
    body = copy.deepcopy(document("tcp-echo-20-v2.yaml", "VirtualService"))
    body["metadata"]["namespace"] = namespace
    created: dict[str, Any] = custom.create_namespaced_custom_object(*ISTIO, namespace, "virtualservices", body)
    return created


def with_weights(vs: dict[str, Any], stable: int, canary: int) -> dict[str, Any]:
    out = copy.deepcopy(vs)
    route = out["spec"]["tcp"][0]["route"]
    route[0]["weight"], route[1]["weight"] = stable, canary
    return out


def test_stale_replace_is_rejected_with_conflict(custom: Any, namespace: str) -> None:
    original = create_tcp_echo(custom, namespace)
    custom.replace_namespaced_custom_object(
        *ISTIO, namespace, "virtualservices", "tcp-echo", with_weights(original, 50, 50)
    )

    with pytest.raises(ApiException) as caught:
        custom.replace_namespaced_custom_object(
            *ISTIO, namespace, "virtualservices", "tcp-echo", with_weights(original, 0, 100)
        )

    assert caught.value.status == 409
    assert caught.value.reason == "Conflict"
    status = status_of(caught.value)
    assert (status["reason"], status["message"]) == ("Conflict", CONFLICT_MESSAGE)
    assert status["details"] == {"name": "tcp-echo", "group": "networking.istio.io", "kind": "virtualservices"}
    current = custom.get_namespaced_custom_object(*ISTIO, namespace, "virtualservices", "tcp-echo")
    assert [d["weight"] for d in current["spec"]["tcp"][0]["route"]] == [50, 50]


def test_a_resource_version_in_a_merge_patch_is_a_precondition(custom: Any, namespace: str) -> None:
    original = create_tcp_echo(custom, namespace)
    stale = original["metadata"]["resourceVersion"]
    current = custom.patch_namespaced_custom_object(
        *ISTIO,
        namespace,
        "virtualservices",
        "tcp-echo",
        {"metadata": {"labels": {"step": "1"}, "resourceVersion": stale}},
    )

    with pytest.raises(ApiException) as caught:
        custom.patch_namespaced_custom_object(
            *ISTIO,
            namespace,
            "virtualservices",
            "tcp-echo",
            {"metadata": {"labels": {"step": "2"}, "resourceVersion": stale}},
        )

    assert caught.value.status == 409
    assert status_of(caught.value)["message"] == CONFLICT_MESSAGE
    assert current["metadata"]["labels"] == {"step": "1"}


def race(workers: list[Callable[[], Any]]) -> list[int]:
    """Run the callables at the same instant; returns each one's HTTP status."""
    barrier = threading.Barrier(len(workers))
    outcomes: list[int] = [0] * len(workers)

    def run(index: int) -> None:
        barrier.wait()
        try:
            workers[index]()
            outcomes[index] = 200
        except ApiException as error:
            outcomes[index] = error.status

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_two_racing_replaces_with_the_same_resource_version_have_exactly_one_winner(
    emulator: KubeApiEmulator, namespace: str
) -> None:
    clients = [client.ApiClient(emulator.client_configuration()) for _ in range(2)]
    apis = [make_api(client.CustomObjectsApi, c) for c in clients]
    try:
        base = create_tcp_echo(apis[0], namespace)
        for round_number in range(10):
            current = apis[0].get_namespaced_custom_object(*ISTIO, namespace, "virtualservices", "tcp-echo")
            bodies = [with_weights(current, 100 - round_number, round_number), with_weights(current, round_number, 100)]
            outcomes = race(
                [
                    lambda api=api, body=body: api.replace_namespaced_custom_object(  # type: ignore[misc]
                        *ISTIO, namespace, "virtualservices", "tcp-echo", body
                    )
                    for api, body in zip(apis, bodies, strict=True)
                ]
            )
            assert sorted(outcomes) == [200, 409], f"round {round_number}: {outcomes}"
    finally:
        for api_client in clients:
            close_api_client(api_client)
    replaces = emulator.history(resource="virtualservices", namespace=namespace, verb="PUT")
    assert len(replaces) == 10
    assert int(replaces[-1].resource_version) > int(base["metadata"]["resourceVersion"])


def test_concurrent_patches_without_preconditions_all_apply(emulator: KubeApiEmulator, namespace: str) -> None:
    clients = [client.ApiClient(emulator.client_configuration()) for _ in range(4)]
    apis = [make_api(client.CustomObjectsApi, c) for c in clients]
    try:
        create_tcp_echo(apis[0], namespace)
        outcomes = race(
            [
                lambda api=api, i=i: api.patch_namespaced_custom_object(  # type: ignore[misc]
                    *ISTIO, namespace, "virtualservices", "tcp-echo", {"metadata": {"labels": {f"writer-{i}": "yes"}}}
                )
                for i, api in enumerate(apis)
            ]
        )
        final = apis[0].get_namespaced_custom_object(*ISTIO, namespace, "virtualservices", "tcp-echo")
    finally:
        for api_client in clients:
            close_api_client(api_client)

    assert outcomes == [200] * 4
    assert final["metadata"]["labels"] == {f"writer-{i}": "yes" for i in range(4)}
    versions = [
        r.resource_version for r in emulator.history(resource="virtualservices", namespace=namespace, verb="PATCH")
    ]
    assert len(set(versions)) == 4
