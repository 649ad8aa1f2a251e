"""Pages of the models service: the lead's sampling panel and live mode."""

from django.urls import path

from core.limits import register_id_converter
from models_service import views

register_id_converter()

urlpatterns = [
    path("projects/<slug:slug>/sampling/", views.sampling_panel, name="sampling-panel"),
    path("projects/<slug:slug>/sampling/rounds/<id:number>/start/", views.sampling_start_view, name="sampling-start"),
    path(
        "projects/<slug:slug>/sampling/samples/<id:sample_id>/release/",
        views.sample_release_view,
        name="sample-release",
    ),
    path("projects/<slug:slug>/sampling/live-mode/", views.live_mode_set_view, name="live-mode-set"),
    # Live mode. URLs carry the turn id and a screen side only: never a model or a sample.
    path("live/<slug:slug>/", views.live, name="live"),
    path("live/<slug:slug>/turns/<id:turn_id>/", views.live_turn, name="live-turn"),
    path("live/<slug:slug>/turns/<id:turn_id>/stream/<str:side>/", views.live_stream, name="live-stream"),
    path("live/<slug:slug>/turns/<id:turn_id>/judge/", views.live_judge, name="live-judge"),
    path("live/<slug:slug>/turns/<id:turn_id>/submit/", views.live_submit, name="live-submit"),
]
