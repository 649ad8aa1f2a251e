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
import time
from pathlib import Path
from typing import Any

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


# Every page reports what the Content-Security-Policy refused, as an event in the page
# (a script here, injected by the browser itself, so the policy does not block it).
REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolation([e.violatedDirective, e.blockedURI, e.sourceFile + ":" + e.lineNumber, e.sample].join(" "));
});
"""


@pytest.fixture
def page(browser):
    """A fresh browser context (no cookies) with its JavaScript errors collected in ``page.js_errors``
    and what the Content-Security-Policy refused in ``page.csp_violations``.

    A test fails on any CSP violation: the check runs when the test is done, whatever it checked
    itself (the policy is config/settings.py's, docs/security.md). A test that expects one names
    it (the blocked address) in ``page.csp_expected``."""
    context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="en-GB")
    violations: list[str] = []

    def report(text: str) -> None:  # a Python function: Playwright cannot expose a bound builtin
        violations.append(text)

    context.expose_function("__cspViolation", report)
    context.add_init_script(REPORT_CSP_VIOLATIONS)
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    def console(message) -> None:
        if message.type == "error":
            errors.append(message.text)
            if "Content Security Policy" in message.text:  # Chromium's own report, workers included
                violations.append(message.text)

    page.on("console", console)
    page.js_errors = errors
    page.csp_violations = violations
    page.csp_expected = []
    yield page
    try:
        page.evaluate("0")  # a round trip delivers the events still on their way
    except Exception:
        pass  # the page may be gone (closed or crashed): what arrived is checked
    context.close()
    unexpected = [v for v in violations if not any(allowed in v for allowed in page.csp_expected)]
    assert not unexpected, "Content-Security-Policy violations:\n" + "\n".join(unexpected)


def wait_until(page, expression: str, arg: Any = None, *, timeout: float = 15_000) -> Any:
    """``page.wait_for_function`` for pages under our Content-Security-Policy: Playwright
    compiles that one's predicate with eval inside the page, which the policy refuses
    (script-src without 'unsafe-eval'). ``page.evaluate`` goes through the DevTools
    protocol, which the policy does not govern, so it is polled instead."""
    deadline = time.monotonic() + timeout / 1000
    while True:
        value = page.evaluate(expression, arg)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout / 1000:.0f} s: {expression}")
        page.wait_for_timeout(50)


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
