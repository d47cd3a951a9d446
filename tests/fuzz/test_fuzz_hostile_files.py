"""Hostile files through the real command (issue 13, item 6): bombs, deep nesting, huge numbers, control
characters, non-regular files, size and count limits, as ``lint`` files and as ``plan`` targets.

Each runs ``python -m controller`` as a process with its address space capped at 1 GiB and a timeout, so
the contract's bounds on time and memory are real ones: exit 1 (lint) or 2 (plan), each problem line
naming the file, no traceback.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fuzz.contract import NIGHTLY, STATS, check_plan, crashed
from tests.support.paths import REPO
from tests.test_hostile_yaml import alias_bomb

SEED_POLICY = REPO / "policies" / "tcp-echo.yaml"
MEMORY_BYTES = 1024**3
TIMEOUT_SECONDS = 60


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))


def _text(text: str) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_bytes(text.encode("utf-8", errors="surrogatepass"))

    return write


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _dev_zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


def _bytes(data: bytes) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_bytes(data)

    return write


HOSTILE: dict[str, Callable[[Path], None]] = {
    "alias-bomb-9": _text(alias_bomb(9)),
    "alias-bomb-30": _text(alias_bomb(30)),
    "aliases-2000": _text("a: &a 1\nb: [" + ", ".join(["*a"] * 2000) + "]\n"),
    "flow-nesting-100000": _text("a: " + "[" * 100_000 + "]" * 100_000 + "\n"),
    "block-nesting-2000": _text("".join("  " * i + f"k{i}:\n" for i in range(2000)) + "  " * 2000 + "x: 1\n"),
    "integer-100000-digits": _text("spec: {schedule: {steps: [" + "9" * 100_000 + "]}}\n"),
    "float-1e999999": _text("a: 1e999999\n"),
    "self-referencing-anchor": _text("apiVersion: &a [*a]\n"),
    "control-characters": _text("apiVersion: canaryctl.dev/v1alpha1\nkind: Canary\x1b[2JPolicy\x00\n"),
    "lone-surrogate": _text("kind: \ud800\n"),
    "not-utf8": _bytes(b"kind: \xff\xfe\n"),
    "fifo": _fifo,
    "dev-zero": _dev_zero,
    "size-2-mib": _text("# " + "x" * 2 * 1024 * 1024 + "\n"),
    "documents-5000": _text("---\na: 1\n" * 5000),
    "nodes-120000": _text("a: [" + ",".join(["1"] * 120_000) + "]\n"),
    "empty": _text(""),
    "python-tag": _text("a: !!python/object/apply:os.system ['true']\n"),
}


def _run(*args: str) -> tuple[int, str, str, float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "controller", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=TIMEOUT_SECONDS,
        preexec_fn=_limit_memory,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr, time.monotonic() - started


def _lint_breaches(paths: list[Path], code: int, out: str, err: str) -> list[str]:
    lines = out.splitlines()
    named = all(any(line.startswith(f"{path}:") for path in paths) for line in lines)
    missing = [path.name for path in paths if not any(line.startswith(f"{path}:") for line in lines)]
    if code != 1 or not named or missing or "Traceback" in err:
        return [f"lint: exit {code}, files not named {missing}, stdout {out[:300]!r}, stderr {err[-600:]!r}"]
    return []


@pytest.mark.timeout(TIMEOUT_SECONDS * 2)
def test_lint_of_a_folder_of_hostile_files_names_each_within_bounded_time_and_memory(tmp_path: Path) -> None:
    paths = []
    for name, write in HOSTILE.items():
        if name != "empty":  # an empty file holds no document, so it has no finding of its own
            paths.append(tmp_path / f"{name}.yaml")
            write(paths[-1])

    code, out, err, seconds = _run("lint", str(tmp_path))

    STATS.record("hostile folder (process)", seconds, f"lint of {len(paths)} hostile files")
    assert crashed(_lint_breaches(paths, code, out, err)) == []


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_plan_target_exits_2_naming_it(tmp_path: Path, name: str) -> None:
    target = tmp_path / f"{name}.yaml"
    HOSTILE[name](target)

    breaches = check_plan(SEED_POLICY, target, kind="hostile plan target", case=f"plan {name}", codes=frozenset({2}))

    assert crashed(breaches) == []


@pytest.mark.skipif(not NIGHTLY, reason="nightly size (make fuzz): one process per file and command")
@pytest.mark.timeout(TIMEOUT_SECONDS * 3)
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_each_hostile_file_alone_as_a_process_in_lint_and_plan(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.yaml"
    HOSTILE[name](path)
    breaches: list[str] = []

    code, out, err, seconds = _run("lint", str(path))
    STATS.record("hostile file (process)", seconds, f"lint {name}")
    if name == "empty":
        if code != 1 or err.strip() != f"no CanaryPolicy documents found in {path}":
            breaches.append(f"lint {name}: exit {code}, stderr {err[-300:]!r}")
    else:
        breaches += _lint_breaches([path], code, out, err)

    code, out, err, seconds = _run("plan", "--policy", str(SEED_POLICY), "--target", str(path))
    STATS.record("hostile plan target (process)", seconds, f"plan {name}")
    lines = err.splitlines()
    if code != 2 or not lines or not all(line.startswith(f"{path}:") for line in lines) or "Traceback" in err:
        breaches.append(f"plan {name}: exit {code}, stderr {err[-600:]!r}")

    assert crashed(breaches) == []
