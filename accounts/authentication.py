"""API token authentication: ``Authorization: Token <key>`` (or ``Bearer <key>``).

Keys are 40 random URL-safe characters prefixed with ``pd_``; only their SHA-256 is
stored. A plain hash (not a slow KDF) is right here: the key has ~240 bits of
entropy, so there is nothing to brute-force, and the lookup stays one indexed query.

Every annotator request authenticates, so the (token, user) pair is cached by key hash
(Redis in production) for ``TOKEN_CACHE_SECONDS``: building and compiling the ORM query
was a fifth of a request's CPU. Revoking a token, saving or deleting its user (a
deactivation) or the token drops the entry at once (``accounts/apps.py``), so the cache never
lets a revoked key or a deactivated user in; the timeout only bounds changes made
behind the ORM's back.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from django.core.cache import cache
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from accounts.models import ApiToken

KEY_PREFIX = "pd_"
TOKEN_CACHE_SECONDS = 60
# Touch last_used_at at most once a minute: no write on every request.
TOUCH_SECONDS = 60


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(30)


def _cache_key(key_hash: str) -> str:
    return f"apitoken:{key_hash}"


def tokens_forget(key_hashes) -> None:
    """Drop cached look-ups of these tokens (revoked, or their user changed)."""
    cache.delete_many([_cache_key(h) for h in key_hashes])


class ApiTokenAuthentication(BaseAuthentication):
    keywords = (b"token", b"bearer")

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() not in self.keywords:
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Authorization header must be 'Token <key>'.")
        try:
            key = parts[1].decode()
        except UnicodeDecodeError as exc:
            raise exceptions.AuthenticationFailed("The token contains invalid characters.") from exc
        key_hash = hash_key(key)
        token = cache.get(_cache_key(key_hash))
        if token is None:
            token = ApiToken.objects.select_related("user").filter(key_hash=key_hash, revoked_at__isnull=True).first()
            if token is None:
                raise exceptions.AuthenticationFailed("Invalid or revoked API token.")
            cache.set(_cache_key(key_hash), token, TOKEN_CACHE_SECONDS)
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("Invalid or revoked API token.")
        now = timezone.now()
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > TOUCH_SECONDS:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
            token.last_used_at = now
            cache.set(_cache_key(key_hash), token, TOKEN_CACHE_SECONDS)
        return token.user, token

    def authenticate_header(self, request) -> str:
        return "Token"


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """Describes ``Authorization: Token <key>`` in the OpenAPI schema."""

    target_class = "accounts.authentication.ApiTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return build_bearer_security_scheme_object(header_name="Authorization", token_prefix="Token")
