"""Pages of the imports app."""

from django.urls import path

from imports import views

urlpatterns = [
    path("import/", views.import_start, name="import-start"),
    path("projects/<slug:slug>/import/", views.project_import, name="project-import"),
]
