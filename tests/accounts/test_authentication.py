"""API token authentication: the cached look-up never outlives a revocation or a deactivation."""

from __future__ import annotations

from django.core.cache import cache
from rest_framework.test import APIClient

from accounts.authentication import _cache_key, hash_key
from accounts.models import ApiToken
from accounts.services import api_token_create, api_token_revoke


def client_for(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_a_used_token_is_looked_up_from_the_cache_without_a_query(lee, django_assert_num_queries):
    _, key = api_token_create(user=lee, name="cached")
    client = client_for(key)
    assert client.get("/api/v1/me/").status_code == 200
    assert cache.get(_cache_key(hash_key(key))) is not None
    with django_assert_num_queries(0):
        assert client.get("/api/v1/me/").json()["username"] == "lee"


def test_a_revoked_token_is_refused_on_the_very_next_request_although_it_was_cached(lee):
    token, key = api_token_create(user=lee, name="revoked")
    client = client_for(key)
    assert client.get("/api/v1/me/").status_code == 200
    api_token_revoke(token=token)
    assert client.get("/api/v1/me/").status_code == 401


def test_a_token_deleted_in_the_admin_is_refused_at_once(lee):
    token, key = api_token_create(user=lee, name="deleted")
    client = client_for(key)
    assert client.get("/api/v1/me/").status_code == 200
    ApiToken.objects.get(pk=token.pk).delete()
    assert client.get("/api/v1/me/").status_code == 401


def test_a_deactivated_users_cached_token_is_refused_at_once(alice):
    _, key = api_token_create(user=alice, name="alice")
    client = client_for(key)
    assert client.get("/api/v1/me/").status_code == 200
    alice.is_active = False
    alice.save()
    response = client.get("/api/v1/me/")
    assert response.status_code == 401
    assert "Invalid or revoked" in response.json()["detail"]


def test_an_unknown_key_is_refused_and_not_cached(lee):
    response = client_for("pd_not-a-real-key").get("/api/v1/me/")
    assert response.status_code == 401
    assert cache.get(_cache_key(hash_key("pd_not-a-real-key"))) is None
