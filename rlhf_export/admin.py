from __future__ import annotations

from django.contrib import admin

from rlhf_export.models import ExportArtifact, ExportJob


class ExportArtifactInline(admin.TabularInline):
    model = ExportArtifact
    extra = 0
    can_delete = False
    readonly_fields = ("name", "role", "split", "rows", "size", "sha256", "storage_name")

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ExportJob)
class ExportJobAdmin(admin.ModelAdmin):
    """Read-only: jobs are started from the export page or the API, which validate them."""

    list_display = (
        "id",
        "project",
        "kind",
        "file_format",
        "text_format",
        "status",
        "rows_total",
        "attempt",
        "created_by",
        "created_at",
        "finished_at",
    )
    list_filter = ("status", "kind", "file_format", "project")
    list_select_related = ("project", "created_by")
    readonly_fields = [f.name for f in ExportJob._meta.fields]
    inlines = [ExportArtifactInline]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
