"""The suite's fixtures and hooks: the shared test data's presence, and the leak guard.

Helpers live in ``tests/support/`` (``paths``: the repository and the shared Istio files; ``policies``:
CanaryPolicy builders; ``http_server``: the stub HTTP server). The leak guard: every test must leave no
thread and no child process running that it started (``_no_leaked_threads_or_processes``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.paths import REPO, SHARED_ISTIO


def pytest_configure(config: pytest.Config) -> None:
    """The real-world test inputs live in ../shared beside the repository (as in CI)."""
    if not SHARED_ISTIO.is_dir():
        raise pytest.UsageError("shared test data missing: expected shared/data/istio beside the repository checkout")


@pytest.fixture(scope="session")
def shared_istio() -> Path:
    """The folder of real Istio and Gateway API files."""
    if not SHARED_ISTIO.is_dir():
        pytest.fail(f"shared test data missing: expected {SHARED_ISTIO.relative_to(REPO.parent)} beside the repo")
    return SHARED_ISTIO


# How long a test's threads and child processes may take to finish after its teardown: a server's thread
# that was told to stop, a process that was sent SIGTERM and is exiting.
LEAK_GRACE_S = 2.0

# Threads that serve a session-scoped server's kept-alive connections and may be born during any test: the
# session's API emulator starts one per connection of the session's Kubernetes client when that client's pool
# opens it, and ends them all when it stops. A leaked emulator is still caught: its serving thread counts.
SESSION_CONNECTION_THREADS = ("kubeapi-connection-",)


def _child_processes() -> dict[int, str]:
    """This process's living children (pid -> command line), read from /proc; zombies are not counted."""
    me = os.getpid()
    children: dict[int, str] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="utf-8", errors="replace") as stat_file:
                stat = stat_file.read()
            # The command name (in parentheses) may contain spaces; the fields after it are fixed.
            state, ppid = stat.rpartition(")")[2].split()[:2]
            if int(ppid) != me or state == "Z":
                continue
            with open(f"/proc/{entry.name}/cmdline", "rb") as cmdline_file:
                cmdline = cmdline_file.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, ValueError):
            continue  # exited while we looked
        children[int(entry.name)] = cmdline[:200]
    return children


def _leaks(threads_before: set[threading.Thread], children_before: set[int]) -> list[str]:
    """What is still running that was not before, after waiting up to LEAK_GRACE_S for it to finish."""
    deadline = time.monotonic() + LEAK_GRACE_S
    while True:
        threads = [
            t
            for t in threading.enumerate()
            if t not in threads_before and t.is_alive() and not t.name.startswith(SESSION_CONNECTION_THREADS)
        ]
        children = {pid: cmd for pid, cmd in _child_processes().items() if pid not in children_before}
        if (not threads and not children) or time.monotonic() >= deadline:
            break
        for thread in threads:
            thread.join(timeout=max(0.0, min(0.1, deadline - time.monotonic())))
        if not threads:
            time.sleep(0.05)
    return [f"thread {t.name!r} (daemon={t.daemon})" for t in threads] + [
        f"child process {pid}: {cmd}" for pid, cmd in sorted(children.items())
    ]


@pytest.fixture(autouse=True)
def _no_leaked_threads_or_processes() -> Iterator[None]:
    """Fail a test that leaves a thread or a child process running after its own teardown.

    pytest sets up higher-scoped fixtures first and, within the function scope, autouse fixtures before the
    others, so the snapshot here is taken after the session and module fixtures (a shared Prometheus, the
    emulator) started theirs, and the check runs after every other function-scoped fixture was torn down:
    only what the test and its own fixtures started counts.
    """
    threads_before = set(threading.enumerate())
    children_before = set(_child_processes())
    yield
    leaks = _leaks(threads_before, children_before)
    if leaks:
        pytest.fail(
            f"the test left {len(leaks)} thread(s) or child process(es) running after its teardown "
            f"(waited {LEAK_GRACE_S:g} s): " + "; ".join(leaks),
            pytrace=False,
        )
