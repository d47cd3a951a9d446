"""Fixtures for the Kubernetes API emulator tests.

One emulator serves the whole session, with the real Istio and Gateway API CRDs registered; each test
works in a namespace of its own. Tests that need a differently configured emulator, or that stop one,
start their own.
"""

from __future__ import annotations

import json
import queue
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from kubernetes import client, watch

from canary_sandbox.kubeapi import FaultInjector, KubeApiEmulator

ISTIO_DATA = (Path(__file__).resolve().parents[2] / "../shared/data/istio").resolve()
CRD_FILES = (
    "virtualservice-crd.yaml",
    "destinationrule-crd.yaml",
    "gateway.networking.k8s.io_tcproutes.yaml",
)
ISTIO = ("networking.istio.io", "v1")


def documents(file_name: str, kind: str | None = None) -> list[dict[str, Any]]:
    """The YAML documents of a file in the shared Istio data folder, optionally of one kind only."""
    text = (ISTIO_DATA / file_name).read_text(encoding="utf-8")
    docs = [doc for doc in yaml.safe_load_all(text) if isinstance(doc, dict)]
    return [doc for doc in docs if kind is None or doc.get("kind") == kind]


def document(file_name: str, kind: str) -> dict[str, Any]:
    """The first document of that kind in a shared data file."""
    return documents(file_name, kind)[0]


def close_api_client(api_client: client.ApiClient) -> None:
    """Close a client and its pooled sockets (ApiClient.close alone leaves them to the garbage collector)."""
    closable: Any = api_client
    closable.close()
    closable.rest_client.pool_manager.clear()


@pytest.fixture(scope="session")
def emulator() -> Iterator[KubeApiEmulator]:
    """The session's emulator, serving the Istio VirtualService/DestinationRule and Gateway API TCPRoute CRDs."""
    with KubeApiEmulator(crds=[ISTIO_DATA / name for name in CRD_FILES]) as api:
        yield api


@pytest.fixture(scope="session")
def api_client(emulator: KubeApiEmulator) -> Iterator[client.ApiClient]:
    """An official-client ``ApiClient`` pointed at the session's emulator."""
    api = client.ApiClient(emulator.client_configuration())
    yield api
    close_api_client(api)


@pytest.fixture
def namespace(emulator: KubeApiEmulator) -> str:
    """A fresh namespace for one test."""
    name = f"test-{uuid.uuid4().hex[:10]}"
    emulator.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


# The API fixtures are typed ``Any`` on purpose: the generated client annotates every field Optional and
# every custom object as ``object``, and tests pass plain dicts as bodies (which the client accepts). Typing
# them would put a cast or an assert on most lines without checking anything about the emulator.


@pytest.fixture
def core(api_client: client.ApiClient) -> Any:
    """CoreV1Api on the session's emulator."""
    return client.CoreV1Api(api_client)


@pytest.fixture
def apps(api_client: client.ApiClient) -> Any:
    """AppsV1Api on the session's emulator."""
    return client.AppsV1Api(api_client)


@pytest.fixture
def custom(api_client: client.ApiClient) -> Any:
    """CustomObjectsApi on the session's emulator."""
    return client.CustomObjectsApi(api_client)


def make_api(kind: Callable[[client.ApiClient], Any], api_client: client.ApiClient) -> Any:
    """An API object of the official client (``make_api(client.CoordinationV1Api, api_client)``), as ``Any``."""
    return kind(api_client)


def new_watch() -> Any:
    """A ``kubernetes.watch.Watch`` (untyped in the client, hence ``Any``)."""
    return cast(Any, watch.Watch)()


def status_of(error: client.ApiException) -> dict[str, Any]:
    """The ``Status`` body of a failed request."""
    body: dict[str, Any] = json.loads(error.body or "{}")
    return body


@pytest.fixture
def faults(emulator: KubeApiEmulator) -> Iterator[FaultInjector]:
    """The session emulator's fault injector, cleared after the test."""
    yield emulator.faults
    emulator.faults.clear()


class BackgroundWatch:
    """``kubernetes.watch.Watch().stream(...)`` in a thread, on a client of its own.

    Args:
        emulator: the emulator to watch.
        make_call: given an ``ApiClient``, returns the list function to stream.
        args: positional arguments of the list function.
        kwargs: keyword arguments of the list function (``resource_version``, ``timeout_seconds``...).
    """

    def __init__(
        self,
        emulator: KubeApiEmulator,
        make_call: Callable[[client.ApiClient], Callable[..., Any]],
        *args: Any,
        **kwargs: Any,
    ) -> None:
        self._client = client.ApiClient(emulator.client_configuration())
        self._watch = new_watch()
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.error: BaseException | None = None
        self.finished = threading.Event()
        call = make_call(self._client)
        self._thread = threading.Thread(target=self._run, args=(call, args, kwargs), daemon=True)
        self._thread.start()

    def _run(self, call: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        try:
            for event in self._watch.stream(call, *args, **kwargs):
                self._events.put(event)
        except BaseException as exc:  # handed to the test to assert on
            self.error = exc
        finally:
            self.finished.set()

    def take(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The next ``count`` events; fails the test if they do not arrive in time."""
        events = []
        for _ in range(count):
            try:
                events.append(self._events.get(timeout=timeout))
            except queue.Empty:
                raise AssertionError(f"expected {count} watch events, got {len(events)}: {events}") from None
        return events

    def pending(self) -> int:
        """Events received and not yet taken."""
        return self._events.qsize()

    def close(self) -> None:
        """Stop the watch, join its thread and close its client."""
        self._watch.stop()
        self._thread.join(timeout=5)
        close_api_client(self._client)


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """``(type, name)`` of each event."""
    return [(e["type"], e["raw_object"]["metadata"]["name"]) for e in events]
