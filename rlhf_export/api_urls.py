"""Export API URLs, mounted under /api/v1/ (config/api_urls.py)."""

from __future__ import annotations

from django.urls import path

from core.limits import register_id_converter
from rlhf_export import apis

register_id_converter()

app_name = "rlhf_export_api"

urlpatterns = [
    path("exports/", apis.ExportListApi.as_view(), name="export-list"),
    path("exports/<id:pk>/", apis.ExportDetailApi.as_view(), name="export-detail"),
    path("exports/<id:pk>/cancel/", apis.ExportCancelApi.as_view(), name="export-cancel"),
    path("exports/<id:pk>/files/<path:name>", apis.ExportFileApi.as_view(), name="export-file"),
]
