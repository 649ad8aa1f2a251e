"""Reads of the models service (docs/style.md): sampling progress per round, failures,
flagged samples and live turns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q, QuerySet

from annotation.models import Comparison, Project, Round, Sample
from models_service.models import LiveTurn, ModelVersion, SamplingFailure, SamplingJob


@dataclass
class RoundProgress:
    round: Round
    jobs: list[SamplingJob] = field(default_factory=list)
    total: int = 0
    sampled: int = 0
    failed: int = 0
    comparisons: int = 0
    # Filled in by the sampling panel: the first failures to list, and how many more there are.
    failures_shown: list[SamplingFailure] = field(default_factory=list)
    failures_more: int = 0

    @property
    def active(self) -> bool:
        return any(job.is_active for job in self.jobs)

    @property
    def percent(self) -> int:
        return int(100 * self.sampled / self.total) if self.total else 0

    @property
    def status(self) -> str:
        if not self.jobs:
            return "not_started"
        if self.active:
            return "running"
        return "failed" if self.failed else "done"


def model_version_list() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.select_related("parent").order_by("created_at", "id")


def model_version_get(*, pk: int) -> ModelVersion | None:
    return model_version_list().filter(pk=pk).first()


def model_version_in_use(*, version: ModelVersion) -> bool:
    """A round names it (baseline, candidate, arena), or it has samples, sampling jobs or live turns."""
    pk = version.pk
    return (
        Round.objects.filter(Q(baseline_id=pk) | Q(candidate_id=pk) | Q(arena_versions=pk)).exists()
        or Sample.objects.filter(model_version_id=pk).exists()
        or SamplingJob.objects.filter(model_version_id=pk).exists()
        or LiveTurn.objects.filter(Q(version_a_id=pk) | Q(version_b_id=pk)).exists()
    )


def round_progress(*, round_: Round) -> RoundProgress:
    jobs = list(SamplingJob.objects.filter(round=round_).select_related("model_version").order_by("arm"))
    return RoundProgress(
        round=round_,
        jobs=jobs,
        total=sum(j.total for j in jobs),
        sampled=sum(j.sampled for j in jobs),
        failed=sum(j.failed for j in jobs),
        comparisons=Comparison.objects.filter(round=round_).count(),
    )


def project_sampling_progress(*, project: Project) -> list[RoundProgress]:
    """Progress of every round of the project that the platform samples, newest first."""
    rounds = (
        Round.objects.filter(project=project, sampling_jobs__isnull=False)
        .distinct()
        .select_related("baseline", "candidate")
        .order_by("-number")
    )
    return [round_progress(round_=r) for r in rounds]


def sampling_failure_list(*, round_: Round) -> QuerySet[SamplingFailure]:
    return (
        SamplingFailure.objects.filter(job__round=round_)
        .select_related("job__model_version", "prompt")
        .order_by("job__arm", "prompt_id")
    )


def flagged_sample_list(*, project: Project) -> QuerySet[Sample]:
    """Samples held back for naming a model or vendor, not yet released."""
    return (
        Sample.objects.filter(prompt__project=project, identity_flagged=True, identity_released=False)
        .select_related("model_version", "prompt")
        .order_by("id")
    )


def sample_get(*, pk: int) -> Sample | None:
    return Sample.objects.select_related("prompt__project", "model_version").filter(pk=pk).first()


def live_turn_get(*, pk: int, annotator: Any, project: Project) -> LiveTurn | None:
    """One of ``annotator``'s own live turns in ``project``; anyone else's reads as missing."""
    return (
        LiveTurn.objects.select_related("prompt", "round", "project", "version_a", "version_b", "parent")
        .filter(pk=pk, annotator=annotator, project=project)
        .first()
    )
