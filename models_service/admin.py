"""The admin of the models service. Model versions are written through the services, as
everywhere else (models_service/services.py): the same checks of the outbound policy, of
who may repoint a version and of ``trust_remote_code`` apply here."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from models_service import services
from models_service.models import LiveTurn, ModelVersion, SamplingFailure, SamplingJob


class ModelVersionAdminForm(forms.ModelForm):
    # Set per request by ModelVersionAdmin.get_form: the person saving.
    acting_user: Any = None

    class Meta:
        model = ModelVersion
        fields = ("name", "parent", "backend", "config", "default_sampling", "description")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        stored = ModelVersion.objects.filter(pk=self.instance.pk).first() if self.instance.pk else None
        changed = set(self.changed_data) if stored is not None else {"config"}
        try:
            services.model_version_privileges_check(
                version=stored,
                by=self.acting_user,
                backend=cleaned.get("backend", stored.backend if stored else ""),
                config=cleaned.get("config", stored.config if stored else {}),
                changed=changed,
            )
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                self.add_error(field if field in self.fields else None, messages)
        return cleaned


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    form = ModelVersionAdminForm
    list_display = ("name", "parent", "backend", "created_at")
    list_filter = ("backend",)
    search_fields = ("name",)

    def get_form(self, request: Any, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"acting_user": request.user})

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        readonly = tuple(super().get_readonly_fields(request, obj))
        if obj is not None and not request.user.is_superuser:
            readonly += ("backend",)  # a new version, not a repointed one (models_service/services.py)
        return readonly

    def save_model(self, request: Any, obj: ModelVersion, form: Any, change: bool) -> None:
        fields = {
            name: form.cleaned_data[name]
            for name in form.changed_data
            if name in services.MODEL_VERSION_EDITABLE_FIELDS and name in form.cleaned_data
        }
        if change:
            services.model_version_update(version=obj, by=request.user, **fields)
            return
        created = services.model_version_create(
            name=form.cleaned_data["name"],
            backend=form.cleaned_data.get("backend", obj.backend),
            parent=form.cleaned_data.get("parent"),
            config=form.cleaned_data.get("config") or {},
            default_sampling=form.cleaned_data.get("default_sampling") or {},
            description=form.cleaned_data.get("description", ""),
            by=request.user,
        )
        obj.pk, obj.created_at = created.pk, created.created_at


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
