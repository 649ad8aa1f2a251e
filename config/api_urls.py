from django.urls import include, path

urlpatterns = [
    path("", include("annotation.api_urls")),
]
