"""URLs of the accounts API, mounted at /api/v1/ (config/api_urls.py)."""

from __future__ import annotations

from django.urls import path

from accounts import apis

app_name = "accounts_api"

urlpatterns = [
    path("me/", apis.MeApi.as_view(), name="me"),
    path("tokens/", apis.TokenListApi.as_view(), name="token-list"),
    path("tokens/<int:pk>/", apis.TokenDetailApi.as_view(), name="token-detail"),
]
