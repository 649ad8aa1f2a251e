"""URLs of the annotation API, mounted at /api/v1/ (config/api_urls.py)."""

from __future__ import annotations

from django.urls import path

from annotation import annotate_apis, apis

app_name = "annotation_api"

urlpatterns = [
    path("projects/", apis.ProjectListApi.as_view(), name="project-list"),
    path("projects/<slug:slug>/", apis.ProjectDetailApi.as_view(), name="project-detail"),
    path("projects/<slug:slug>/prompts/", apis.PromptListApi.as_view(), name="prompt-list"),
    path("rounds/<int:pk>/", apis.RoundDetailApi.as_view(), name="round-detail"),
    path("rounds/<int:pk>/comparisons/", apis.ComparisonListApi.as_view(), name="comparison-list"),
    path("rounds/<int:pk>/judgments/", apis.JudgmentListApi.as_view(), name="judgment-list"),
    path("prompts/<int:pk>/", apis.PromptDetailApi.as_view(), name="prompt-detail"),
    path("comparisons/<int:pk>/", apis.ComparisonDetailApi.as_view(), name="comparison-detail"),
    # The annotators' own endpoints: screen terms, no model names.
    path("projects/<slug:slug>/assignments/next/", annotate_apis.AssignmentNextApi.as_view(), name="assignment-next"),
    path("assignments/<int:pk>/judgment/", annotate_apis.JudgmentSubmitApi.as_view(), name="judgment-submit"),
    path("assignments/<int:pk>/skip/", annotate_apis.AssignmentSkipApi.as_view(), name="assignment-skip"),
]
