"""Export pages (ML engineers and leads)."""

from django.urls import path

from rlhf_export import views

urlpatterns = [
    path("exports/", views.export_list, name="export-list"),
    path("exports/<int:pk>/", views.export_detail, name="export-detail"),
    path("exports/<int:pk>/cancel/", views.export_cancel, name="export-cancel"),
    path("exports/<int:pk>/files/<path:name>", views.export_download, name="export-download"),
]
