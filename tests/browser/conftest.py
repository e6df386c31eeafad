"""Fixtures of the browser tests: Playwright (sync API) driving Debian's Chromium (``/usr/bin/chromium``, installed by
scripts/setup.sh; Playwright never downloads a browser) against the app on the local runtime with the scripted model
server (tests/integration/conftest.py ``AppStack``).

Screenshots go to ``tests/browser/output/`` (ignored by git; ``BROWSER_TEST_OUTPUT`` overrides it). Without
``/usr/bin/chromium`` the tests are skipped on a developer machine and FAIL when ``CI`` is set.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run",
                 # a name that is not loopback for the page (so it behaves as in Azure) but reaches the local host
                 "--host-resolver-rules=MAP inbox.test 127.0.0.1"]
NON_LOOPBACK_HOST = "inbox.test"
OUTPUT = Path(os.environ.get("BROWSER_TEST_OUTPUT") or Path(__file__).resolve().parent / "output")


def _need_browser() -> None:
    problem = None
    if not CHROMIUM.exists():
        problem = f"{CHROMIUM} is missing (scripts/setup.sh installs it with apt-get as root)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "the playwright package is missing (requirements-dev.txt)"
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"browser tests need Chromium and Playwright in CI: {problem}")
    pytest.skip(problem)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per test module: Playwright's sync API runs an event loop in the main thread while it
    is open, which would break the later tests of the same process that call asyncio.run (the replay harness)."""
    _need_browser()
    from playwright.sync_api import sync_playwright

    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture()
def new_page(browser) -> Iterator[Any]:
    """``new_page(width=1280, height=900)``: a page in a fresh context (own localStorage); closed after the test."""
    contexts = []

    def make(width: int = 1280, height: int = 900) -> Any:
        context = browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=1)
        context.set_default_timeout(30_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page PNG ``<OUTPUT>/<name>.png`` and print its path."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path
