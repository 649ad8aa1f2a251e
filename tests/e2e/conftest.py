"""Browser tests: a real headless Chromium driven by Playwright's sync API against
pytest-django's ``live_server``.

Playwright's sync API keeps an asyncio loop running in the test's thread, so Django's
guard against database calls from async code (SynchronousOnlyOperation) would fire on
every ORM call made while the browser is open - the test's own and the database
fixtures'. The test code is synchronous, so the guard is lifted with
DJANGO_ALLOW_ASYNC_UNSAFE, but only while the browser lives: set for good at import, it
would leak into the rest of the run (``manage.py check --deploy`` rejects it, async.E001).

Static files: ``live_server`` wraps the app in staticfiles' handler, which serves
``/static/`` from the finders (the source folders), so no collectstatic is needed even
with DEBUG off. The tests check that the CSS and the scripts really loaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser):
    """A fresh browser context (no cookies) with its JavaScript errors collected in ``page.js_errors``."""
    context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="en-GB")
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.js_errors = errors
    yield page
    context.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
