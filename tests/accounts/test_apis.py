"""API tokens are managed from a logged-in browser session (accounts/apis.py,
accounts/permissions.py): a token may revoke itself, nothing more."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.models import ApiToken
from accounts.services import api_token_create


def token_holder(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


@pytest.fixture
def siblings(maya):
    """Two of maya's tokens: the one in hand and its sibling."""
    (mine, key), (sibling, _) = api_token_create(user=maya, name="laptop"), api_token_create(user=maya, name="cluster")
    return mine, key, sibling


def test_a_token_cannot_list_its_sibling_tokens(siblings):
    _, key, _ = siblings
    response = token_holder(key).get("/api/v1/tokens/")
    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"
    assert "logged-in browser session" in response.json()["detail"]


def test_a_token_cannot_create_a_token(siblings):
    _, key, _ = siblings
    response = token_holder(key).post("/api/v1/tokens/", {"name": "minted"}, format="json")
    assert response.status_code == 403
    assert "logged-in browser session" in response.json()["detail"]
    assert not ApiToken.objects.filter(name="minted").exists()


def test_a_token_cannot_revoke_its_sibling(siblings):
    _, key, sibling = siblings
    response = token_holder(key).delete(f"/api/v1/tokens/{sibling.pk}/")
    assert response.status_code == 403
    assert response.json() == {
        "detail": "A token may revoke only itself; revoke other tokens from a logged-in browser session."
    }
    sibling.refresh_from_db()
    assert sibling.revoked_at is None


def test_a_token_gets_the_same_refusal_for_another_users_token_or_a_missing_one(siblings, alice):
    _, key, _ = siblings
    others, _ = api_token_create(user=alice, name="alice's")
    holder = token_holder(key)
    answers = {holder.delete(f"/api/v1/tokens/{pk}/").status_code for pk in (others.pk, 999_999)}
    assert answers == {403}  # nothing learnt about which ids exist
    others.refresh_from_db()
    assert others.revoked_at is None


def test_a_token_may_revoke_itself_and_is_refused_afterwards(siblings):
    mine, key, sibling = siblings
    holder = token_holder(key)
    assert holder.delete(f"/api/v1/tokens/{mine.pk}/").status_code == 204
    assert holder.get("/api/v1/me/").status_code == 401
    sibling.refresh_from_db()
    assert sibling.revoked_at is None


def test_a_logged_in_session_lists_creates_and_revokes_tokens(siblings, maya):
    _, _, sibling = siblings
    client = APIClient()
    client.force_login(maya)
    assert [t["name"] for t in client.get("/api/v1/tokens/").json()["results"]] == ["cluster", "laptop"]
    created = client.post("/api/v1/tokens/", {"name": "notebook"}, format="json")
    assert created.status_code == 201 and created.json()["key"].startswith("pd_")
    assert client.delete(f"/api/v1/tokens/{sibling.pk}/").status_code == 204
    sibling.refresh_from_db()
    assert sibling.revoked_at is not None


def test_a_session_needs_the_csrf_token_to_create_or_revoke(siblings, maya):
    _, _, sibling = siblings
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(maya)
    refused = client.post("/api/v1/tokens/", {"name": "forged"}, format="json")
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    assert client.delete(f"/api/v1/tokens/{sibling.pk}/").status_code == 403
    sibling.refresh_from_db()
    assert sibling.revoked_at is None


def test_without_credentials_the_token_endpoints_answer_401(db):
    client = APIClient()
    assert client.get("/api/v1/tokens/").status_code == 401
    assert client.post("/api/v1/tokens/", {"name": "x"}, format="json").status_code == 401
    assert client.delete("/api/v1/tokens/1/").status_code == 401
