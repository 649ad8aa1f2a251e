"""Export API URLs, mounted under /api/v1/ (config/api_urls.py)."""

from __future__ import annotations

from django.urls import path

from rlhf_export import apis

app_name = "rlhf_export_api"

urlpatterns = [
    path("exports/", apis.ExportListApi.as_view(), name="export-list"),
    path("exports/<int:pk>/", apis.ExportDetailApi.as_view(), name="export-detail"),
    path("exports/<int:pk>/cancel/", apis.ExportCancelApi.as_view(), name="export-cancel"),
    path("exports/<int:pk>/files/<path:name>", apis.ExportFileApi.as_view(), name="export-file"),
]
