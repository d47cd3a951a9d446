"""The daemon's policy sources: a directory of files, CanaryPolicy resources (list/watch), and their merge.

The resource source runs against the Kubernetes API emulator over real HTTP with the official client, with
faults injected into its lists and watches; the directory source against files in ``tmp_path``, laid out
as a mounted ConfigMap where that matters.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from canary_sandbox.kubeapi import FaultInjector, KubeApiEmulator
from controller.adapters.kubernetes.api import KubeApi
from controller.adapters.kubernetes.status import CrdStatusStore
from controller.adapters.policy_sources import CrdPolicySource, DirectoryPolicySource, merge_snapshots
from controller.core.problems import validate_policy
from controller.core.status import RolloutStatus
from controller.ports import PolicyRef, PolicySnapshot, SourcedPolicy, SourceProblem
from tests.sandbox.conftest import close_api_client
from tests.support.paths import REPO
from tests.support.policies import policy_doc

CRD_FILE = REPO / "helm" / "crds" / "canarypolicies.canaryctl.dev.yaml"
RESOURCE = "canarypolicies"

# Used only when the chart's CRD is missing or rejects a valid policy.


# ---------------------------------------------------------------------------------------------- helpers


def eventually(check: Callable[[], bool], *, what: str, timeout: float = 5.0) -> None:
    """Poll ``check`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting until {what}")
        time.sleep(0.02)


def names(snapshot: PolicySnapshot) -> set[str]:
    """``namespace/name`` of each policy served."""
    return {f"{p.ref.namespace}/{p.ref.name}" for p in snapshot.policies}


def served(snapshot: PolicySnapshot, namespace: str, name: str) -> SourcedPolicy:
    """The policy ``namespace/name`` of a snapshot; fails the test when it is not served."""
    found = [p for p in snapshot.policies if (p.ref.namespace, p.ref.name) == (namespace, name)]
    assert len(found) == 1, f"{namespace}/{name} served {len(found)} times: {snapshot}"
    return found[0]


def policy_yaml(name: str, *, namespace: str = "shop", steps: list[int] | None = None) -> str:
    """A policy file's text (the seed scenario), ``metadata.name`` on line 4."""
    return yaml.safe_dump(policy_doc(name=name, namespace=namespace, steps=steps), sort_keys=False)


def line_of(text: str, needle: str, start: int = 1) -> int:
    """1-based number of the first line at or after ``start`` that contains ``needle``."""
    for number, line in enumerate(text.splitlines(), 1):
        if number >= start and needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {text}")


def resource(namespace: str, name: str, **kwargs: Any) -> dict[str, Any]:
    """A CanaryPolicy resource (the seed scenario) in ``namespace``."""
    return policy_doc(name=name, namespace=namespace, **kwargs)


@pytest.fixture(scope="module")
def canarypolicy_crd(emulator: KubeApiEmulator) -> None:
    """The chart's CanaryPolicy CRD on the session's emulator."""
    register_crd(emulator)


def register_crd(emulator: KubeApiEmulator) -> None:
    """Register the chart's CanaryPolicy CRD."""
    emulator.load_yaml(CRD_FILE)


@pytest.fixture
def crd_sources(emulator: KubeApiEmulator, canarypolicy_crd: None) -> Iterator[Callable[..., CrdPolicySource]]:
    """Makes ``CrdPolicySource``s on the session's emulator, each on a client of its own; closes them all."""
    made: list[tuple[CrdPolicySource, client.ApiClient]] = []

    def make(**kwargs: Any) -> CrdPolicySource:
        api_client = client.ApiClient(emulator.client_configuration())
        source = CrdPolicySource(KubeApi(api_client, timeout_seconds=2.0), **kwargs)
        made.append((source, api_client))
        return source

    yield make
    for source, api_client in made:
        source.close()
        close_api_client(api_client)


def watching(emulator: KubeApiEmulator, source: CrdPolicySource, namespace: str) -> None:
    """Return once ``source``'s watch is open: a resource created now has reached it through the watch."""
    assert source.wait_synced(5)
    marker = f"marker-{uuid.uuid4().hex[:8]}"
    emulator.create(resource(namespace, marker))
    eventually(lambda: f"{namespace}/{marker}" in names(source.snapshot()), what="the watch delivers events")
    emulator.delete(RESOURCE, marker, namespace=namespace)
    eventually(lambda: f"{namespace}/{marker}" not in names(source.snapshot()), what="the watch delivers events")


def new_namespace(emulator: KubeApiEmulator) -> str:
    """Another fresh namespace."""
    name = f"test-{uuid.uuid4().hex[:10]}"
    emulator.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


# ---------------------------------------------------------------------------------------------- files

OpenDirectory = Callable[..., DirectoryPolicySource]


@pytest.fixture
def directory_sources() -> Iterator[OpenDirectory]:
    """Opens ``DirectoryPolicySource``s; each is closed (its reading thread stopped) after the test."""
    opened: list[DirectoryPolicySource] = []

    def open_source(path: Path, **options: Any) -> DirectoryPolicySource:
        source = DirectoryPolicySource(path, **options)
        opened.append(source)
        return source

    yield open_source
    for source in opened:
        source.close()


class TestDirectoryPolicySource:
    def test_serves_each_policy_with_its_file_and_line(self, tmp_path: Path, directory_sources: OpenDirectory) -> None:
        (tmp_path / "a.yaml").write_text(policy_yaml("a"), encoding="utf-8")
        two = policy_yaml("b") + "---\n" + policy_yaml("c", namespace="bar")
        (tmp_path / "two.yml").write_text(two, encoding="utf-8")

        snapshot = directory_sources(tmp_path).snapshot()

        assert snapshot.problems == ()
        assert [p.ref for p in snapshot.policies] == [
            PolicyRef("shop", "a", source="file", location=f"{tmp_path}/a.yaml:1"),
            PolicyRef("shop", "b", source="file", location=f"{tmp_path}/two.yml:1"),
            PolicyRef("bar", "c", source="file", location=f"{tmp_path}/two.yml:{line_of(two, 'apiVersion', 2)}"),
        ]
        assert served(snapshot, "shop", "a").policy.spec.schedule.steps == [0, 20, 50, 100]

    def test_a_bad_file_is_skipped_and_reported_with_file_and_line_while_the_good_ones_are_served(
        self, tmp_path: Path, directory_sources: OpenDirectory
    ) -> None:
        (tmp_path / "good.yaml").write_text(policy_yaml("good"), encoding="utf-8")
        bad = policy_yaml("bad", steps=[0, 50, 20, 100])
        (tmp_path / "bad.yaml").write_text(bad, encoding="utf-8")
        (tmp_path / "broken.yaml").write_text("apiVersion: canaryctl.dev/v1alpha1\nkind: [\n", encoding="utf-8")

        snapshot = directory_sources(tmp_path).snapshot()

        assert names(snapshot) == {"shop/good"}
        steps_line = line_of(bad, "- 20")
        by_location = {p.location: p for p in snapshot.problems}
        assert by_location[f"{tmp_path}/bad.yaml:{steps_line}"] == SourceProblem(
            source="file",
            location=f"{tmp_path}/bad.yaml:{steps_line}",
            message="spec.schedule.steps[2]: must be greater than the previous step (got 20 after 50)",
            namespace="shop",
            name="bad",
        )
        broken = [p for p in snapshot.problems if p.location.startswith(f"{tmp_path}/broken.yaml:")]
        assert len(broken) == 1
        assert broken[0].message.startswith("yaml: syntax error")

    def test_a_file_with_one_bad_document_is_skipped_as_a_whole(
        self, tmp_path: Path, directory_sources: OpenDirectory
    ) -> None:
        text = policy_yaml("fine") + "---\n" + policy_yaml("wrong", steps=[])
        (tmp_path / "mixed.yaml").write_text(text, encoding="utf-8")

        snapshot = directory_sources(tmp_path).snapshot()

        assert snapshot.policies == ()
        assert [(p.location, p.message, p.name) for p in snapshot.problems] == [
            (
                f"{tmp_path}/mixed.yaml:{line_of(text, 'steps', line_of(text, 'apiVersion', 2))}",
                "spec.schedule.steps: must not be empty",
                "wrong",
            )
        ]

    def test_edits_additions_and_deletions_of_files_are_picked_up(
        self, tmp_path: Path, directory_sources: OpenDirectory
    ) -> None:
        source = directory_sources(tmp_path, reload_interval=0)
        (tmp_path / "a.yaml").write_text(policy_yaml("a"), encoding="utf-8")
        assert names(source.snapshot()) == {"shop/a"}

        (tmp_path / "a.yaml").write_text(policy_yaml("a", steps=[10, 100]), encoding="utf-8")
        assert served(source.snapshot(), "shop", "a").policy.spec.schedule.steps == [10, 100]

        (tmp_path / "sub").mkdir()
        (tmp_path / "sub" / "b.yml").write_text(policy_yaml("b"), encoding="utf-8")
        assert names(source.snapshot()) == {"shop/a", "shop/b"}
        assert served(source.snapshot(), "shop", "b").ref.location == f"{tmp_path}/sub/b.yml:1"

        (tmp_path / "a.yaml").unlink()
        assert names(source.snapshot()) == {"shop/b"}

        (tmp_path / "sub" / "b.yml").write_text(policy_yaml("b", steps=[5, 5]), encoding="utf-8")
        snapshot = source.snapshot()
        assert snapshot.policies == ()
        assert [p.message for p in snapshot.problems] == [
            "spec.schedule.steps[1]: must be greater than the previous step (got 5 after 5)"
        ]

    def test_changes_are_looked_for_at_most_every_reload_interval(
        self, tmp_path: Path, directory_sources: OpenDirectory
    ) -> None:
        now = [100.0]
        source = directory_sources(tmp_path, reload_interval=2.0, clock=lambda: now[0])
        assert source.snapshot() == PolicySnapshot()

        (tmp_path / "a.yaml").write_text(policy_yaml("a"), encoding="utf-8")
        now[0] += 1.9
        assert source.snapshot() == PolicySnapshot()

        now[0] += 0.1
        assert names(source.snapshot()) == {"shop/a"}
        (tmp_path / "a.yaml").unlink()
        assert names(source.reload()) == set()

    def test_files_are_parsed_again_only_when_their_fingerprint_changes(
        self, tmp_path: Path, directory_sources: OpenDirectory
    ) -> None:
        path = tmp_path / "a.yaml"
        text = policy_yaml("a")
        path.write_text(text, encoding="utf-8")
        source = directory_sources(tmp_path, reload_interval=0)
        first = source.snapshot()
        stat = path.stat()

        # Same inode, size and mtime: the fingerprint cannot tell, so the file is not read again.
        path.write_text("x" * len(text.encode()), encoding="utf-8")
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert source.snapshot() is first

        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
        assert names(source.snapshot()) == set()
        assert [p.location for p in source.snapshot().problems] == [f"{path}:1"]

    def test_a_configmap_volume_data_symlink_swap_is_followed(
        self, tmp_path: Path, directory_sources: OpenDirectory
    ) -> None:
        mount = tmp_path / "policies"
        mount.mkdir()
        self._configmap_version(mount, "..2024_01_01_00_00_00.1", {"a.yaml": policy_yaml("a")})
        (mount / "..data").symlink_to("..2024_01_01_00_00_00.1")
        (mount / "a.yaml").symlink_to("..data/a.yaml")
        source = directory_sources(mount, reload_interval=0)

        snapshot = source.snapshot()
        assert snapshot.problems == ()
        assert [p.ref.location for p in snapshot.policies] == [f"{mount}/a.yaml:1"]

        # What the kubelet does on a ConfigMap update: write a new hidden directory, add the new keys'
        # symlinks, swap ``..data`` atomically with a rename, then remove the old directory.
        self._configmap_version(
            mount,
            "..2024_01_01_00_05_00.2",
            {"a.yaml": policy_yaml("a", steps=[50, 100]), "b.yaml": policy_yaml("b")},
        )
        (mount / "b.yaml").symlink_to("..data/b.yaml")
        (mount / "..data_tmp").symlink_to("..2024_01_01_00_05_00.2")
        os.replace(mount / "..data_tmp", mount / "..data")
        shutil.rmtree(mount / "..2024_01_01_00_00_00.1")

        snapshot = source.snapshot()
        assert snapshot.problems == ()
        assert [p.ref.location for p in snapshot.policies] == [f"{mount}/a.yaml:1", f"{mount}/b.yaml:1"]
        assert served(snapshot, "shop", "a").policy.spec.schedule.steps == [50, 100]

    @staticmethod
    def _configmap_version(mount: Path, name: str, files: dict[str, str]) -> None:
        version = mount / name
        version.mkdir()
        for file_name, text in files.items():
            (version / file_name).write_text(text, encoding="utf-8")

    def test_hidden_entries_and_other_files_are_ignored(self, tmp_path: Path, directory_sources: OpenDirectory) -> None:
        (tmp_path / "a.yaml").write_text(policy_yaml("a"), encoding="utf-8")
        (tmp_path / ".hidden.yaml").write_text("not: [valid", encoding="utf-8")
        (tmp_path / ".git").mkdir()
        (tmp_path / ".git" / "b.yaml").write_text(policy_yaml("b"), encoding="utf-8")
        (tmp_path / "README.md").write_text("# policies\n", encoding="utf-8")

        snapshot = directory_sources(tmp_path).snapshot()

        assert names(snapshot) == {"shop/a"}
        assert snapshot.problems == ()

    def test_an_empty_directory_serves_nothing_and_is_no_problem(
        self, tmp_path: Path, directory_sources: OpenDirectory
    ) -> None:
        assert directory_sources(tmp_path).snapshot() == PolicySnapshot()

    def test_a_missing_directory_is_a_problem_until_it_appears(
        self, tmp_path: Path, directory_sources: OpenDirectory
    ) -> None:
        missing = tmp_path / "not-yet"
        source = directory_sources(missing, reload_interval=0)

        assert source.snapshot() == PolicySnapshot(
            problems=(SourceProblem(source="file", location=str(missing), message="(directory): no such directory"),)
        )

        missing.mkdir()
        (missing / "a.yaml").write_text(policy_yaml("a"), encoding="utf-8")
        snapshot = source.snapshot()
        assert names(snapshot) == {"shop/a"}
        assert snapshot.problems == ()
        source.close()

    def test_a_path_that_is_not_a_directory_is_a_problem(
        self, tmp_path: Path, directory_sources: OpenDirectory
    ) -> None:
        (tmp_path / "policies").write_text(policy_yaml("a"), encoding="utf-8")

        snapshot = directory_sources(tmp_path / "policies").snapshot()

        assert snapshot.policies == ()
        assert [(p.location, p.message) for p in snapshot.problems] == [
            (f"{tmp_path}/policies", "(directory): is not a directory")
        ]

    def test_the_same_policy_in_two_files_is_served_twice_for_the_merge_to_reject(
        self, tmp_path: Path, directory_sources: OpenDirectory
    ) -> None:
        (tmp_path / "a.yaml").write_text(policy_yaml("same"), encoding="utf-8")
        (tmp_path / "b.yaml").write_text(policy_yaml("same"), encoding="utf-8")

        merged = merge_snapshots(directory_sources(tmp_path).snapshot())

        assert merged.policies == ()
        assert [(p.location, p.message) for p in merged.problems] == [
            (
                f"{tmp_path}/a.yaml:1",
                f"CanaryPolicy shop/same is defined both in {tmp_path}/a.yaml:1 and in {tmp_path}/b.yaml:1; "
                "neither runs until one is removed",
            ),
            (
                f"{tmp_path}/b.yaml:1",
                f"CanaryPolicy shop/same is defined both in {tmp_path}/b.yaml:1 and in {tmp_path}/a.yaml:1; "
                "neither runs until one is removed",
            ),
        ]


# ---------------------------------------------------------------------------------------------- resources


class TestCrdPolicySource:
    def test_resources_created_modified_and_deleted_appear_in_the_snapshot(
        self, emulator: KubeApiEmulator, namespace: str, crd_sources: Callable[..., CrdPolicySource]
    ) -> None:
        changes: list[None] = []
        emulator.create(resource(namespace, "before"))
        source = crd_sources(namespaces=[namespace], on_change=lambda: changes.append(None))
        assert source.wait_synced(5)
        assert names(source.snapshot()) == {f"{namespace}/before"}

        created = emulator.create(resource(namespace, "tcp-echo"))
        eventually(lambda: f"{namespace}/tcp-echo" in names(source.snapshot()), what="the new resource is served")
        ref = served(source.snapshot(), namespace, "tcp-echo").ref
        assert ref == PolicyRef(namespace, "tcp-echo", source="crd", location=created["metadata"]["uid"], generation=1)

        emulator.put(resource(namespace, "tcp-echo", steps=[0, 100]))
        eventually(
            lambda: served(source.snapshot(), namespace, "tcp-echo").policy.spec.schedule.steps == [0, 100],
            what="the modification is served",
        )
        assert served(source.snapshot(), namespace, "tcp-echo").ref.generation == 2

        emulator.delete(RESOURCE, "tcp-echo", namespace=namespace)
        eventually(lambda: names(source.snapshot()) == {f"{namespace}/before"}, what="the deletion is served")
        assert len(changes) == 4  # the first list, the creation, the modification and the deletion

    def test_an_invalid_resource_becomes_a_problem_naming_its_field_until_it_is_fixed(
        self, emulator: KubeApiEmulator, namespace: str, crd_sources: Callable[..., CrdPolicySource]
    ) -> None:
        source = crd_sources(namespaces=[namespace])
        assert source.wait_synced(5)

        # The CRD's own rules refuse decreasing steps at the API server (CEL); an overlong duration passes the
        # CRD's pattern and is refused by the controller's validation, as on a cluster.
        emulator.create(resource(namespace, "tcp-echo", step_duration="100000000h"))
        eventually(lambda: source.snapshot().problems != (), what="the invalid resource is reported")
        assert source.snapshot() == PolicySnapshot(
            problems=(
                SourceProblem(
                    source="crd",
                    location=f"{namespace}/tcp-echo",
                    message="spec.schedule.stepDuration: must be at most 2562047h47m16.854775807s (about 292 years),"
                    " the longest Go duration (got '100000000h')",
                    namespace=namespace,
                    name="tcp-echo",
                ),
            )
        )

        emulator.put(resource(namespace, "tcp-echo"))
        eventually(lambda: source.snapshot().policies != (), what="the fixed resource is served")
        assert source.snapshot().problems == ()

    def test_a_status_write_changes_nothing_and_calls_no_one(
        self, emulator: KubeApiEmulator, namespace: str, kube: KubeApi, crd_sources: Callable[..., CrdPolicySource]
    ) -> None:
        changes: list[None] = []
        emulator.create(resource(namespace, "tcp-echo"))
        source = crd_sources(namespaces=[namespace], on_change=lambda: changes.append(None))
        assert source.wait_synced(5)
        before = source.snapshot()
        ref = served(before, namespace, "tcp-echo").ref

        CrdStatusStore(kube).save(policy=ref, status=RolloutStatus(message="stepping"), version=None)
        emulator.create(resource(namespace, "marker"))  # its event comes after the status write's
        eventually(lambda: f"{namespace}/marker" in names(source.snapshot()), what="the marker is served")

        assert served(source.snapshot(), namespace, "tcp-echo") == served(before, namespace, "tcp-echo")
        assert len(changes) == 2  # the first list and the marker

    def test_a_cluster_wide_source_with_a_label_selector_sees_matching_resources_in_every_namespace(
        self, emulator: KubeApiEmulator, namespace: str, crd_sources: Callable[..., CrdPolicySource]
    ) -> None:
        label = f"run-{uuid.uuid4().hex[:8]}"
        other = new_namespace(emulator)

        def labelled(ns: str, name: str, value: str) -> dict[str, Any]:
            obj = resource(ns, name)
            obj["metadata"]["labels"] = {"suite": value}
            return obj

        emulator.create(labelled(namespace, "listed", label))
        emulator.create(labelled(other, "not-mine", "someone-else"))
        source = crd_sources(label_selector=f"suite={label}")
        assert source.wait_synced(5)
        assert names(source.snapshot()) == {f"{namespace}/listed"}

        emulator.create(labelled(other, "watched", label))
        eventually(
            lambda: names(source.snapshot()) == {f"{namespace}/listed", f"{other}/watched"},
            what="the resource in the other namespace is served",
        )
        assert served(source.snapshot(), other, "watched").policy.metadata.labels == {"suite": label}

    def test_a_namespaced_source_sees_only_its_namespaces(
        self, emulator: KubeApiEmulator, namespace: str, crd_sources: Callable[..., CrdPolicySource]
    ) -> None:
        second, ignored = new_namespace(emulator), new_namespace(emulator)
        source = crd_sources(namespaces=[namespace, second])
        assert source.wait_synced(5)

        for ns in (ignored, namespace, second):
            emulator.create(resource(ns, "tcp-echo"))
        eventually(
            lambda: names(source.snapshot()) == {f"{namespace}/tcp-echo", f"{second}/tcp-echo"},
            what="both watched namespaces are served",
        )

    def test_a_failing_list_is_retried_with_backoff(
        self,
        emulator: KubeApiEmulator,
        namespace: str,
        faults: FaultInjector,
        crd_sources: Callable[..., CrdPolicySource],
    ) -> None:
        emulator.create(resource(namespace, "tcp-echo"))
        failing = faults.add(verb="LIST", resource=RESOURCE, namespace=namespace, status=500, times=2)

        started = time.monotonic()
        source = crd_sources(namespaces=[namespace])
        assert source.wait_synced(5)

        assert failing.hits == 2
        assert time.monotonic() - started >= 0.2 + 0.4  # two waits, the second twice the first
        assert names(source.snapshot()) == {f"{namespace}/tcp-echo"}

    def test_wait_synced_says_false_while_the_list_keeps_failing(
        self, namespace: str, faults: FaultInjector, crd_sources: Callable[..., CrdPolicySource]
    ) -> None:
        faults.add(verb="LIST", resource=RESOURCE, namespace=namespace, status=403)
        source = crd_sources(namespaces=[namespace])

        assert not source.wait_synced(0.5)
        assert source.snapshot() == PolicySnapshot()
        assert source.running

    def test_a_dropped_watch_resumes_without_losing_an_event_made_meanwhile(
        self,
        emulator: KubeApiEmulator,
        namespace: str,
        faults: FaultInjector,
        crd_sources: Callable[..., CrdPolicySource],
    ) -> None:
        emulator.create(resource(namespace, "before"))
        source = crd_sources(namespaces=[namespace])
        watching(emulator, source, namespace)
        slow_list = faults.add(verb="LIST", resource=RESOURCE, namespace=namespace, delay_seconds=0.3, times=1)

        faults.drop_watches()  # the connection is cut, as a restarting API server or load balancer does
        emulator.create(resource(namespace, "meanwhile"))
        emulator.delete(RESOURCE, "before", namespace=namespace)

        eventually(lambda: names(source.snapshot()) == {f"{namespace}/meanwhile"}, what="the events are applied")
        assert slow_list.hits == 1  # the cut watch led to a relist
        emulator.create(resource(namespace, "after"))
        eventually(lambda: f"{namespace}/after" in names(source.snapshot()), what="the new watch delivers events")

    def test_a_watch_ended_by_the_server_resumes_from_the_last_version_without_listing(
        self,
        emulator: KubeApiEmulator,
        namespace: str,
        faults: FaultInjector,
        crd_sources: Callable[..., CrdPolicySource],
    ) -> None:
        source = crd_sources(namespaces=[namespace])
        watching(emulator, source, namespace)
        slow_watch = faults.add(verb="WATCH", resource=RESOURCE, namespace=namespace, delay_seconds=0.3, times=1)
        lists = faults.add(verb="LIST", resource=RESOURCE, namespace=namespace, delay_seconds=0.001)

        faults.drop_watches(graceful=True)  # ends the stream as the server's watch timeout does
        emulator.create(resource(namespace, "meanwhile"))

        eventually(lambda: names(source.snapshot()) == {f"{namespace}/meanwhile"}, what="the event is replayed")
        assert slow_watch.hits == 1
        assert lists.hits == 0

    def test_the_watch_timeout_is_followed_by_a_new_watch(
        self,
        emulator: KubeApiEmulator,
        namespace: str,
        faults: FaultInjector,
        crd_sources: Callable[..., CrdPolicySource],
    ) -> None:
        watches = faults.add(verb="WATCH", resource=RESOURCE, namespace=namespace, delay_seconds=0.001)
        lists = faults.add(verb="LIST", resource=RESOURCE, namespace=namespace, delay_seconds=0.001)
        source = crd_sources(namespaces=[namespace], watch_timeout_seconds=1)
        assert source.wait_synced(5)

        eventually(lambda: watches.hits >= 2, what="the first watch timed out and a second one is open")
        emulator.create(resource(namespace, "tcp-echo"))
        eventually(lambda: f"{namespace}/tcp-echo" in names(source.snapshot()), what="the new watch delivers events")
        assert lists.hits == 1

    def test_an_expired_watch_leads_to_a_relist_that_converges(
        self,
        emulator: KubeApiEmulator,
        namespace: str,
        faults: FaultInjector,
        crd_sources: Callable[..., CrdPolicySource],
    ) -> None:
        emulator.create(resource(namespace, "kept"))
        emulator.create(resource(namespace, "deleted"))
        source = crd_sources(namespaces=[namespace])
        watching(emulator, source, namespace)
        assert names(source.snapshot()) == {f"{namespace}/kept", f"{namespace}/deleted"}
        slow_watch = faults.add(verb="WATCH", resource=RESOURCE, namespace=namespace, delay_seconds=0.3, times=1)
        lists = faults.add(verb="LIST", resource=RESOURCE, namespace=namespace, delay_seconds=0.001)
        faults.expire_next_watch()

        faults.drop_watches(graceful=True)  # the next watch, delayed, is answered with 410 Expired
        emulator.create(resource(namespace, "created"))
        emulator.delete(RESOURCE, "deleted", namespace=namespace)

        eventually(
            lambda: names(source.snapshot()) == {f"{namespace}/kept", f"{namespace}/created"},
            what="the relist converges",
        )
        assert slow_watch.hits == 1
        assert lists.hits == 1
        emulator.create(resource(namespace, "after"))
        eventually(lambda: f"{namespace}/after" in names(source.snapshot()), what="the new watch delivers events")

    def test_a_too_old_resource_version_is_recovered_by_a_relist(self, tmp_path: Path) -> None:
        # A private emulator: compacting the history must not disturb the session's.
        with KubeApiEmulator() as private:
            register_crd(private)
            api_client = client.ApiClient(private.client_configuration())
            source = CrdPolicySource(KubeApi(api_client, timeout_seconds=2.0), namespaces=["shop"])
            try:
                watching(private, source, "shop")
                private.create(resource("shop", "kept"))
                private.create(resource("shop", "deleted"))
                eventually(lambda: len(source.snapshot().policies) == 2, what="both resources are served")
                private.faults.add(verb="WATCH", resource=RESOURCE, delay_seconds=0.3, times=1)

                private.faults.drop_watches(graceful=True)
                private.create(resource("shop", "created"))
                private.delete(RESOURCE, "deleted", namespace="shop")
                private.compact()  # the watch can no longer resume from the version it saw last

                eventually(
                    lambda: names(source.snapshot()) == {"shop/kept", "shop/created"}, what="the relist converges"
                )
            finally:
                source.close()
                close_api_client(api_client)

    def test_close_ends_the_thread_promptly_while_watching(
        self, emulator: KubeApiEmulator, namespace: str, crd_sources: Callable[..., CrdPolicySource]
    ) -> None:
        source = crd_sources(namespaces=[namespace])
        watching(emulator, source, namespace)

        started = time.monotonic()
        source.close()

        assert not source.running
        assert time.monotonic() - started < 1.0

    def test_close_ends_the_thread_promptly_while_backing_off(
        self, namespace: str, faults: FaultInjector, crd_sources: Callable[..., CrdPolicySource]
    ) -> None:
        failing = faults.add(verb="LIST", resource=RESOURCE, namespace=namespace, status=503)
        source = crd_sources(namespaces=[namespace], backoff_initial=5.0)
        eventually(lambda: failing.hits == 1, what="the first list failed")

        started = time.monotonic()
        source.close()

        assert not source.running
        assert time.monotonic() - started < 1.0

    def test_a_failing_on_change_callback_does_not_stop_the_watch(
        self, emulator: KubeApiEmulator, namespace: str, crd_sources: Callable[..., CrdPolicySource]
    ) -> None:
        def fail() -> None:
            raise RuntimeError("callback bug")

        source = crd_sources(namespaces=[namespace], on_change=fail)
        assert source.wait_synced(5)
        emulator.create(resource(namespace, "first"))
        emulator.create(resource(namespace, "second"))

        eventually(lambda: len(source.snapshot().policies) == 2, what="both resources are served")
        assert source.running


# ---------------------------------------------------------------------------------------------- merge


def file_policy(name: str, location: str, namespace: str = "shop") -> SourcedPolicy:
    """A policy as the directory source serves it."""
    parsed, problems = validate_policy(policy_doc(name=name, namespace=namespace))
    assert parsed is not None, problems
    return SourcedPolicy(parsed, PolicyRef(namespace, name, source="file", location=location))


class TestMergeSnapshots:
    def test_a_policy_defined_as_a_resource_and_in_a_file_runs_nowhere_and_is_reported_on_both(
        self,
        tmp_path: Path,
        directory_sources: OpenDirectory,
        emulator: KubeApiEmulator,
        namespace: str,
        crd_sources: Callable[..., CrdPolicySource],
    ) -> None:
        (tmp_path / "a.yaml").write_text(policy_yaml("tcp-echo", namespace=namespace), encoding="utf-8")
        (tmp_path / "b.yaml").write_text(policy_yaml("only-in-a-file", namespace=namespace), encoding="utf-8")
        emulator.create(resource(namespace, "tcp-echo"))
        emulator.create(resource(namespace, "only-a-resource"))
        resources = crd_sources(namespaces=[namespace])
        assert resources.wait_synced(5)

        merged = merge_snapshots(directory_sources(tmp_path).snapshot(), resources.snapshot())

        assert names(merged) == {f"{namespace}/only-in-a-file", f"{namespace}/only-a-resource"}
        assert set(merged.problems) == {
            SourceProblem(
                source="file",
                location=f"{tmp_path}/a.yaml:1",
                message=f"CanaryPolicy {namespace}/tcp-echo is defined both in {tmp_path}/a.yaml:1 and as a "
                "resource; neither runs until one is removed",
                namespace=namespace,
                name="tcp-echo",
            ),
            SourceProblem(
                source="crd",
                location=f"{namespace}/tcp-echo",
                message=f"CanaryPolicy {namespace}/tcp-echo is defined both as a resource and in {tmp_path}/a.yaml:1; "
                "neither runs until one is removed",
                namespace=namespace,
                name="tcp-echo",
            ),
        }

    def test_three_definitions_each_name_the_two_others(self) -> None:
        snapshot = PolicySnapshot(
            policies=(file_policy("x", "a.yaml:1"), file_policy("x", "b.yaml:3"), file_policy("x", "c.yaml:7"))
        )

        merged = merge_snapshots(snapshot)

        assert merged.policies == ()
        assert [p.message for p in merged.problems] == [
            "CanaryPolicy shop/x is defined in a.yaml:1, and also in b.yaml:3 and in c.yaml:7; "
            "none runs until only one is left",
            "CanaryPolicy shop/x is defined in b.yaml:3, and also in a.yaml:1 and in c.yaml:7; "
            "none runs until only one is left",
            "CanaryPolicy shop/x is defined in c.yaml:7, and also in a.yaml:1 and in b.yaml:3; "
            "none runs until only one is left",
        ]

    def test_policies_defined_once_and_every_problem_are_kept_in_order(self) -> None:
        broken = SourceProblem(source="crd", location="shop/broken", message="spec: required field is missing")
        first = PolicySnapshot(policies=(file_policy("a", "a.yaml:1"),), problems=(broken,))
        second = PolicySnapshot(policies=(file_policy("b", "b.yaml:1"), file_policy("a", "a.yaml:1", "other")))

        merged = merge_snapshots(first, second)

        assert [(p.ref.namespace, p.ref.name) for p in merged.policies] == [
            ("shop", "a"),
            ("shop", "b"),
            ("other", "a"),
        ]
        assert merged.problems == (broken,)

    def test_nothing_merged_is_nothing(self) -> None:
        assert merge_snapshots() == PolicySnapshot()
        assert merge_snapshots(PolicySnapshot(), PolicySnapshot()) == PolicySnapshot()
