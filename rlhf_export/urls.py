"""Export pages (ML engineers and leads)."""

from django.urls import path

from core.limits import register_id_converter
from rlhf_export import views

register_id_converter()

urlpatterns = [
    path("exports/", views.export_list, name="export-list"),
    path("exports/<id:pk>/", views.export_detail, name="export-detail"),
    path("exports/<id:pk>/cancel/", views.export_cancel, name="export-cancel"),
    path("exports/<id:pk>/files/<path:name>", views.export_download, name="export-download"),
]
