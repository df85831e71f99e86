"""Real-browser fixtures: Debian's Chromium driven by Playwright from PyPI.

The app runs as a user runs it, ``panel serve apps/projector.py``, in a subprocess with its own
run store; every test gets a fresh browser page at 1400x900. Screenshots go to
``tests/screenshots/`` for a person to look at. Without ``/usr/bin/chromium`` (a developer
machine without it) the tests are skipped; CI installs it, so there they always run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _browser_support import CHROMIUM, CHROMIUM_ARGS, mark_folder, serve_app

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "tests" / "screenshots"


def pytest_collection_modifyitems(items):
    mark_folder(items, Path(__file__).parent, "ui")


@pytest.fixture(scope="session")
def ui_store(tmp_path_factory):
    """A run store shared by the served app and the tests that log tables into it."""
    return tmp_path_factory.mktemp("ui-store") / "embproj-runs"


@pytest.fixture(scope="session")
def served_app(ui_store, numba_warm):
    """``panel serve apps/projector.py`` on a free port; yields its base URL."""
    with serve_app(ui_store) as url:
        yield url


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    # Navigation waits up to 2 minutes (Playwright's default is 30 s): on a machine busy with
    # other work the first page of a fresh server can take that long; waits still fail.
    context.set_default_navigation_timeout(120_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors
    yield page
    context.close()


@pytest.fixture
def screenshot(page, request):
    """``screenshot("name")`` saves a PNG of the page under tests/screenshots/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(name: str) -> Path:
        path = SCREENSHOTS / f"{request.node.name}-{name}.png"
        page.screenshot(path=str(path))
        return path

    return take
