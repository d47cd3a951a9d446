"""The daemon's policy directory under hostile files (issue 13, items 2 and 3).

Files are read by the source's own thread, each within its limits and time budget, so a bad or slow file
is reported by name while the other files' policies keep being served, and a policy added at the same
time as a bad file is picked up at once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from controller.adapters.policy_sources import DirectoryPolicySource, directory
from controller.adapters.yaml_documents import YamlLimits
from controller.ports import PolicySnapshot
from tests.support.policies import policy_doc
from tests.test_hostile_yaml import alias_bomb


def policy_yaml(name: str) -> str:
    return yaml.safe_dump(policy_doc(name=name, namespace="shop"), sort_keys=False)


def names(snapshot: PolicySnapshot) -> set[str]:
    return {f"{p.ref.namespace}/{p.ref.name}" for p in snapshot.policies}


@pytest.fixture
def sources() -> Iterator[list[DirectoryPolicySource]]:
    made: list[DirectoryPolicySource] = []
    yield made
    for source in made:
        source.close()


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("text", "message"),
    [
        (alias_bomb(9), "yaml: refused: its aliases expand to more than 100,000 nodes"),
        ("a: &a [*a]\n", "yaml: refused: an alias refers to a node that contains it"),
        ("a: " + "[" * 3000 + "]" * 3000 + "\n", "yaml: refused: nested deeper than 100 levels"),
        ("a: " + "7" * 5000 + "\n", "yaml: refused: an integer of 5,000 characters"),
        ("a: \x00\n", "yaml: syntax error: unacceptable character #x0000"),
    ],
    ids=["alias-bomb", "self-reference", "deep", "huge-integer", "control-character"],
)
def test_a_hostile_file_is_reported_by_name_and_a_policy_added_with_it_is_served(
    tmp_path: Path, sources: list[DirectoryPolicySource], text: str, message: str
) -> None:
    # The look's own time budget is tested below; here a loaded machine (the full suite on 2 cores) must not
    # make the snapshot return before the look that reads both files has ended.
    source = DirectoryPolicySource(tmp_path, reload_interval=0, wait_seconds=20.0)
    sources.append(source)
    (tmp_path / "old.yaml").write_text(policy_yaml("old"))
    assert names(source.snapshot()) == {"shop/old"}

    (tmp_path / "hostile.yaml").write_text(text)
    (tmp_path / "new.yaml").write_text(policy_yaml("new"))
    snapshot = source.snapshot()

    assert names(snapshot) == {"shop/old", "shop/new"}
    assert [(p.location, p.message[: len(message)]) for p in snapshot.problems] == [
        (f"{tmp_path / 'hostile.yaml'}:1", message)
    ]


@pytest.mark.timeout(30)
def test_a_fifo_in_the_directory_is_refused_by_name_without_blocking(
    tmp_path: Path, sources: list[DirectoryPolicySource]
) -> None:
    import os  # noqa: PLC0415

    os.mkfifo(tmp_path / "pipe.yaml")
    (tmp_path / "good.yaml").write_text(policy_yaml("good"))
    source = DirectoryPolicySource(tmp_path)
    sources.append(source)

    snapshot = source.snapshot()

    assert names(snapshot) == {"shop/good"}
    assert [(p.location, p.message) for p in snapshot.problems] == [
        (f"{tmp_path / 'pipe.yaml'}:1", "(file): refused: a FIFO, not a regular file")
    ]


@pytest.mark.timeout(30)
def test_a_file_still_being_read_never_holds_up_the_snapshot_of_the_others(
    tmp_path: Path, sources: list[DirectoryPolicySource], monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    reading = threading.Event()
    real_load = directory.load_policy_file

    def load(path: Path, *, limits: YamlLimits = directory.FILE_LIMITS) -> object:
        if path.name == "slow.yaml":
            reading.set()
            release.wait(20)
        return real_load(path, limits=limits)

    monkeypatch.setattr(directory, "load_policy_file", load)
    (tmp_path / "a.yaml").write_text(policy_yaml("a"))
    source = DirectoryPolicySource(tmp_path, reload_interval=0, wait_seconds=0.05)
    sources.append(source)
    assert names(source.snapshot()) == {"shop/a"}

    (tmp_path / "slow.yaml").write_text(policy_yaml("slow"))
    (tmp_path / "b.yaml").write_text(policy_yaml("b"))
    assert names(source.snapshot()) == {"shop/a"}  # asks for a look, and answers before it is done
    assert reading.wait(10)

    # The look is stuck on slow.yaml: every snapshot still answers, with the policies known so far.
    for _ in range(5):
        assert names(source.snapshot()) == {"shop/a"}
    release.set()
    assert names(source.reload()) == {"shop/a", "shop/b", "shop/slow"}


def test_a_file_over_its_time_budget_is_refused_by_name(tmp_path: Path, sources: list[DirectoryPolicySource]) -> None:
    (tmp_path / "big.yaml").write_text("a: [" + ", ".join(["1"] * 5000) + "]\n")
    source = DirectoryPolicySource(tmp_path, limits=YamlLimits(max_seconds=1e-9))
    sources.append(source)

    snapshot = source.snapshot()

    assert [(p.location, p.message) for p in snapshot.problems] == [
        (f"{tmp_path / 'big.yaml'}:1", "yaml: refused: reading took longer than 1e-09 s (the limit per file)")
    ]


def test_only_changed_files_are_read_again(
    tmp_path: Path, sources: list[DirectoryPolicySource], monkeypatch: pytest.MonkeyPatch
) -> None:
    read: list[str] = []
    real_load = directory.load_policy_file

    def load(path: Path, *, limits: YamlLimits = directory.FILE_LIMITS) -> object:
        read.append(path.name)
        return real_load(path, limits=limits)

    monkeypatch.setattr(directory, "load_policy_file", load)
    (tmp_path / "bomb.yaml").write_text(alias_bomb(9))
    (tmp_path / "a.yaml").write_text(policy_yaml("a"))
    source = DirectoryPolicySource(tmp_path, reload_interval=0)
    sources.append(source)
    source.snapshot()
    assert sorted(read) == ["a.yaml", "bomb.yaml"]

    (tmp_path / "b.yaml").write_text(policy_yaml("b"))
    assert names(source.snapshot()) == {"shop/a", "shop/b"}
    assert sorted(read) == ["a.yaml", "b.yaml", "bomb.yaml"]


def test_synced_only_after_the_first_look_and_close_ends_the_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    real_load = directory.load_policy_file

    def load(path: Path, *, limits: YamlLimits = directory.FILE_LIMITS) -> object:
        release.wait(20)
        return real_load(path, limits=limits)

    monkeypatch.setattr(directory, "load_policy_file", load)
    (tmp_path / "a.yaml").write_text(policy_yaml("a"))
    source = DirectoryPolicySource(tmp_path, wait_seconds=0.01)

    assert not source.synced()
    assert source.snapshot() == PolicySnapshot()
    release.set()
    assert names(source.reload()) == {"shop/a"}
    assert source.synced()
    source.close()
    assert not source._thread.is_alive()
