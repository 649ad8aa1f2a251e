"""Named users and a project every test can build on (docs/style.md):
alice and bob annotate, lee leads, maya is the ML engineer, charlie has no role."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from django.db import connection
from rest_framework.test import APIClient

from accounts.roles import Role
from accounts.services import api_token_create, user_create
from annotation.models import RoundStatus
from annotation.services import project_create
from models_service.rounds import round_create
from models_service.services import model_version_get_or_create

PASSWORD = "correct-horse-battery-staple"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(
                pytest.mark.skipif(
                    "postgres" not in __import__("django.conf").conf.settings.DATABASES["default"]["ENGINE"],
                    reason="needs PostgreSQL: set DATABASE_URL=postgres://... (CI does)",
                )
            )


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Cached roles and id ranges are keyed by primary keys, which tests reuse."""
    from django.core.cache import cache

    cache.clear()
    yield


@pytest.fixture
def alice(db):
    return user_create(username="alice", password=PASSWORD, roles=[Role.ANNOTATOR])


@pytest.fixture
def bob(db):
    return user_create(username="bob", password=PASSWORD, roles=[Role.ANNOTATOR])


@pytest.fixture
def lee(db):
    return user_create(username="lee", password=PASSWORD, roles=[Role.LEAD])


@pytest.fixture
def maya(db):
    return user_create(username="maya", password=PASSWORD, roles=[Role.ML_ENGINEER])


@pytest.fixture
def charlie(db):
    """Logged in, with no role at all: may reach nothing but their own account."""
    return user_create(username="charlie", password=PASSWORD)


@pytest.fixture
def project(db, lee):
    return project_create(name="Helpfulness v1", created_by=lee, overlap=1, guidelines="Pick the **better** answer.")


@pytest.fixture
def versions(db):
    return model_version_get_or_create(name="chat-v1"), model_version_get_or_create(name="chat-v2")


@pytest.fixture
def round_(project, versions):
    baseline, candidate = versions
    return round_create(project=project, baseline=baseline, candidate=candidate, status=RoundStatus.OPEN)


def token_client(user) -> APIClient:
    _, key = api_token_create(user=user, name="test")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


@pytest.fixture
def is_postgres() -> bool:
    return connection.vendor == "postgresql"


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def tags_of(html: str) -> list[tuple[str, dict[str, str | None]]]:
    """Every start tag of a page with its attributes, as a browser's parser sees them."""
    parser = _Tags()
    parser.feed(html)
    return parser.tags
