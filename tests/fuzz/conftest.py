"""The fuzz suite's figures: cases tried, crashes and the slowest case, printed at the end of the run."""

from __future__ import annotations

import pytest

from tests.fuzz.contract import NIGHTLY, SEED, STATS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line of figures, when any fuzz case ran."""
    if not STATS.tried:
        return
    kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(STATS.by_kind.items()))
    seconds, case = STATS.slowest
    terminalreporter.write_line(
        f"fuzz ({'nightly' if NIGHTLY else 'bounded'}, seed {SEED}): {STATS.tried} documents tried ({kinds}); "
        f"{len(STATS.crashes)} crashes; slowest {seconds:.2f} s ({case[:150]})"
    )
