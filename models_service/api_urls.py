"""URLs of the models service's REST API, mounted at /api/v1/ (config/api_urls.py)."""

from __future__ import annotations

from django.urls import path

from core.limits import register_id_converter
from models_service import apis

register_id_converter()

app_name = "models_service_api"

urlpatterns = [
    path("model-versions/", apis.ModelVersionListApi.as_view(), name="model-version-list"),
    path("model-versions/<id:pk>/", apis.ModelVersionDetailApi.as_view(), name="model-version-detail"),
    path("projects/<slug:slug>/rounds/", apis.RoundListApi.as_view(), name="round-list"),
    path("rounds/<id:pk>/open/", apis.RoundOpenApi.as_view(), name="round-open"),
    path("rounds/<id:pk>/close/", apis.RoundCloseApi.as_view(), name="round-close"),
    path("rounds/<id:pk>/build-comparisons/", apis.RoundBuildComparisonsApi.as_view(), name="round-build-comparisons"),
    path("rounds/<id:pk>/sampling/", apis.RoundSamplingApi.as_view(), name="round-sampling"),
    path("rounds/<id:pk>/sampling/config/", apis.RoundSamplingConfigApi.as_view(), name="round-sampling-config"),
    path("rounds/<id:pk>/sampling/failures/", apis.SamplingFailureListApi.as_view(), name="round-sampling-failures"),
    path("projects/<slug:slug>/flagged-samples/", apis.FlaggedSampleListApi.as_view(), name="flagged-samples"),
    path("samples/<id:pk>/release/", apis.SampleReleaseApi.as_view(), name="sample-release"),
]
