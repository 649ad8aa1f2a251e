"""URLs of the REST API, mounted at /api/v1/ (config/api_urls.py)."""

from __future__ import annotations

from django.urls import path

from annotation import apis, dashboard_apis

app_name = "annotation_api"

urlpatterns = [
    path("me/", apis.MeApi.as_view(), name="me"),
    path("tokens/", apis.TokenListApi.as_view(), name="token-list"),
    path("tokens/<int:pk>/", apis.TokenDetailApi.as_view(), name="token-detail"),
    path("model-versions/", apis.ModelVersionListApi.as_view(), name="model-version-list"),
    path("model-versions/<int:pk>/", apis.ModelVersionDetailApi.as_view(), name="model-version-detail"),
    path("projects/", apis.ProjectListApi.as_view(), name="project-list"),
    path("projects/<slug:slug>/", apis.ProjectDetailApi.as_view(), name="project-detail"),
    path("projects/<slug:slug>/rounds/", apis.RoundListApi.as_view(), name="round-list"),
    path("projects/<slug:slug>/prompts/", apis.PromptListApi.as_view(), name="prompt-list"),
    path("projects/<slug:slug>/imports/", apis.ImportApi.as_view(), name="import"),
    path("rounds/<int:pk>/", apis.RoundDetailApi.as_view(), name="round-detail"),
    path("rounds/<int:pk>/open/", apis.RoundOpenApi.as_view(), name="round-open"),
    path("rounds/<int:pk>/close/", apis.RoundCloseApi.as_view(), name="round-close"),
    path("rounds/<int:pk>/build-comparisons/", apis.RoundBuildComparisonsApi.as_view(), name="round-build-comparisons"),
    path("rounds/<int:pk>/comparisons/", apis.ComparisonListApi.as_view(), name="comparison-list"),
    path("rounds/<int:pk>/judgments/", apis.JudgmentListApi.as_view(), name="judgment-list"),
    path("prompts/<int:pk>/", apis.PromptDetailApi.as_view(), name="prompt-detail"),
    path("comparisons/<int:pk>/", apis.ComparisonDetailApi.as_view(), name="comparison-detail"),
    path("projects/<slug:slug>/assignments/next/", apis.AssignmentNextApi.as_view(), name="assignment-next"),
    path("assignments/<int:pk>/judgment/", apis.JudgmentSubmitApi.as_view(), name="judgment-submit"),
    path("assignments/<int:pk>/skip/", apis.AssignmentSkipApi.as_view(), name="assignment-skip"),
    # The dashboard's numbers (leads and ML engineers).
    path("projects/<slug:slug>/stats/history/", dashboard_apis.HistoryApi.as_view(), name="stats-history"),
    path("projects/<slug:slug>/stats/round/", dashboard_apis.RoundStatsApi.as_view(), name="stats-round"),
    path("projects/<slug:slug>/stats/ratings/", dashboard_apis.RatingsApi.as_view(), name="stats-ratings"),
    path("projects/<slug:slug>/stats/agreement/", dashboard_apis.AgreementApi.as_view(), name="stats-agreement"),
    path("projects/<slug:slug>/stats/quality/", dashboard_apis.QualityApi.as_view(), name="stats-quality"),
]
