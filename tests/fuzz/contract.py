"""The fuzz contract, checked on every case: what ``canaryctl lint`` and ``plan`` may answer to any input.

Exit 0, 1 or 2; every line of output names the file it is about (``FILE:LINE: ...``) or is the summary; no
traceback, no exception escaping, no "internal error" from the last guards; bounded time (and, for the
hostile files run as a process, bounded memory). Each case is counted, and the slowest kept, for the
figures printed at the end of the run.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from typer.testing import CliRunner

from controller.cli import app

# make test: a bounded, seeded run (about a minute in all); make fuzz: FUZZ_PROFILE=nightly, many more cases.
NIGHTLY = os.environ.get("FUZZ_PROFILE") == "nightly"
SEED = int(os.environ.get("FUZZ_SEED", "20261203"))
# The longest one in-process case may take, in seconds (a bound on hangs, not a performance goal).
CASE_SECONDS = 20.0

runner = CliRunner()


@dataclass
class Stats:
    """Cases tried, crashes (contract broken) and the slowest case, over the whole run."""

    tried: int = 0
    crashes: list[str] = field(default_factory=list)
    slowest: tuple[float, str] = (0.0, "")
    by_kind: dict[str, int] = field(default_factory=dict)

    def record(self, kind: str, seconds: float, case: str) -> None:
        self.tried += 1
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
        if seconds > self.slowest[0]:
            self.slowest = (seconds, f"{kind}: {case}")


STATS = Stats()


def scaled(small: int, nightly: int) -> int:
    """``small`` cases in ``make test``, ``nightly`` in ``make fuzz``."""
    return nightly if NIGHTLY else small


def rng(*parts: object) -> random.Random:
    """A generator seeded from the run's seed and the case, so that every case can be replayed alone."""
    return random.Random("-".join(map(str, (SEED, *parts))))


def _named(line: str, files: tuple[Path, ...]) -> bool:
    return any(line.startswith(f"{file}:") for file in files)


def check_lint(files: tuple[Path, ...], *, kind: str, case: str) -> list[str]:
    """Run ``canaryctl lint`` on ``files``; the contract's breaches (empty when kept)."""
    started = time.monotonic()
    result = runner.invoke(app, ["lint", *map(str, files)])
    seconds = time.monotonic() - started
    STATS.record(kind, seconds, case)
    out, err = result.stdout.splitlines(), result.stderr.splitlines()
    breaches = []
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        breaches.append(f"exception {type(result.exception).__name__}: {result.exception}")
    if result.exit_code not in {0, 1}:
        breaches.append(f"exit {result.exit_code}")
    for line in out:
        if not (_named(line, files) or line.endswith((" policies OK", " policy OK"))):
            breaches.append(f"stdout line names no file: {line[:200]!r}")
    for line in err:
        if not (_named(line, files) or line.startswith("no CanaryPolicy documents found in ")):
            breaches.append(f"stderr line names no file: {line[:200]!r}")
    if result.exit_code == 1 and not out and not err:
        breaches.append("exit 1 without a word")
    breaches += [f"internal error: {line[:200]}" for line in out + err if "internal error" in line]
    if seconds > CASE_SECONDS:
        breaches.append(f"took {seconds:.1f} s")
    return [f"{case}: {breach}" for breach in breaches]


def check_plan(
    policy: Path, target: Path, *, kind: str, case: str, codes: frozenset[int] = frozenset({0, 1, 2})
) -> list[str]:
    """Run ``canaryctl plan --policy policy --target target``; the contract's breaches (empty when kept).

    ``codes``: the exit codes allowed (a hostile target must give 2).
    """
    started = time.monotonic()
    result = runner.invoke(app, ["plan", "--policy", str(policy), "--target", str(target)])
    seconds = time.monotonic() - started
    STATS.record(kind, seconds, case)
    err = result.stderr.splitlines()
    breaches = []
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        breaches.append(f"exception {type(result.exception).__name__}: {result.exception}")
    if result.exit_code not in codes:
        breaches.append(f"exit {result.exit_code}")
    if result.exit_code != 0 and not err:
        breaches.append(f"exit {result.exit_code} without a word on stderr")
    for line in err:
        if not _named(line, (policy, target)):
            breaches.append(f"stderr line names no file: {line[:200]!r}")
    if seconds > CASE_SECONDS:
        breaches.append(f"took {seconds:.1f} s")
    return [f"{case}: {breach}" for breach in breaches]


def crashed(breaches: list[str]) -> list[str]:
    """Count ``breaches`` as crashes in the run's figures and return them."""
    STATS.crashes.extend(breaches)
    return breaches
