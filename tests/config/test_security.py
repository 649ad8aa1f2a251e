"""Browser security and the settings behind it (config/settings.py, config/urls.py,
docs/security.md): the Content-Security-Policy on every page, templates that keep to it,
and the lockout and e-mail settings read from the environment."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.config.test_settings import PROD, django

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = sorted((ROOT / "templates").rglob("*.html"))


def directives(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {name: values for name, *values in (part.split() for part in header.split(";") if part.strip())}


def test_every_page_gets_a_policy_with_no_inline_script_style_or_eval(client, lee, project):
    client.force_login(lee)
    for url in ("/login/", "/", f"/projects/{project.slug}/", "/password-reset/", "/api/docs/", "/api/v1/tokens/"):
        policy = directives(client.get(url))
        assert policy["default-src"] == ["'self'"], url
        assert policy["script-src"] == ["'self'"], url
        assert policy["style-src"] == ["'self'"], url
        assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"], url
        assert policy["base-uri"] == ["'none'"] and policy["form-action"] == ["'self'"], url


def test_the_json_api_and_error_pages_get_the_policy_too(client, db):
    assert directives(client.get("/api/v1/me/"))["script-src"] == ["'self'"]
    assert directives(client.get("/no-such-page/"))["script-src"] == ["'self'"]


def test_only_redoc_may_use_inline_styles_and_a_blob_worker(client, maya):
    client.force_login(maya)
    policy = directives(client.get("/api/redoc/"))
    assert policy["style-src"] == ["'self'", "'unsafe-inline'"]
    assert policy["worker-src"] == ["'self'", "blob:"]
    assert policy["script-src"] == ["'self'"]


def test_swagger_ui_loads_its_start_up_script_from_a_url_not_inline(client, maya):
    client.force_login(maya)
    page = client.get("/api/docs/").content.decode()
    sources = re.findall(r"<script([^>]*)>", page)
    assert sources and all("src=" in attributes for attributes in sources), sources
    assert "<style" not in page
    script = client.get("/api/docs/?script=")
    assert script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in script.content.decode()


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: str(p.relative_to(ROOT / "templates")))
def test_no_template_has_an_inline_script_event_handler_or_style(template):
    text = re.sub(r"{% comment %}.*?{% endcomment %}|{#.*?#}", "", template.read_text(), flags=re.DOTALL)
    inline_scripts = [
        tag
        for tag in re.findall(r"<script\b[^>]*>", text)
        if "src=" not in tag and 'type="application/json"' not in tag
    ]
    assert not inline_scripts, "move the script to static/js/ (data- attributes or json_script carry its data)"
    assert not re.search(r"<[a-z][^>]*\s(hx-)?on[a-z:-]*\s*=", text), "an inline event handler: bind it from static/js/"
    assert not re.search(r"<[a-z][^>]*\sstyle\s*=", text), "a style attribute: use a class (static/css/)"
    assert not re.search(r"<style\b", text), "a <style> element: move the rules to static/css/"


def test_the_lockout_settings_come_from_the_environment():
    code = "from django.conf import settings as s; print(s.AXES_ENABLED, s.AXES_FAILURE_LIMIT, s.AXES_COOLOFF_TIME, s.AXES_HANDLER)"
    defaults = django("shell", "--no-imports", "-c", code, **PROD)
    assert defaults.returncode == 0, defaults.stderr
    assert defaults.stdout.split() == ["True", "5", "0:15:00", "axes.handlers.database.AxesDatabaseHandler"]
    tuned = django("shell", "--no-imports", "-c", code, LOGIN_FAILURE_LIMIT="10", LOGIN_COOLOFF_MINUTES="60", **PROD)
    assert tuned.stdout.split()[1:3] == ["10", "1:00:00"]


def test_mail_goes_to_the_console_in_development_and_through_smtp_in_production(tmp_path):
    code = "from django.conf import settings as s; print(s.EMAIL_BACKEND, s.EMAIL_HOST, s.EMAIL_PORT, s.EMAIL_USE_TLS)"
    dev = django("shell", "--no-imports", "-c", code, DEBUG="1", VAR_DIR=str(tmp_path))
    assert dev.returncode == 0, dev.stderr
    assert dev.stdout.split()[0] == "django.core.mail.backends.console.EmailBackend"
    prod = django(
        "shell", "--no-imports", "-c", code, EMAIL_HOST="smtp.example.org", EMAIL_PORT="587", EMAIL_USE_TLS="1", **PROD
    )
    assert prod.returncode == 0, prod.stderr
    assert prod.stdout.split() == ["django.core.mail.backends.smtp.EmailBackend", "smtp.example.org", "587", "True"]


@pytest.mark.parametrize(
    "env,message",
    [
        ({"LOGIN_FAILURE_LIMIT": "0"}, "LOGIN_FAILURE_LIMIT=0 must be at least 1"),
        ({"LOGIN_COOLOFF_MINUTES": "soon"}, "LOGIN_COOLOFF_MINUTES='soon' is not an integer"),
        ({"EMAIL_USE_TLS": "1", "EMAIL_USE_SSL": "1"}, "exclude each other"),
        ({"TRUSTED_PROXY_COUNT": "-1"}, "TRUSTED_PROXY_COUNT=-1 must be at least 0"),
    ],
)
def test_a_bad_security_setting_stops_start_up(env, message):
    result = django("check", **{**PROD, **env})
    assert result.returncode != 0
    assert message in result.stderr
