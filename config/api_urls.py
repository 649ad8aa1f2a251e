from django.urls import include, path

urlpatterns = [
    path("", include("accounts.api_urls")),
    path("", include("annotation.api_urls")),
    path("", include("models_service.api_urls")),
    path("", include("imports.api_urls")),
    path("", include("insights.api_urls")),
    path("", include("rlhf_export.api_urls")),
]
