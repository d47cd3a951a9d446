"""Watches as kube-apiserver's watch cache serves them: history per resource type, and BOOKMARK events.

Sources (kubernetes/kubernetes, staging/src/k8s.io/apiserver/pkg/storage/cacher/):
``watch_cache.go`` ``getAllEventsSinceLocked`` keeps one history per resource, so a quiet resource's
history is never evicted by writes to another; ``cache_watcher.go`` ``nextBookmarkTime`` sends a bookmark
about every minute and 2 s before the watch's deadline when the client asked with ``allowWatchBookmarks``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from canary_sandbox.kubeapi import KubeApiEmulator
from tests.sandbox.conftest import CRD_FILES, ISTIO_DATA, document

VS_LIST = "/apis/networking.istio.io/v1/namespaces/quiet/virtualservices"


@pytest.fixture
def small_history() -> Iterator[KubeApiEmulator]:
    """An emulator of its own keeping only 20 events per resource type."""
    with KubeApiEmulator(crds=[ISTIO_DATA / CRD_FILES[0]], watch_history=20) as api:
        yield api


def _watch_events(
    url: str, query: str, *, until: float = 8.0, stop_after: int = 0
) -> list[tuple[float, dict[str, Any]]]:
    """``(seconds since the request, event)`` for each line of a watch stream."""
    started = time.monotonic()
    events: list[tuple[float, dict[str, Any]]] = []
    with (
        httpx.Client(base_url=url, timeout=until) as http,
        http.stream("GET", f"{VS_LIST}?watch=true&{query}") as answer,
    ):
        assert answer.status_code == 200
        for line in answer.iter_lines():
            if line.strip():
                events.append((time.monotonic() - started, json.loads(line)))
                if stop_after and len(events) >= stop_after:
                    break
    return events


def _lease(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": "busy"},
        "spec": {"holderIdentity": "pod-a", "leaseDurationSeconds": 15},
    }


def test_sixty_lease_writes_do_not_expire_a_quiet_virtual_service_watch(small_history: KubeApiEmulator) -> None:
    vs = document("tcp-echo-all-v1.yaml", "VirtualService")
    small_history.put({**vs, "metadata": {"name": "tcp-echo", "namespace": "quiet"}})
    with httpx.Client(base_url=small_history.url, timeout=5) as http:
        listed_rv = http.get(VS_LIST).json()["metadata"]["resourceVersion"]
    for index in range(60):
        small_history.put(_lease(f"lease-{index}"), namespace="busy")
    small_history.put({**vs, "metadata": {"name": "other", "namespace": "quiet"}})

    events = _watch_events(small_history.url, f"resourceVersion={listed_rv}&timeoutSeconds=3", stop_after=1)

    assert [(e["type"], e["object"]["metadata"]["name"]) for _, e in events] == [("ADDED", "other")]


def test_a_watch_older_than_its_own_resources_history_still_gets_410(small_history: KubeApiEmulator) -> None:
    vs = document("tcp-echo-all-v1.yaml", "VirtualService")
    first = small_history.put({**vs, "metadata": {"name": "vs-0", "namespace": "quiet"}})
    for index in range(1, 25):
        small_history.put({**vs, "metadata": {"name": f"vs-{index}", "namespace": "quiet"}})

    events = _watch_events(small_history.url, f"resourceVersion={first['metadata']['resourceVersion']}")

    assert events[0][1]["type"] == "ERROR"
    assert events[0][1]["object"]["code"] == 410


def test_a_watch_asking_for_bookmarks_gets_one_about_two_seconds_before_its_timeout(emulator: KubeApiEmulator) -> None:
    rv = emulator.store.resource_version

    events = _watch_events(emulator.url, f"resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=4")

    assert [e["type"] for _, e in events] == ["BOOKMARK"]
    at, bookmark = events[0]
    assert 1.5 <= at <= 3.0
    assert bookmark["object"]["kind"] == "VirtualService"
    assert bookmark["object"]["apiVersion"] == "networking.istio.io/v1"
    assert int(bookmark["object"]["metadata"]["resourceVersion"]) >= rv


def test_bookmarks_repeat_at_the_bookmark_interval(emulator: KubeApiEmulator) -> None:
    emulator.store.bookmark_seconds = 1.0
    try:
        events = _watch_events(emulator.url, "resourceVersion=0&allowWatchBookmarks=true&timeoutSeconds=6")
    finally:
        emulator.store.bookmark_seconds = 60.0

    assert [e["type"] for _, e in events].count("BOOKMARK") >= 3


def test_a_watch_that_did_not_ask_for_bookmarks_gets_none(emulator: KubeApiEmulator) -> None:
    rv = emulator.store.resource_version

    events = _watch_events(emulator.url, f"resourceVersion={rv}&timeoutSeconds=3")

    assert events == []
