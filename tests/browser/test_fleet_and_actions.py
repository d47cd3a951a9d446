"""The local dashboard in a real browser: the fleet lists the sandbox's rollout, and pause/resume work.

Playwright for Python drives Debian's chromium (``executable_path``; no browser download) rather than
Selenium with chromedriver: its locators wait for the page by themselves (no sleeps, no explicit waits per
element), one browser serves many isolated contexts, and the same driver times the render benchmark
(``benchmarks/dashboard_render.py``) and makes HTTP-level requests (``page.request``).

The world is ``make sandbox``'s (the API emulator with the CanaryPolicy resource, real Envoy, Prometheus
and Alertmanager, the load client) with ``canaryctl run`` and ``canaryctl dashboard`` as subprocesses.
Steps last a minute here, so the rollout is still at its first steps while the test acts on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from canary_sandbox.demo import DemoOptions
from tests.browser.world import ROLLOUT, DashboardWorld

pytestmark = pytest.mark.timeout(240)

NS, NAME = ROLLOUT.split("/")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, chromium: str) -> Iterator[DashboardWorld]:
    del chromium  # without a browser the module skips before starting anything
    options = DemoOptions(step_seconds=60, rate=20, timeout_seconds=600)
    with DashboardWorld(options, tmp_path_factory.mktemp("browser-actions")) as started:
        started.wait_for_phase("Progressing", 60)
        yield started


ROW = f'table#fleet tr[data-rollout="{ROLLOUT}"]'


def test_the_fleet_page_lists_the_sandbox_rollout_with_its_phase_and_step(
    world: DashboardWorld, page: Page, screenshots: Path
) -> None:
    page.goto(world.url)
    row = page.locator(ROW)
    expect(row).to_have_count(1)
    status = world.status()
    expect(row.locator('[data-col="phase"]')).to_have_text(status["phase"])
    expect(row.locator('[data-col="step"]')).to_contain_text("/4")
    expect(page.locator('#counts [data-phase="Progressing"]')).to_contain_text("1")
    (screenshots / "fleet-progressing.png").write_bytes(page.screenshot(full_page=True))


def test_a_paste_able_url_opens_the_rollout_page(world: DashboardWorld, page: Page) -> None:
    page.goto(f"{world.url}#/r/{NS}/{NAME}")
    expect(page.locator(f'#rollout[data-rollout="{ROLLOUT}"]')).to_be_visible()
    expect(page.locator("#plan")).to_contain_text("20")
    expect(page.locator("#route-live")).to_contain_text("tcp-echo")


def test_pause_and_resume_from_the_page_reach_the_rollout_and_update_the_fleet_live(
    world: DashboardWorld, browser_pages: tuple[Page, Page]
) -> None:
    fleet, rollout = browser_pages
    fleet.goto(world.url)
    phase_cell = fleet.locator(ROW).locator('[data-col="phase"]')
    expect(phase_cell).to_have_text("Progressing")
    expect(fleet.locator("#live")).to_have_attribute("data-state", "open")

    rollout.goto(f"{world.url}#/r/{NS}/{NAME}")
    rollout.locator('button[data-action="pause"]').click()
    dialog = rollout.locator("dialog#confirm")
    expect(dialog).to_be_visible()
    rollout.locator("button#confirm-yes").click()
    world.wait_for_phase("Paused", 30)
    # The fleet page was not reloaded: the change arrives by the live updates.
    expect(phase_cell).to_have_text("Paused", timeout=15_000)
    expect(fleet.locator("#needs-attention")).to_be_visible()

    rollout.locator('button[data-action="resume"]').click()
    expect(dialog).to_be_visible()
    rollout.locator("button#confirm-yes").click()
    world.wait_for_phase("Progressing", 30)
    expect(phase_cell).to_have_text("Progressing", timeout=15_000)


def test_an_action_cancelled_in_the_confirm_dialog_changes_nothing(world: DashboardWorld, page: Page) -> None:
    page.goto(f"{world.url}#/r/{NS}/{NAME}")
    page.locator('button[data-action="abort"]').click()
    dialog = page.locator("dialog#confirm")
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    page.wait_for_timeout(2000)  # two of the controller's ticks of 0.25 s, and then some: nothing may follow
    assert world.status()["phase"] == "Progressing"
