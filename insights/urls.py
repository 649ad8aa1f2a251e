"""The lead dashboard: win rates, ratings, agreement, quality (leads and ML engineers)."""

from django.urls import path

from insights import views

urlpatterns = [
    path("projects/<slug:slug>/dashboard/", views.dashboard, name="dashboard"),
    path("projects/<slug:slug>/dashboard/sections/<slug:section>/", views.dashboard_section, name="dashboard-section"),
    path("projects/<slug:slug>/dashboard/<slug:table>.csv", views.dashboard_csv, name="dashboard-csv"),
]
