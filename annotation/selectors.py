"""Reads of the annotation domain, shared by the REST API and the pages (docs/style.md).

Selectors return querysets or single rows (``None`` when there is none); deciding
what "not found" means for a caller - a 404, an error message - is the caller's job.
List selectors fetch what their callers print in one query (``select_related``) so a
page of results never costs a query per row.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from django.core.cache import cache
from django.db import connection
from django.db.models import BooleanField, Count, F, IntegerField, OuterRef, QuerySet, Subquery, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.roles import Role, user_roles
from annotation.models import Comparison, Judgment, Project, Prompt, Round

# --- Projects --------------------------------------------------------------------------


def user_sees_all_projects(user: Any) -> bool:
    """Leads and ML engineers see every project; annotators only the active ones."""
    return bool(user_roles(user) & {Role.LEAD, Role.ML_ENGINEER})


def project_list(*, user: Any) -> QuerySet[Project]:
    qs = Project.objects.select_related("created_by").order_by("name")
    if not user_sees_all_projects(user):
        qs = qs.filter(is_active=True)
    return qs


def project_get(*, slug: str, user: Any) -> Project | None:
    return project_list(user=user).filter(slug=slug).first()


PROJECT_CACHE_SECONDS = 60


def project_cache_key(slug: str) -> str:
    return f"project:slug:{slug}"


def project_get_cached(*, slug: str, user: Any) -> Project | None:
    """``project_get`` for the annotators' hot endpoints (next, judge), from the cache.

    The project's own row only (no ``created_by``). Saving or deleting a project drops
    the entry (``annotation/apps.py``), so settings a lead changes apply to the next request.
    """
    key = project_cache_key(slug)
    project = cache.get(key)
    if project is None:
        project = Project.objects.filter(slug=slug).first()
        if project is None:
            return None
        cache.set(key, project, PROJECT_CACHE_SECONDS)
    if not project.is_active and not user_sees_all_projects(user):
        return None
    return project


# --- Rounds ----------------------------------------------------------------------------


def _count_per_round(qs: QuerySet, round_path: str) -> Coalesce:
    """COUNT(*) of ``qs`` rows per round as a correlated subquery.

    Subqueries rather than JOIN + COUNT(DISTINCT): joining comparisons and judgments to
    the round multiplies rows, which is slow on big rounds and wrong without DISTINCT.
    """
    counted = qs.filter(**{round_path: OuterRef("pk")}).order_by().values(round_path).annotate(n=Count("*")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


def round_list(*, project: Project | None = None) -> QuerySet[Round]:
    """Rounds with their counts: comparisons, judgments, comparisons that have all their
    judgments, and comparisons held back (an answer names a model, not released yet)."""
    qs = Round.objects.select_related("project", "baseline", "candidate").annotate(
        comparison_count=_count_per_round(Comparison.objects.all(), "round"),
        judgment_count=_count_per_round(Judgment.objects.all(), "comparison__round"),
        comparisons_complete=_count_per_round(
            Comparison.objects.filter(judgment_count__gte=F("required_judgments")), "round"
        ),
        comparisons_held=_count_per_round(Comparison.objects.filter(held=True), "round"),
    )
    if project is not None:
        qs = qs.filter(project=project)
    return qs.order_by("project_id", "number")


def round_get(*, pk: int) -> Round | None:
    return round_list().filter(pk=pk).first()


def round_get_by_number(*, project: Project, number: int) -> Round | None:
    return Round.objects.filter(project=project, number=number).first()


# --- Prompts ---------------------------------------------------------------------------


def prompt_list(*, project: Project, tag: str = "") -> QuerySet[Prompt]:
    qs = Prompt.objects.filter(project=project).order_by("id")
    tag = tag.strip().lower()  # imports store tags lower-cased
    if tag:
        if connection.vendor == "postgresql":
            # jsonb @> '["tag"]', which a GIN index on tags can serve.
            qs = qs.filter(tags__contains=[tag])
        else:
            # SQLite has no JSON containment lookup; look inside the array with json_each.
            has_tag = RawSQL(
                'EXISTS (SELECT 1 FROM json_each("annotation_prompt"."tags") WHERE json_each.value = %s)',
                [tag],
                output_field=BooleanField(),
            )
            qs = qs.alias(has_tag=has_tag).filter(has_tag=True)
    return qs


def prompt_get(*, pk: int) -> Prompt | None:
    return Prompt.objects.select_related("project").filter(pk=pk).first()


# --- Comparisons and judgments ---------------------------------------------------------


def comparison_list(*, round_: Round | None = None) -> QuerySet[Comparison]:
    """Comparisons with their prompt and both samples, model versions included (leads and engineers only)."""
    qs = Comparison.objects.select_related("prompt", "sample_a__model_version", "sample_b__model_version").order_by(
        "id"
    )
    if round_ is not None:
        qs = qs.filter(round=round_)
    return qs


def comparison_get(*, pk: int) -> Comparison | None:
    return comparison_list().filter(pk=pk).first()


def judgment_list(*, round_: Round, since: datetime | None = None) -> QuerySet[Judgment]:
    """A round's judgments in sample terms, oldest first; ``since`` keeps those created at or after it."""
    qs = (
        Judgment.objects.filter(comparison__round=round_)
        .select_related("annotator", "comparison", "edit")
        .order_by("created_at", "id")
    )
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    return qs


# --- Annotation --------------------------------------------------------------------------


_PAIR_SQL = (
    "SELECT a.id, a.left, a.lease_expires_at, p.messages, sa.text, sb.text "
    "FROM annotation_assignment a "
    "JOIN annotation_comparison c ON c.id = a.comparison_id "
    "JOIN annotation_prompt p ON p.id = c.prompt_id "
    "JOIN annotation_sample sa ON sa.id = c.sample_a_id "
    "JOIN annotation_sample sb ON sb.id = c.sample_b_id "
    "WHERE a.id = %s"
)


def pair_for_annotator(*, pk: int) -> dict[str, Any] | None:
    """The annotator's pair as they see it: prompt, and the two answers by screen side.

    Plain SQL: it runs once per pair handed out, and building the equivalent ORM query
    cost more CPU than the database spent answering it. Nothing returned names a model,
    a sample or which answer is A.
    """
    with connection.cursor() as cursor:
        cursor.execute(_PAIR_SQL, [pk])
        row = cursor.fetchone()
    if row is None:
        return None
    assignment_id, left, lease_expires_at, messages, text_a, text_b = row
    if isinstance(messages, (str, bytes)):  # SQLite hands JSON back as text
        messages = orjson.loads(messages)
    if isinstance(lease_expires_at, str):  # SQLite hands back text (stored in UTC)
        lease_expires_at = parse_datetime(lease_expires_at)
    if lease_expires_at is not None and timezone.is_naive(lease_expires_at):
        lease_expires_at = lease_expires_at.replace(tzinfo=UTC)
    left_text, right_text = (text_a, text_b) if left == "A" else (text_b, text_a)
    return {
        "assignment": assignment_id,
        "lease_expires_at": lease_expires_at,
        "prompt": [{"role": m["role"], "content": m["content"]} for m in messages],
        "left": left_text,
        "right": right_text,
    }


def judged_today_count(*, annotator: Any) -> int:
    midnight = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    return Judgment.objects.filter(annotator=annotator, created_at__gte=midnight).count()
