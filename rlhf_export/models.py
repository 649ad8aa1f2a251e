"""Export jobs and the files they produce (docs/architecture.md).

A job is claimed by one worker at a time with a conditional update on ``status`` and
``attempt`` (docs/style.md); the worker bumps ``heartbeat_at`` after every batch, so a
job whose worker died (SIGKILL, lost machine) can be claimed again once its heartbeat
is older than ``EXPORT_STALE_SECONDS``. ``source_state`` pins what the first attempt
saw (highest judgment id, excluded annotators): a retry produces the same bytes.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class ExportKind(models.TextChoices):
    REWARD_MODEL = "reward_model", "Reward-model pairs"
    DPO = "dpo", "DPO pairs"
    SFT = "sft", "SFT from edits"
    LLAMA3 = "llama3", "Llama 3 expansion (edited > chosen > rejected)"
    RAW = "raw", "Raw judgments"


class FileFormat(models.TextChoices):
    JSONL = "jsonl", "JSON Lines"
    PARQUET = "parquet", "Parquet"


class TextFormat(models.TextChoices):
    # TRL's two formats (trl/docs/source/dataset_formats.md).
    STANDARD = "standard", "Standard (plain text)"
    CONVERSATIONAL = "conversational", "Conversational (message lists)"


class ExportStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINISHED_STATUSES = (ExportStatus.SUCCEEDED, ExportStatus.FAILED, ExportStatus.CANCELLED)


class ExportJob(models.Model):
    project = models.ForeignKey("annotation.Project", on_delete=models.CASCADE, related_name="export_jobs")
    kind = models.CharField(max_length=20, choices=ExportKind.choices)
    file_format = models.CharField(max_length=10, choices=FileFormat.choices, default=FileFormat.PARQUET)
    text_format = models.CharField(max_length=20, choices=TextFormat.choices, default=TextFormat.STANDARD)
    # Validated by rlhf_export.schemas.ExportFilters / ExportOptions, stored normalised.
    filters = models.JSONField(default=dict, blank=True)
    options = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=ExportStatus.choices, default=ExportStatus.PENDING)
    # Judgments read so far out of ``judgments_total`` (the progress bar).
    judgments_done = models.PositiveBigIntegerField(default=0)
    judgments_total = models.PositiveBigIntegerField(default=0)
    rows_total = models.PositiveBigIntegerField(default=0)
    rows_train = models.PositiveBigIntegerField(default=0)
    rows_test = models.PositiveBigIntegerField(default=0)
    # Why rows were left out, by reason (ties, below min strength, duplicates, ...).
    counts = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    source_state = models.JSONField(default=dict, blank=True)
    attempt = models.PositiveIntegerField(default=0)
    storage_prefix = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="export_jobs"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(judgments_done__lte=models.F("judgments_total")) | Q(judgments_total=0),
                name="exportjob_progress_within_total",
            ),
            models.CheckConstraint(
                condition=Q(rows_total=models.F("rows_train") + models.F("rows_test")),
                name="exportjob_rows_add_up",
            ),
        ]
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="exportjob_status")]

    def __str__(self) -> str:
        return f"Export #{self.pk} ({self.get_kind_display()}, {self.get_file_format_display()})"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def can_cancel(self) -> bool:
        return self.status in (ExportStatus.PENDING, ExportStatus.RUNNING)

    @property
    def percent(self) -> int:
        if self.status == ExportStatus.SUCCEEDED:
            return 100
        if not self.judgments_total:
            return 0
        return min(99, int(100 * self.judgments_done / self.judgments_total))


class ArtifactRole(models.TextChoices):
    DATA = "data", "Data shard"
    MANIFEST = "manifest", "Manifest"
    CARD = "card", "Dataset card"


class ExportArtifact(models.Model):
    """One file of a finished export: a data shard, ``manifest.json`` or ``README.md``."""

    job = models.ForeignKey(ExportJob, on_delete=models.CASCADE, related_name="artifacts")
    name = models.CharField(max_length=200, help_text="Path inside the export, e.g. data/train-00000-of-00001.parquet")
    role = models.CharField(max_length=10, choices=ArtifactRole.choices, default=ArtifactRole.DATA)
    split = models.CharField(max_length=10, blank=True)
    storage_name = models.CharField(max_length=500, help_text="Name in the storage backend.")
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    rows = models.PositiveBigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["job", "id"]
        constraints = [models.UniqueConstraint(fields=["job", "name"], name="exportartifact_unique_name")]

    def __str__(self) -> str:
        return self.name
