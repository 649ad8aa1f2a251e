"""URLs of the accounts API, mounted at /api/v1/ (config/api_urls.py)."""

from __future__ import annotations

from django.urls import path

from accounts import apis
from core.limits import register_id_converter

register_id_converter()

app_name = "accounts_api"

urlpatterns = [
    path("me/", apis.MeApi.as_view(), name="me"),
    path("tokens/", apis.TokenListApi.as_view(), name="token-list"),
    path("tokens/<id:pk>/", apis.TokenDetailApi.as_view(), name="token-detail"),
]
