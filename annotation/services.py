"""Writes of the annotation domain: projects and rounds (docs/style.md: services write,
selectors read). Judgments have their own module (``annotation.judging``), and so has the
assignment engine (``annotation.assignment``).

What a round does with models - sampling before it opens, pairing sampled answers - is
models_service's (``models_service.rounds``), which builds on the plain operations here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone
from django.utils.text import slugify

from annotation.assignment import open_rounds_key
from annotation.models import Comparison, PairingStrategy, Project, Round, RoundStatus, Sample

if TYPE_CHECKING:
    from models_service.models import ModelVersion


# --- Projects --------------------------------------------------------------------------

PROJECT_EDITABLE_FIELDS = frozenset(
    {
        "name",
        "description",
        "guidelines",
        "overlap",
        "allow_tie",
        "allow_both_bad",
        "allow_cant_judge",
        "require_safety",
        "edit_policy",
        "lease_seconds",
        "gold_rate",
        "identity_terms",
        "is_active",
    }
)


@transaction.atomic
def project_create(*, name: str, created_by: Any = None, slug: str = "", **options: Any) -> Project:
    project = Project(name=name.strip(), slug=slug or slugify(name)[:100], created_by=created_by, **options)
    project.full_clean()
    project.save()
    return project


@transaction.atomic
def project_update(*, project: Project, **fields: Any) -> Project:
    """Change a project's settings. The slug is its address and stays as it is."""
    unknown = set(fields) - PROJECT_EDITABLE_FIELDS
    if unknown:
        # A caller's bug, not a user's mistake: the API's serializers only pass known fields.
        raise TypeError(f"cannot change {', '.join(sorted(unknown))}")
    if "name" in fields:
        fields["name"] = fields["name"].strip()
    for name, value in fields.items():
        setattr(project, name, value)
    project.full_clean()
    if fields:
        project.save(update_fields=list(fields))
    return project


# --- Rounds ----------------------------------------------------------------------------


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
    """Create a round with the next number of its project. ``sampling`` and
    ``arena_versions`` are stored as given; rounds the platform samples are created
    through ``models_service.rounds.round_create``, which checks them."""
    if pairing == PairingStrategy.OLD_VS_NEW and baseline.pk == candidate.pk:
        raise ValidationError("An old-vs-new round needs two different model versions.")
    # Lock the project row so two concurrent creations cannot take the same number.
    Project.objects.select_for_update().filter(pk=project.pk).first()
    number = (project.rounds.aggregate(m=Max("number"))["m"] or 0) + 1
    round_ = Round(
        project=project,
        number=number,
        name=name or f"Round {number}: {baseline.name} vs {candidate.name}",
        baseline=baseline,
        candidate=candidate,
        pairing=pairing,
        status=status,
        opened_at=timezone.now() if status == RoundStatus.OPEN else None,
        sampling=sampling or {},
    )
    round_.full_clean()
    round_.save()
    if arena_versions:
        round_.arena_versions.set(list(arena_versions))
    open_rounds_forget(project.pk)
    return round_


def open_rounds_forget(project_id: int) -> None:
    """Drop the assignment engine's cached list of a project's open rounds: now (this
    transaction's later reads) and after commit (a claim in between may have cached the
    old list again)."""
    cache.delete(open_rounds_key(project_id))
    transaction.on_commit(lambda: cache.delete(open_rounds_key(project_id)))


@transaction.atomic
def round_mark_open(*, round_: Round) -> Round:
    """Open a round for annotation as it is (no sampling: see ``models_service.rounds.round_open``)."""
    if round_.status == RoundStatus.CLOSED:
        raise ValidationError("A closed round cannot be reopened; start a new round.")
    Round.objects.filter(pk=round_.pk).update(status=RoundStatus.OPEN, opened_at=round_.opened_at or timezone.now())
    open_rounds_forget(round_.project_id)
    round_.refresh_from_db()
    return round_


@transaction.atomic
def round_close(*, round_: Round) -> Round:
    Round.objects.filter(pk=round_.pk).update(status=RoundStatus.CLOSED, closed_at=timezone.now())
    open_rounds_forget(round_.project_id)
    round_.refresh_from_db()
    return round_


@transaction.atomic
def round_pair_samples(*, round_: Round, seed_a: int | None = None, seed_b: int | None = None) -> int:
    """Pair the baseline's and the candidate's answers for every prompt that has both.

    A = baseline, B = candidate (sides are randomised per assignment, not here). Prompts
    that already have a comparison in the round are left alone, so this is idempotent.
    Answers that name a model or vendor stay out until a lead releases them. Returns the
    number of comparisons created.
    """
    project = round_.project
    already = set(Comparison.objects.filter(round=round_).values_list("prompt_id", flat=True))

    def first_by_prompt(version_id: int, seed: int | None) -> dict[int, int]:
        qs = Sample.objects.filter(prompt__project=project, model_version_id=version_id).filter(
            Q(identity_flagged=False) | Q(identity_released=True)
        )
        if seed is not None:
            qs = qs.filter(seed=seed)
        chosen: dict[int, int] = {}
        for sample_id, prompt_id in qs.order_by("id").values_list("id", "prompt_id"):
            chosen.setdefault(prompt_id, sample_id)
        return chosen

    a_by_prompt = first_by_prompt(round_.baseline_id, seed_a)
    b_by_prompt = first_by_prompt(round_.candidate_id, seed_b)
    new = [
        Comparison(
            round=round_,
            prompt_id=prompt_id,
            sample_a_id=a_by_prompt[prompt_id],
            sample_b_id=b_by_prompt[prompt_id],
            required_judgments=project.overlap,
        )
        for prompt_id in sorted(a_by_prompt.keys() & b_by_prompt.keys())
        if prompt_id not in already and a_by_prompt[prompt_id] != b_by_prompt[prompt_id]
    ]
    Comparison.objects.bulk_create(new, batch_size=1000)
    return len(new)
