"""Fixtures of the browser tests: one chromium per session, a fresh context per test, the screenshot folder.

The browser is Debian's chromium (``make browser-deps``), found on ``PATH`` and driven by Playwright with
``executable_path``; Playwright's own browser download is never used. Without chromium every test here is
skipped and says why.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.support.paths import REPO

# Screenshots of each run (not committed: build/ is ignored); docs/ holds the committed pair.
SCREENSHOTS = REPO / "build" / "screenshots"


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, or a skip naming the make target that installs it."""
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("chromium is not installed (Debian's chromium and chromium-driver: make browser-deps)")
    return path


@pytest.fixture(scope="session")
def browser(chromium: str) -> Iterator[Browser]:
    """One headless chromium for the whole session; tests open their own contexts in it."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A page in a fresh context (no cookies, no storage), closed after the test."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(20_000)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def browser_pages(browser: Browser) -> Iterator[tuple[Page, Page]]:
    """Two pages of one context (one user with two tabs), closed after the test."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(20_000)
    try:
        yield context.new_page(), context.new_page()
    finally:
        context.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """Where this run's screenshots go."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
