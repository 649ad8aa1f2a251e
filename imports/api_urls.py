"""URLs of the imports API, mounted at /api/v1/ (config/api_urls.py)."""

from __future__ import annotations

from django.urls import path

from imports import apis

app_name = "imports_api"

urlpatterns = [
    path("projects/<slug:slug>/imports/", apis.ImportApi.as_view(), name="import"),
]
