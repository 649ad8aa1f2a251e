from csp.constants import SELF, UNSAFE_INLINE
from csp.decorators import csp_update
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's start-up script from its own URL (?script), not inline.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    # Redoc's bundle writes its styles into <style> elements at run time and runs its search
    # in a worker made from a blob: URL: its page alone allows both (docs/security.md).
    path(
        "api/redoc/",
        csp_update({"style-src": [UNSAFE_INLINE], "worker-src": [SELF, "blob:"]})(
            SpectacularRedocView.as_view(url_name="api-schema")
        ),
        name="api-redoc",
    ),
    path("api/v1/", include("config.api_urls")),
    path("", include("accounts.urls")),
    path("", include("annotation.urls")),
    path("", include("models_service.urls")),
    path("", include("imports.urls")),
    path("", include("insights.urls")),
    path("", include("rlhf_export.urls")),
]

handler404 = "core.api.page_not_found"
handler500 = "core.api.server_error"
