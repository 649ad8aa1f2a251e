"""Every page, as each role, under the Content-Security-Policy (config/settings.py,
docs/security.md): each answers with the policy, and the browser refuses nothing on any
of them (the shared ``page`` fixture fails a test on any violation, tests/e2e/conftest.py).

Logins go through the login page with the lockout on, as in production.
"""

from __future__ import annotations

import pytest

from accounts.services import user_create
from annotation.models import Project
from demo.seed import demo_seed_history
from rlhf_export.services import export_job_create
from tests.e2e.conftest import CHROMIUM, wait_until

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"needs Chromium at {CHROMIUM} (apt-get install chromium)"),
    pytest.mark.django_db(transaction=True),
]

PASSWORD = "a-demo-password-for-tests"
STRICT = {"script-src": ["'self'"], "style-src": ["'self'"], "default-src": ["'self'"], "object-src": ["'none'"]}


@pytest.fixture(autouse=True)
def _production_like(settings, tmp_path):
    settings.AXES_ENABLED = True
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.EXPORT_WORK_DIR = tmp_path / "work"
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"}}


@pytest.fixture
def demo(db):
    demo_seed_history(password=PASSWORD)


def policy_of(response) -> dict[str, list[str]]:
    header = response.headers.get("content-security-policy")
    assert header, f"no Content-Security-Policy on {response.url}"
    directives = (part.split() for part in header.split(";") if part.strip())
    return {name: values for name, *values in directives}


def visit(page, url: str, *, status: int = 200, expect: dict[str, list[str]] = STRICT) -> None:
    response = page.goto(url)
    assert response is not None and response.status == status, (url, response and response.status)
    policy = policy_of(response)
    for directive, values in expect.items():
        assert policy.get(directive) == values, (url, directive, policy.get(directive))
    page.wait_for_load_state("networkidle")  # htmx fragments loaded on page load are in


def log_in(page, base: str, username: str, path: str = "/login/") -> None:
    visit(page, base + path)
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.press("#id_password", "Enter")
    page.wait_for_load_state("networkidle")
    assert "/login/" not in page.url, page.content()


def test_the_pages_before_logging_in_keep_to_the_policy(live_server, page, demo):
    base = live_server.url
    visit(page, f"{base}/login/")
    page.click("text=Forgot your password?")
    page.fill("#id_email", "lee@example.com")
    page.press("#id_email", "Enter")
    page.wait_for_url(f"{base}/password-reset/sent/")
    visit(page, f"{base}/password-reset/MQ/not-a-token/", status=200)
    assert page.is_visible("text=This link is not valid")
    visit(page, f"{base}/password-reset/done/")
    visit(page, f"{base}/no-such-page/", status=404)
    visit(page, f"{base}/admin/login/")

    # A lockout answers with the login page, under the same policy.
    visit(page, f"{base}/login/")
    for _ in range(5):
        page.fill("#id_username", "mallory")
        page.fill("#id_password", "guess")
        with page.expect_navigation() as navigation:
            page.press("#id_password", "Enter")
    assert navigation.value.status == 429
    assert policy_of(navigation.value)["script-src"] == ["'self'"]
    assert page.is_visible("text=Too many failed logins")


def test_an_annotators_pages_keep_to_the_policy(live_server, page, demo):
    base = live_server.url
    log_in(page, base, "alice")
    visit(page, f"{base}/")
    visit(page, f"{base}/annotate/demo/")
    wait_until(page, "document.getElementById('workspace').dataset.prefetch === 'ready'")
    assert page.locator("#pair-slot [data-pair-root]").count() == 1


def test_a_leads_pages_keep_to_the_policy(live_server, page, demo):
    base = live_server.url
    log_in(page, base, "lee")
    for path in ("/", "/projects/demo/", "/projects/demo/rounds/1/pairs/", "/import/", "/exports/"):
        visit(page, base + path)
    visit(page, f"{base}/projects/demo/dashboard/")
    page.wait_for_selector("#chart-history[data-drawn='true']")
    # The win matrix is coloured from script (no style attribute in the markup).
    cells = page.locator("table[data-table='win-matrix'] td[data-heat]")
    assert cells.count() > 0
    assert page.evaluate("document.querySelector('td[data-heat]').style.backgroundColor") != ""
    # An htmx poll replaces a section: nothing refused while it swaps and settles.
    page.evaluate(
        "htmx.ajax('GET', document.getElementById('section-ratings').getAttribute('hx-get'),"
        " {target: '#section-ratings', swap: 'outerHTML'})"
    )
    page.wait_for_load_state("networkidle")


def test_an_ml_engineers_pages_and_the_api_docs_keep_to_the_policy(live_server, page, demo, django_user_model):
    base = live_server.url
    maya = django_user_model.objects.get(username="maya")
    job = export_job_create(project=Project.objects.get(slug="demo"), kind="dpo", created_by=maya)
    log_in(page, base, "maya")
    visit(page, f"{base}/exports/")
    visit(page, f"{base}/exports/{job.pk}/")

    visit(page, f"{base}/api/docs/")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "prefdata API" in page.inner_text(".swagger-ui .info .title")

    # Redoc alone may write <style> elements and start a blob: worker (config/urls.py). Its
    # sidebar asks for Redocly's logo from their CDN: refused on purpose (the docs load
    # nothing from another origin), and Redoc then leaves the logo out.
    page.csp_expected.append("https://cdn.redoc.ly/redoc/logo-mini.svg")
    visit(page, f"{base}/api/redoc/", expect={**STRICT, "style-src": ["'self'", "'unsafe-inline'"]})
    page.wait_for_selector("h1:has-text('prefdata API')")

    # The browsable API, where a logged-in user manages API tokens: one is created there.
    visit(page, f"{base}/api/v1/tokens/")
    page.fill("#id__content", '{"name": "laptop"}')
    page.click("#post-generic-content-form button")
    page.wait_for_selector("text=HTTP 201 Created")
    assert '"key": "pd_' in page.inner_text(".response-info")
    visit(page, f"{base}/api/v1/projects/")


def test_a_user_without_a_role_keeps_to_the_policy(live_server, page, db):
    user_create(username="charlie", password=PASSWORD)
    log_in(page, live_server.url, "charlie")
    visit(page, f"{live_server.url}/")


def test_the_admin_pages_keep_to_the_policy(live_server, page, demo):
    root = user_create(username="root", password=PASSWORD, is_staff=True, is_superuser=True)
    base = live_server.url
    log_in(page, base, "root", path="/admin/login/")
    for path in (
        "/admin/",
        "/admin/auth/user/",
        f"/admin/auth/user/{root.pk}/change/",
        "/admin/auth/group/",
        "/admin/accounts/apitoken/",
        "/admin/axes/accessattempt/",
        "/admin/annotation/project/",
    ):
        visit(page, base + path)
