"""Reads about people: API tokens."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from accounts.models import ApiToken


def api_token_list(*, user: Any) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user).order_by("-created_at", "-id")


def api_token_get(*, user: Any, pk: int) -> ApiToken | None:
    """One of ``user``'s own tokens; another user's token is as good as missing."""
    return api_token_list(user=user).filter(pk=pk).first()
