"""A rolled-back canary explained on one screen, in a real browser (``make demo DEMO_ARGS='--fault-at 50'``).

The sandbox's rollout steps every 6 s; once Envoy runs the 50 % route, v2 refuses every connection, the
controller's connect-errors check fails and the original route is restored. The rollout page must then
show the failure banner with the failing check's numbers (as the API reports them from the stored status)
and the timeline's rollback marker; the fleet page must flag the rollout as needing attention. Both pages
are saved as screenshots (build/screenshots/).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from canary_sandbox.demo import DemoOptions
from tests.browser.world import ROLLOUT, DashboardWorld

pytestmark = pytest.mark.timeout(300)

NS, NAME = ROLLOUT.split("/")
HEADERS = {"X-Canary-Dashboard": "1"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, chromium: str) -> Iterator[DashboardWorld]:
    del chromium  # without a browser the module skips before starting anything
    options = DemoOptions(step_seconds=6, rate=40, timeout_seconds=600)
    with DashboardWorld(options, tmp_path_factory.mktemp("browser-rollback")) as started:
        started.refuse_canary_at(50, 90)
        started.wait_for_phase("RolledBack", 60)
        # The client's work is done: spare the machine its connections while the pages are read.
        assert started.sandbox.load is not None
        started.sandbox.load.stop()
        yield started


def _shown(text: str, value: float) -> bool:
    """Whether ``text`` shows ``value`` as a ratio or a percentage, at any usual precision."""
    candidates = {repr(value), f"{value:g}"}
    for digits in range(5):
        candidates.add(f"{value:.{digits}f}")
        candidates.add(f"{value * 100:.{digits}f}%")
        candidates.add(f"{value * 100:.{digits}f} %")
    return any(re.search(rf"(?<![\d.]){re.escape(c)}(?![\d])", text) for c in candidates)


def _detail(page: Page, world: DashboardWorld) -> dict[str, Any]:
    response = page.request.get(f"{world.url}api/rollouts/{NS}/{NAME}", headers=HEADERS)
    assert response.ok, response.text()
    detail: dict[str, Any] = response.json()
    return detail


def test_the_rollout_page_shows_the_failing_check_value_threshold_and_step(
    world: DashboardWorld, page: Page, screenshots: Path
) -> None:
    page.goto(f"{world.url}#/r/{NS}/{NAME}")
    expect(page.locator(f'#rollout[data-rollout="{ROLLOUT}"]')).to_be_visible()
    banner = page.locator("#failure-banner")
    expect(banner).to_be_visible()
    failure = _detail(page, world)["failure"]
    assert failure is not None, "the API reports no failure for a rolled-back rollout"
    assert failure["check"] == "connect-errors"
    status = world.status()
    assert failure["step"] == status["step"] == "3/4", status
    expect(banner).to_contain_text("connect-errors")
    expect(banner).to_contain_text("3/4")
    text = banner.inner_text()
    assert _shown(text, float(failure["value"])), f"value {failure['value']} not in the banner: {text!r}"
    threshold = failure["threshold"]
    if isinstance(threshold, int | float):
        assert _shown(text, float(threshold)), f"threshold {threshold} not in the banner: {text!r}"
    else:  # a test's description, such as "binomial test at 99.948%"
        assert str(threshold) in text, f"threshold {threshold!r} not in the banner: {text!r}"
    sample = f"{failure['canaryErrors']:g} errors in {failure['canaryConnections']:g} connections"
    assert sample in text, f"sample {sample!r} not in the banner: {text!r}"
    (screenshots / "rollout-rolled-back.png").write_bytes(page.screenshot(full_page=True))


def test_the_timeline_marks_the_rollback_and_every_step_reached(world: DashboardWorld, page: Page) -> None:
    page.goto(f"{world.url}#/r/{NS}/{NAME}")
    expect(page.locator("#timeline")).to_be_visible()
    events = page.locator("ul#timeline-events")
    expect(events.locator('li[data-kind="rollback"]')).not_to_have_count(0)
    kinds = events.locator("li").evaluate_all("items => items.map(item => item.dataset.kind)")
    # Steps at weights 0, 20 and 50 were reached before the rollback.
    assert kinds.count("step") >= 3, kinds
    rollback = events.locator('li[data-kind="rollback"]', has_text="analysis failed at weight 50").first
    expect(rollback).to_contain_text("Progressing → RollingBack")
    expect(rollback).to_contain_text("connect-errors")
    expect(events.locator('li[data-kind="rollback"]', has_text="original route restored")).to_have_count(1)
    expect(events.locator('li[data-kind="check"]').first).to_be_attached()


def test_the_failing_check_panel_shows_its_sample_and_a_promql_link(world: DashboardWorld, page: Page) -> None:
    page.goto(f"{world.url}#/r/{NS}/{NAME}")
    check = page.locator('.check[data-check="connect-errors"]')
    expect(check.locator(".verdict")).to_contain_text("fail")
    expect(check.locator(".sample")).to_contain_text(re.compile(r"\d+ errors? in \d+ connections?"))
    link = check.locator("a.promql").first
    expect(link).to_have_attribute("href", re.compile(r"^http://127\.0\.0\.1:\d+/.*graph"))


def test_the_fleet_flags_the_rolled_back_rollout_as_needing_attention(
    world: DashboardWorld, page: Page, screenshots: Path
) -> None:
    page.goto(world.url)
    row = page.locator(f'table#fleet tr[data-rollout="{ROLLOUT}"]')
    expect(row.locator('[data-col="phase"]')).to_have_text("RolledBack")
    expect(row.locator('[data-col="verdict"]')).to_contain_text("fail")
    expect(page.locator('#counts [data-phase="RolledBack"]')).to_contain_text("1")
    page.locator("#needs-attention").click()
    expect(row).to_be_visible()
    (screenshots / "fleet-rolled-back.png").write_bytes(page.screenshot(full_page=True))
