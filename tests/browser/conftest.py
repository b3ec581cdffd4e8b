"""Headless Chromium driven by Playwright against the real API with its in-process worker."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect

from presto_deck.settings import Settings
from tests.conftest import token_for
from tests.support.running import RunningApi, running_api

CHROMIUM = Path(os.environ.get("PRESTO_TEST_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
#: Slow enough to watch a deck stream in (and to act in the middle), fast enough for CI.
SLIDE_DELAY_MS = 250

expect.set_options(timeout=20_000)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser/" in str(item.path).replace(os.sep, "/") and not CHROMIUM.exists():
            item.add_marker(
                pytest.mark.skip(
                    reason=f"no Chromium at {CHROMIUM} "
                    "(apt-get install -y chromium, or set PRESTO_TEST_CHROMIUM)"
                )
            )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[RunningApi]:
    slow = msgspec.structs.replace(settings, offline_slide_delay_ms=SLIDE_DELAY_MS)
    async with running_api(slow, with_worker=True) as running:
        yield running


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
def expected_console_errors() -> list[str]:
    """Substrings of console errors a test provokes on purpose; any other error fails it."""
    return []


def _watch(page: Page, problems: list[str], expected_console_errors: list[str]) -> None:
    """Collect the page's script errors, and console errors not provoked on purpose."""

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and not any(
            expected in message.text for expected in expected_console_errors
        ):
            problems.append(f"console error: {message.text}")

    page.set_default_timeout(20_000)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("console", on_console)


@pytest.fixture
async def page(
    browser: Browser, app: RunningApi, expected_console_errors: list[str]
) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1366, "height": 860})
    page = await context.new_page()
    problems: list[str] = []
    _watch(page, problems, expected_console_errors)
    try:
        yield page
    finally:
        await context.close()
    assert not problems, problems


@pytest.fixture
async def other_page(page: Page, expected_console_errors: list[str]) -> AsyncIterator[Page]:
    """A second tab beside ``page``, in the same browser context (so with the same token)."""
    other = await page.context.new_page()
    problems: list[str] = []
    _watch(other, problems, expected_console_errors)
    yield other
    assert not problems, problems


@pytest.fixture
def alice_url(app: RunningApi, settings: Settings) -> str:
    """The page as ``presto-deck dev`` prints it: the token in the fragment."""
    return f"{app.url}/#token={token_for(settings, 'alice')}"


def screenshot_path(name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / f"{name}.png"
