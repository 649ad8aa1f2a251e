"""What a round does with models: rounds whose versions generate are sampled before they
open, and their comparisons pair the arms' answers. Built on the plain round operations
of ``annotation.services``; the pages and the API create, open and pair rounds here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from annotation import services as annotation_services
from annotation.models import PairingStrategy, Project, Round, RoundStatus
from models_service.arms import round_arms, round_generates
from models_service.models import ModelVersion, SamplingJob
from models_service.sampling import comparisons_build_sampled, sampling_start


@transaction.atomic
def round_create(
    *,
    project: Project,
    baseline: ModelVersion,
    candidate: ModelVersion,
    pairing: str = PairingStrategy.OLD_VS_NEW,
    name: str = "",
    status: str = RoundStatus.DRAFT,
    sampling: dict[str, Any] | None = None,
    arena_versions: Iterable[ModelVersion] = (),
) -> Round:
    """Create a round; its sampling settings (``models_service.arms.RoundSampling``) and
    arena versions are checked now, not when sampling starts. A round created open whose
    versions generate starts sampling at once (``round_open``)."""
    round_ = annotation_services.round_create(
        project=project,
        baseline=baseline,
        candidate=candidate,
        pairing=pairing,
        name=name,
        status=RoundStatus.DRAFT if status == RoundStatus.OPEN else status,
        sampling=sampling,
        arena_versions=arena_versions,
    )
    if sampling or arena_versions:
        round_arms(round_)
    if status == RoundStatus.OPEN:
        round_ = round_open(round_=round_)
    return round_


def _sampling_begin(round_: Round) -> bool:
    """Rounds whose versions generate (vllm, openai, transformers) are sampled before they
    open: status ``sampling`` and jobs queued on the gpu queue; the round opens by itself
    when the last job ends. True when sampling was started here."""
    if round_.pairing == PairingStrategy.IMPORTED or SamplingJob.objects.filter(round=round_).exists():
        return False
    if not round_generates(round_):
        return False
    Round.objects.filter(pk=round_.pk).update(status=RoundStatus.SAMPLING, opened_at=None)
    round_.status = RoundStatus.SAMPLING
    sampling_start(round_=round_)
    return True


@transaction.atomic
def round_open(*, round_: Round) -> Round:
    """Open a round: start sampling when its versions generate, else open it for annotation."""
    if round_.status == RoundStatus.CLOSED:
        raise ValidationError("A closed round cannot be reopened; start a new round.")
    if _sampling_begin(round_):
        annotation_services.open_rounds_forget(round_.project_id)
        round_.refresh_from_db()
        return round_
    return annotation_services.round_mark_open(round_=round_)


def round_build_comparisons(*, round_: Round, seed_a: int | None = None, seed_b: int | None = None) -> int:
    """Pair the round's answers into comparisons (idempotent); returns how many were made.

    Rounds the platform sampled pair their arms' answers (by seed and pairing strategy);
    others pair the baseline's and the candidate's answers already in the project."""
    if SamplingJob.objects.filter(round=round_).exists():
        return comparisons_build_sampled(round_=round_)
    return annotation_services.round_pair_samples(round_=round_, seed_a=seed_a, seed_b=seed_b)
