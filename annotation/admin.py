from __future__ import annotations

from typing import Any

from django.contrib import admin

from annotation.models import (
    Assignment,
    Comparison,
    Edit,
    Judgment,
    Project,
    Prompt,
    Round,
    Sample,
)


class FixedOnceCreated(admin.ModelAdmin):
    """Fields that place a row (its round, prompt, answers, version) are shown, not
    edited, once it exists: judgments were made on it as it is, and the database refuses
    to move a judged row anyway (insights/triggers.py, install_guards)."""

    fixed_fields: tuple[str, ...] = ()

    def get_readonly_fields(self, request: Any, obj: Any = None) -> tuple[str, ...]:
        fields = tuple(super().get_readonly_fields(request, obj))
        return fields + self.fixed_fields if obj is not None else fields


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "overlap", "edit_policy", "require_safety", "is_active", "created_at")
    list_filter = ("is_active", "edit_policy", "require_safety")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}


@admin.register(Round)
class RoundAdmin(FixedOnceCreated):
    fixed_fields = ("project",)
    list_display = ("__str__", "project", "number", "baseline", "candidate", "pairing", "status", "opened_at")
    list_filter = ("status", "pairing", "project")
    list_select_related = ("project", "baseline", "candidate")


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ("id", "__str__", "project", "tags", "turns", "source", "created_at")
    list_filter = ("project", "turns")
    search_fields = ("external_id", "content_hash")
    readonly_fields = ("content_hash",)
    list_select_related = ("project",)


@admin.register(Sample)
class SampleAdmin(FixedOnceCreated):
    fixed_fields = ("prompt", "model_version")
    list_display = ("id", "prompt_id", "model_version", "seed", "completion_tokens", "identity_flagged", "created_at")
    list_filter = ("model_version", "identity_flagged", "identity_released")
    readonly_fields = ("text_hash",)
    raw_id_fields = ("prompt",)
    list_select_related = ("model_version",)


@admin.register(Comparison)
class ComparisonAdmin(FixedOnceCreated):
    fixed_fields = ("round", "prompt", "sample_a", "sample_b")
    list_display = ("id", "round", "prompt_id", "judgment_count", "required_judgments", "is_gold")
    list_filter = ("round", "is_gold")
    raw_id_fields = ("prompt", "sample_a", "sample_b")
    list_select_related = ("round",)


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ("id", "comparison_id", "annotator", "left", "status", "leased_at", "lease_expires_at")
    list_filter = ("status",)
    raw_id_fields = ("comparison", "annotator")


class EditInline(admin.StackedInline):
    model = Edit
    extra = 0
    raw_id_fields = ("base_sample",)


@admin.register(Judgment)
class JudgmentAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "comparison_id",
        "annotator",
        "preferred",
        "strength",
        "safety",
        "left",
        "source",
        "created_at",
    )
    list_filter = ("preferred", "strength", "safety", "source")
    raw_id_fields = ("comparison", "annotator", "assignment")
    inlines = [EditInline]
