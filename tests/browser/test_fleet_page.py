"""The fleet page's own behaviour in a real browser, on a synthetic fleet: counts, filters, keyboard, themes.

The product's dashboard server runs over the render benchmark's synthetic data source (60 rows, every
phase; ``benchmarks/dashboard_render.py``), so what the page must show is known row by row without a
cluster: the counts by phase, the "needs attention" filter, the phase filter, reaching a rollout by
keyboard alone, and light and dark colours that follow the system and keep the text readable.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import Any, Literal

import pytest
from playwright.sync_api import Browser, Page, expect

from benchmarks.dashboard_render import serving, synthetic_rows
from controller.dashboard.server import DashboardServer

ROWS = synthetic_rows(60, seed=3)


@pytest.fixture(scope="module")
def server(chromium: str) -> Iterator[DashboardServer]:
    del chromium  # without a browser the module skips before starting anything
    with serving(ROWS, tick_seconds=0.2, keepalive_seconds=0.2) as started:
        yield started


def _open(page: Page, server: DashboardServer) -> None:
    page.goto(server.url)
    expect(page.locator("table#fleet tr[data-rollout]")).to_have_count(len(ROWS))


def test_the_counts_by_phase_are_those_of_the_fleet(server: DashboardServer, page: Page) -> None:
    _open(page, server)
    counts = Counter(row["phase"] for row in ROWS)
    assert len(counts) >= 5, counts  # the synthetic fleet spreads over the phases
    for phase, n in counts.items():
        expect(page.locator(f'#counts [data-phase="{phase}"]')).to_contain_text(re.compile(rf"(?<!\d){n}(?!\d)"))


def test_needs_attention_shows_exactly_the_rows_that_need_it_and_says_why(server: DashboardServer, page: Page) -> None:
    _open(page, server)
    flagged = {f"{row['namespace']}/{row['name']}": row for row in ROWS if row["needsAttention"]}
    assert 0 < len(flagged) < len(ROWS)
    page.locator("#needs-attention").check()
    shown = page.locator("table#fleet tr[data-rollout]")
    expect(shown).to_have_count(len(flagged))
    keys = shown.evaluate_all("rows => rows.map(row => row.dataset.rollout)")
    assert set(keys) == set(flagged)
    first: dict[str, Any] = flagged[keys[0]]
    expect(shown.first).to_contain_text(first["attention"])
    page.locator("#needs-attention").uncheck()
    expect(shown).to_have_count(len(ROWS))


def test_a_phase_count_filters_the_table_to_that_phase(server: DashboardServer, page: Page) -> None:
    _open(page, server)
    rolled_back = [row for row in ROWS if row["phase"] == "RolledBack"]
    assert rolled_back
    page.locator('#counts [data-phase="RolledBack"]').click()
    cells = page.locator('table#fleet tr[data-rollout] [data-col="phase"]')
    expect(cells).to_have_count(len(rolled_back))
    assert set(cells.all_inner_texts()) == {"RolledBack"}


def test_a_rollout_is_reached_by_keyboard_alone(server: DashboardServer, page: Page) -> None:
    _open(page, server)
    focused = ""
    for _ in range(40):  # Tab through the header and the filters to the table
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.closest('tr[data-rollout]')?.dataset.rollout || ''")
        if focused:
            break
    assert focused, "Tab never reaches a row of the fleet table"
    page.keyboard.press("ArrowDown")
    second = page.evaluate("document.activeElement.dataset.rollout")
    assert second, "ArrowDown moves the focus to no row"
    assert second != focused
    page.keyboard.press("Enter")
    namespace, name = second.split("/")
    expect(page).to_have_url(re.compile(rf"#/r/{re.escape(namespace)}/{re.escape(name)}$"))


def _luminance(css_colour: str) -> float:
    """Relative luminance (WCAG) of an ``rgb(...)``/``rgba(...)`` colour."""
    channels = [float(part) / 255 for part in re.findall(r"[\d.]+", css_colour)[:3]]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(browser: Browser, server: DashboardServer, scheme: Literal["light", "dark"]) -> tuple[float, float]:
    context = browser.new_context(color_scheme=scheme)
    try:
        page = context.new_page()
        _open(page, server)
        background, text = page.evaluate(
            """() => { const style = getComputedStyle(document.body);
                       return [style.backgroundColor, style.color]; }"""
        )
        bg, fg = _luminance(background), _luminance(text)
        return bg, (max(bg, fg) + 0.05) / (min(bg, fg) + 0.05)
    finally:
        context.close()


def test_light_and_dark_follow_the_system_and_keep_the_text_readable(browser: Browser, server: DashboardServer) -> None:
    light_background, light_contrast = _contrast(browser, server, "light")
    dark_background, dark_contrast = _contrast(browser, server, "dark")
    assert light_background > 0.6, light_background
    assert dark_background < 0.1, dark_background
    # WCAG AA for body text: a contrast ratio of at least 4.5.
    assert light_contrast >= 4.5, light_contrast
    assert dark_contrast >= 4.5, dark_contrast
