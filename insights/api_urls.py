"""URLs of the statistics API, mounted at /api/v1/ (config/api_urls.py)."""

from __future__ import annotations

from django.urls import path

from insights import apis

app_name = "insights_api"

urlpatterns = [
    path("projects/<slug:slug>/stats/history/", apis.HistoryApi.as_view(), name="stats-history"),
    path("projects/<slug:slug>/stats/round/", apis.RoundStatsApi.as_view(), name="stats-round"),
    path("projects/<slug:slug>/stats/ratings/", apis.RatingsApi.as_view(), name="stats-ratings"),
    path("projects/<slug:slug>/stats/agreement/", apis.AgreementApi.as_view(), name="stats-agreement"),
    path("projects/<slug:slug>/stats/quality/", apis.QualityApi.as_view(), name="stats-quality"),
]
