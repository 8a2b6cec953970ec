"""A real browser for end-to-end tests: Debian's chromium, driven by Playwright's async API.

The browser is never downloaded (`playwright install` cannot reach its CDN from here): it is the
`chromium` package from apt, which tests/install-debian.sh installs during `make test`. Where it
is missing, tests that use these fixtures skip and say how to get it, except under CI=true, where
they fail: make test installs it there, and a green run without its browser tests proves nothing.

These fixtures live outside conftest.py, so a test module opts in with

    pytest_plugins = ["tests.browser"]

which registers the fixtures below with pytest (unlike `from tests.browser import browser`,
which leaves an unused import that the test's `browser` parameter then shadows).
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.support import missing

# Root in a container without user namespaces (so no sandbox) and without a GPU or a large
# /dev/shm; the network is closed, so Chromium must not try to phone home for updates or sync.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


CHROMIUM_MISSING = "chromium is not installed: apt-get install chromium (make test does it as root)"


def chromium_path() -> str | None:
    return shutil.which("chromium")


@asynccontextmanager
async def open_browser() -> AsyncIterator[Browser]:
    """Headless chromium with a throwaway profile; closed, with Playwright's driver, on exit."""
    executable = chromium_path()
    if executable is None:
        missing(CHROMIUM_MISSING)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """One chromium for the whole run: starting it costs about a second."""
    async with open_browser() as opened:
        yield opened


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A page in a context of the test's own, so no cookies or storage leak between tests."""
    context = await browser.new_context()
    try:
        yield await context.new_page()
    finally:
        await context.close()
