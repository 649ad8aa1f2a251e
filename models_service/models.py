from __future__ import annotations

from django.db import models
from django.db.models import Q


class Backend(models.TextChoices):
    VLLM = "vllm", "vLLM offline engine"
    OPENAI = "openai", "OpenAI-compatible server"
    TRANSFORMERS = "transformers", "Local transformers model"
    IMPORTED = "imported", "Imported (sampled elsewhere)"


class ModelVersion(models.Model):
    """A checkpoint that answers prompts. ``parent`` is the version it was trained from."""

    name = models.CharField(max_length=200, unique=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    backend = models.CharField(max_length=20, choices=Backend.choices, default=Backend.IMPORTED)
    # Backend-specific settings (engine path, endpoint URL, model dir); validated by the
    # backend's typed schema in models_service, never trusted as free-form.
    config = models.JSONField(default=dict, blank=True)
    default_sampling = models.JSONField(default=dict, blank=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(condition=~Q(name=""), name="modelversion_name_not_empty"),
            models.CheckConstraint(condition=~Q(parent=models.F("id")), name="modelversion_not_own_parent"),
        ]

    def __str__(self) -> str:
        return self.name
