"""Fixtures of the dashboard's browser tests (one site and one browser per session); the
parts are in dashboard_helpers.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dashboard_helpers import CHROMIUM, Console, LiveSite, chromium_or_skip


# Module scope, not session: Playwright's sync API runs an event loop in this thread while
# it is open, and the asyncio tests that run after this directory need the thread free.
@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSite]:
    chromium_or_skip()
    live = LiveSite(tmp_path_factory.mktemp("site"))
    live.start()
    try:
        yield live
    finally:
        live.stop()


#: Bound on each expectation and action (generous: the suite may run on a loaded machine).
UI_TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium_or_skip()
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=UI_TIMEOUT_MS)

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def console() -> Console:
    return Console()


@pytest.fixture
def page(browser: Any, site: LiveSite, console: Console) -> Iterator[Any]:
    """A fresh browser context (empty localStorage) on the site; after the test, no
    console error or uncaught exception may have happened."""
    context = browser.new_context(base_url=site.base_url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(UI_TIMEOUT_MS)
    pg = context.new_page()
    pg.on("console", lambda m: console.errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: console.errors.append(f"uncaught: {e}"))
    try:
        yield pg
    finally:
        context.close()
    assert console.unexpected() == [], console.unexpected()


@pytest.fixture(scope="session")
def artifact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the browser tests write screenshots: FOTAKIT_ARTIFACT_DIR, else a tmp dir."""
    configured = os.environ.get("FOTAKIT_ARTIFACT_DIR")
    path = Path(configured) if configured else tmp_path_factory.mktemp("artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path
