from django.urls import include, path

urlpatterns = [
    path("", include("annotation.api_urls")),
    path("", include("rlhf_export.api_urls")),
    path("", include("models_service.api_urls")),
]
