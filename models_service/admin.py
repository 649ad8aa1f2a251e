from django.contrib import admin

from models_service.models import LiveTurn, ModelVersion, SamplingFailure, SamplingJob


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("name", "parent", "backend", "created_at")
    list_filter = ("backend",)
    search_fields = ("name",)


class SamplingFailureInline(admin.TabularInline):
    model = SamplingFailure
    fields = ("prompt", "attempts", "retryable", "error", "last_failed_at")
    readonly_fields = fields
    raw_id_fields = ("prompt",)
    extra = 0
    can_delete = False
    max_num = 0


@admin.register(SamplingJob)
class SamplingJobAdmin(admin.ModelAdmin):
    list_display = ("__str__", "model_version", "seed", "status", "sampled", "failed", "total", "runs", "finished_at")
    list_filter = ("status", "round__project")
    list_select_related = ("round", "model_version")
    readonly_fields = ("total", "sampled", "failed", "runs", "started_at", "heartbeat_at", "finished_at", "error")
    inlines = [SamplingFailureInline]


@admin.register(LiveTurn)
class LiveTurnAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "annotator", "round", "created_at", "comparison")
    list_filter = ("project",)
    raw_id_fields = ("prompt", "parent", "sample_a", "sample_b", "comparison", "assignment")
    list_select_related = ("project", "annotator", "round")
