"""What a project's dashboard offers to choose from: its rounds (and the one to open on),
its tags, the annotators who judged, the model versions that answered."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models import Max

from annotation.models import Project, Prompt, Round
from insights.cache import Recipe, cached, prompt_changes, recipe
from insights.models import ComparisonTally
from insights.sql import project_annotator_ids, project_tag_values
from models_service.models import ModelVersion


def dashboard_rounds(*, project: Project) -> list[Round]:
    return list(Round.objects.filter(project=project).select_related("baseline", "candidate").order_by("number"))


def default_round(rounds: list[Round]) -> Round | None:
    """The round a dashboard opens on: the latest one with a judgment, else the latest one."""
    judged = set(
        ComparisonTally.objects.filter(round__in=rounds, total__gt=0).values_list("round_id", flat=True).distinct()
    )
    for round_ in reversed(rounds):
        if round_.pk in judged:
            return round_
    return rounds[-1] if rounds else None


@recipe("tags")
def _tags(project_id: int) -> list[str]:
    return project_tag_values(project_id)


def project_tags(*, project: Project) -> list[str]:
    """Every tag of the project's prompts; cached until a prompt is added or retagged."""
    newest = Prompt.objects.filter(project=project).aggregate(m=Max("id"))["m"] or 0
    # Any int will do as a fingerprint: this one moves with either number.
    fingerprint = hash((newest, prompt_changes(project.pk)))
    return cached("tags", project.pk, [], Recipe("tags", {"project_id": project.pk}), fingerprint=fingerprint)


def project_annotators(*, project: Project) -> list[tuple[int, str]]:
    """(id, username) of everyone who judged in the project, for the annotator filter."""
    User = get_user_model()
    ids = project_annotator_ids(project.pk)
    return list(User.objects.filter(pk__in=ids).order_by(User.USERNAME_FIELD).values_list("pk", User.USERNAME_FIELD))


def project_versions(*, project: Project) -> list[str]:
    """Names of the model versions that answer in this project's rounds (for the anchor choice)."""
    ids: set[int] = set()
    for baseline_id, candidate_id in Round.objects.filter(project=project).values_list("baseline_id", "candidate_id"):
        ids.update((baseline_id, candidate_id))
    return list(ModelVersion.objects.filter(pk__in=ids).order_by("created_at", "id").values_list("name", flat=True))
