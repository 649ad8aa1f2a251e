"""URLs of the annotation API, mounted at /api/v1/ (config/api_urls.py)."""

from __future__ import annotations

from django.urls import path

from annotation import annotate_apis, apis
from core.limits import register_id_converter

register_id_converter()

app_name = "annotation_api"

urlpatterns = [
    path("projects/", apis.ProjectListApi.as_view(), name="project-list"),
    path("projects/<slug:slug>/", apis.ProjectDetailApi.as_view(), name="project-detail"),
    path("projects/<slug:slug>/prompts/", apis.PromptListApi.as_view(), name="prompt-list"),
    path("rounds/<id:pk>/", apis.RoundDetailApi.as_view(), name="round-detail"),
    path("rounds/<id:pk>/comparisons/", apis.ComparisonListApi.as_view(), name="comparison-list"),
    path("rounds/<id:pk>/judgments/", apis.JudgmentListApi.as_view(), name="judgment-list"),
    path("prompts/<id:pk>/", apis.PromptDetailApi.as_view(), name="prompt-detail"),
    path("comparisons/<id:pk>/", apis.ComparisonDetailApi.as_view(), name="comparison-detail"),
    # The annotators' own endpoints: screen terms, no model names.
    path("projects/<slug:slug>/assignments/next/", annotate_apis.AssignmentNextApi.as_view(), name="assignment-next"),
    path("assignments/<id:pk>/judgment/", annotate_apis.JudgmentSubmitApi.as_view(), name="judgment-submit"),
    path("assignments/<id:pk>/skip/", annotate_apis.AssignmentSkipApi.as_view(), name="assignment-skip"),
]
