"""Pages (templates + htmx), the login pages and the health check; the API lives under /api/v1/."""

from django.contrib.auth import views as auth_views
from django.urls import path

from annotation import views
from core.limits import register_id_converter
from core.views import healthz

register_id_converter()

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", healthz, name="healthz"),  # core/health.py says what it checks
    path(
        "login/",
        auth_views.LoginView.as_view(template_name="registration/login.html", redirect_authenticated_user=True),
        name="login",
    ),
    # Django's LogoutView accepts POST only: a link or an image cannot log anyone out.
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("projects/<slug:slug>/", views.project_detail, name="project-detail"),
    path("projects/<slug:slug>/rounds/<id:number>/pairs/", views.round_pairs, name="round-pairs"),
    # The annotator's workspace. URLs carry the assignment id only: never a sample or a side.
    path("annotate/<slug:slug>/", views.annotate, name="annotate"),
    path("annotate/<slug:slug>/next/", views.annotate_next, name="annotate-next"),
    path(
        "annotate/<slug:slug>/assignments/<id:assignment_id>/submit/",
        views.annotate_submit,
        name="annotate-submit",
    ),
    path("annotate/<slug:slug>/assignments/<id:assignment_id>/skip/", views.annotate_skip, name="annotate-skip"),
]
