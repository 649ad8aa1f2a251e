from django.contrib import admin

from models_service.models import ModelVersion


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("name", "parent", "backend", "created_at")
    list_filter = ("backend",)
    search_fields = ("name",)
