"""Model versions (checkpoints) and the machinery that makes them answer prompts:
sampling jobs per round and arm, the prompts that failed, and live-mode turns.

The annotation app owns prompts, samples and comparisons; these tables only record how
samples came to be (or why they did not).
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q


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
    # backend's typed schema (models_service.backends.CONFIG_SCHEMAS) in clean().
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

    @property
    def generates(self) -> bool:
        return self.backend != Backend.IMPORTED

    def clean(self) -> None:
        # Rules about this row's own fields (docs/style.md): the backend's settings and the
        # default sampling parameters must fit their schemas, field by field.
        from pydantic import ValidationError as PydanticError

        from models_service.backends import (
            CONFIG_SCHEMAS,
            OpenAIConfig,
            SamplingParams,
            pydantic_errors,
        )
        from models_service.outbound import host_policy, url_refusal

        errors: dict[str, list[str]] = {}
        if not isinstance(self.config, dict):
            errors["config"] = ["must be an object"]
        elif self.backend in CONFIG_SCHEMAS:
            try:
                config = CONFIG_SCHEMAS[self.backend].model_validate(self.config)
            except PydanticError as exc:
                errors["config"] = [f"{k}: {'; '.join(v)}" for k, v in pydantic_errors(exc).items()]
            else:
                # Where prompts and the key may go is the operator's call (MODEL_HOSTS_ALLOWED);
                # the backend checks again, address by address, when it connects.
                if isinstance(config, OpenAIConfig):
                    refusal = url_refusal(config.base_url, host_policy())
                    if refusal:
                        errors["config"] = [f"base_url: {refusal}"]
        if not isinstance(self.default_sampling, dict):
            errors["default_sampling"] = ["must be an object"]
        else:
            try:
                SamplingParams.model_validate(self.default_sampling)
            except PydanticError as exc:
                errors["default_sampling"] = [f"{k}: {'; '.join(v)}" for k, v in pydantic_errors(exc).items()]
        if errors:
            raise ValidationError(errors)


class JobStatus(models.TextChoices):
    PENDING = "pending", "Queued"
    RUNNING = "running", "Sampling"
    DONE = "done", "Done"
    FAILED = "failed", "Done with failures"


class SamplingJob(models.Model):
    """One arm of a round: a model version at one seed and set of sampling parameters,
    asked to answer the round's prompts (its share of them, in arena rounds).

    Samples are keyed by (prompt, version, seed), so a rerun or a re-delivered task only
    fills in what is missing. The counters are recomputed from the samples and failures
    after every batch, so they never drift from the rows.
    """

    round = models.ForeignKey("annotation.Round", on_delete=models.CASCADE, related_name="sampling_jobs")
    arm = models.CharField(max_length=20, help_text="A or B (pairwise strategies) or v<id> (arena).")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="sampling_jobs")
    seed = models.BigIntegerField()
    params = models.JSONField(default=dict, blank=True, help_text="Sampling parameters other than the seed.")
    status = models.CharField(max_length=20, choices=JobStatus.choices, default=JobStatus.PENDING)
    total = models.PositiveIntegerField(default=0)
    sampled = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    runs = models.PositiveIntegerField(default=0, help_text="How many times the job was started.")
    error = models.TextField(blank=True, help_text="Why the whole job failed (the backend could not start).")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["round", "arm"]
        constraints = [
            models.UniqueConstraint(fields=["round", "arm"], name="samplingjob_one_per_arm"),
            models.CheckConstraint(condition=Q(sampled__lte=F("total")), name="samplingjob_sampled_within_total"),
        ]

    def __str__(self) -> str:
        return f"{self.round} · arm {self.arm}"

    @property
    def is_active(self) -> bool:
        return self.status in (JobStatus.PENDING, JobStatus.RUNNING)


class SamplingFailure(models.Model):
    """A prompt that a job could not answer, with the last error. Deleted when a later
    attempt succeeds, so what is listed is exactly what is still missing."""

    job = models.ForeignKey(SamplingJob, on_delete=models.CASCADE, related_name="failures")
    prompt = models.ForeignKey("annotation.Prompt", on_delete=models.CASCADE, related_name="+")
    error = models.TextField()
    attempts = models.PositiveIntegerField(default=1)
    retryable = models.BooleanField(default=True)
    first_failed_at = models.DateTimeField(auto_now_add=True)
    last_failed_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["job", "prompt"]
        constraints = [models.UniqueConstraint(fields=["job", "prompt"], name="samplingfailure_one_per_prompt")]

    def __str__(self) -> str:
        return f"Prompt {self.prompt_id} of job {self.job_id}: {self.error[:60]}"


class LiveTurn(models.Model):
    """One turn of a live dialogue: the annotator's prompt, two answers streamed into the
    page, then a comparison judged like any other. ``parent`` is the previous turn,
    whose preferred (or edited) answer continues the dialogue."""

    project = models.ForeignKey("annotation.Project", on_delete=models.CASCADE, related_name="live_turns")
    round = models.ForeignKey("annotation.Round", on_delete=models.CASCADE, related_name="live_turns")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="live_turns")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    prompt = models.ForeignKey("annotation.Prompt", on_delete=models.CASCADE, related_name="+")
    version_a = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    version_b = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    params_a = models.JSONField(default=dict)
    params_b = models.JSONField(default=dict)
    seed_a = models.BigIntegerField()
    seed_b = models.BigIntegerField()
    # Which answer the page shows on the left, decided once when the turn starts.
    left = models.CharField(max_length=1, choices=[("A", "A"), ("B", "B")])
    sample_a = models.ForeignKey(
        "annotation.Sample", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    sample_b = models.ForeignKey(
        "annotation.Sample", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    error_a = models.TextField(blank=True)
    error_b = models.TextField(blank=True)
    comparison = models.ForeignKey(
        "annotation.Comparison", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    assignment = models.ForeignKey(
        "annotation.Assignment", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["annotator", "project", "created_at"], name="liveturn_by_annotator")]

    def __str__(self) -> str:
        return f"Live turn {self.pk} of {self.annotator_id}"
