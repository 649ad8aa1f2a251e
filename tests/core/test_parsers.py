"""The API's JSON parser: what no serializer or database could take is the client's 400
(or 413), in JSON, before any view code runs (core/parsers.py)."""

from __future__ import annotations

import json

import pytest

from annotation.models import Project
from core.limits import JSON_MAX_DEPTH
from models_service.models import ModelVersion
from tests.conftest import token_client


def next_url(project: Project) -> str:
    return f"/api/v1/projects/{project.slug}/assignments/next/"


def post_raw(client, url: str, body: bytes | str, content_type: str = "application/json"):
    return client.generic("POST", url, body, content_type=content_type)


@pytest.mark.parametrize("depth", [JSON_MAX_DEPTH + 1, 900, 5_000, 100_000])
def test_a_body_nested_too_deep_is_a_json_400(alice, project, depth):
    response = post_raw(token_client(alice), next_url(project), "[" * depth + "]" * depth)
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/json"
    assert "nest" in response.json()["detail"]


def test_a_body_nested_up_to_the_limit_reaches_the_serializer(alice, project):
    body = {"exclude": [1], "extra": json.loads("[" * (JSON_MAX_DEPTH - 1) + "]" * (JSON_MAX_DEPTH - 1))}
    response = post_raw(token_client(alice), next_url(project), json.dumps(body))
    assert response.status_code == 200, response.content


@pytest.mark.parametrize(
    "body,field",
    [
        ('{"name": "v\\u0000", "backend": "imported"}', "name"),
        ('{"name": "v", "backend": "imported", "config": {"a": ["x\\u0000"]}}', "config.a.0"),
        ('{"name": "v", "backend": "imported", "config": {"k\\u0000": 1}}', "config"),
    ],
)
def test_a_nul_character_anywhere_in_a_json_body_is_a_400_naming_its_field(lee, body, field):
    # PostgreSQL's text and jsonb columns cannot hold one: it used to be a 500 there.
    response = post_raw(token_client(lee), "/api/v1/model-versions/", body)
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert f"{field} " in detail and "NUL character" in detail
    assert not ModelVersion.objects.filter(name__startswith="v").exists()


@pytest.mark.parametrize(
    "body,what",
    [
        ('{"exclude": ["\\ud800"]}', "surrogate"),
        ('{"exclude": [NaN]}', "JSON parse error"),
        (b'{"exclude": ["caf\xe9"]}', "JSON parse error"),
        ('{"exclude": [1', "JSON parse error"),
    ],
)
def test_text_that_is_not_json_or_not_unicode_is_a_json_400(alice, project, body, what):
    response = post_raw(token_client(alice), next_url(project), body)
    assert response.status_code == 400
    assert what in response.json()["detail"]


def test_a_body_larger_than_django_takes_is_a_json_413(alice, project, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = post_raw(token_client(alice), next_url(project), json.dumps({"exclude": [1] * 1000}))
    assert response.status_code == 413
    assert "1,000 bytes" in response.json()["detail"]


def test_a_charset_that_is_no_text_encoding_is_a_json_400(alice, project):
    response = post_raw(token_client(alice), next_url(project), "{}", content_type="application/json; charset=rot13")
    assert response.status_code == 400
    assert "charset" in response.json()["detail"]
