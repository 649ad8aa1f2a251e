"""Selectors for the lead dashboards: counts aggregated in SQL, statistics on the aggregates.

Every figure on the dashboards comes from a handful of GROUP BY queries over judgments
joined to their comparison (and its two samples, whose model versions say which side is
the round's baseline and which its candidate). No query returns one row per judgment:

- per-prompt verdict counts are grouped a second time into distinct *patterns* with
  their multiplicities (``_patterns``), which is all the prompt bootstrap needs;
- the judgment-level breakdowns (strength, safety, annotator) come from one small cube;
- Bradley-Terry gets battles per (version A, version B, verdict);
- agreement gets per-comparison category counts, grouped again into patterns;
- quality gets one row per annotator.

The statistics (``annotation.stats``) run on these small tables with numpy.

Caching: each result is stored in Django's cache under a key made of what was asked
(project, round, filters), together with a fingerprint of the data: the highest
judgment id and the highest edit id (two index look-ups). A new judgment or edit
changes the fingerprint, so the entry is stale and nothing has to remember to
invalidate it. A stale entry that was quick to compute is recomputed at once; one that
was slow (a million judgments) is served while it is recomputed off the request path
(``_cached``): by a Celery task on the ``default`` queue when a broker is configured (the
web processes keep their CPU for annotators), by a thread in the embedded set-up.
Changes that add no row - a deletion, a changed gold answer - do not move the
fingerprint: they show when the next judgment arrives or the entry expires
(``CACHE_SECONDS``).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time as clock
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import Any, TypeVar

import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from annotation.models import Edit, Judgment, Project, Prompt, Round
from annotation.stats import agreement as agreement_stats
from annotation.stats import bradley_terry
from annotation.stats.quality import AnnotatorFigures, AnnotatorQuality, assess
from annotation.stats.winrate import Counts, Patterns, WinRate, decisive_rate, win_rate
from models_service.models import ModelVersion

CACHE_SECONDS = 3600  # entries are also checked against the data on every read
CACHE_VERSION = 2
SLOW_SECONDS = 0.5
REFRESH_LOCK_SECONDS = 600
BACKGROUND_REFRESH = True
T = TypeVar("T")

OUTCOMES = ("win", "loss", "tie", "both_bad", "cant_judge")
STRENGTH_LABELS = {
    "significantly": "Significantly better",
    "better": "Better",
    "slightly": "Slightly better",
    "negligibly": "Negligibly better / unsure",
    "": "No strength (imported)",
}
SAFETY_LABELS = {
    "chosen_safe": "Preferred safe, other unsafe",
    "both_safe": "Both safe",
    "both_unsafe": "Both unsafe",
    "chosen_unsafe": "Preferred unsafe, other safe",
    "": "Not labelled",
}


@dataclass(frozen=True)
class Filters:
    """What the lead narrowed the dashboard to; every field optional."""

    tag: str = ""
    since: date | None = None
    until: date | None = None  # inclusive
    annotator_id: int | None = None

    def key(self) -> str:
        return json.dumps(self.as_json(), sort_keys=True, separators=(",", ":"))

    @property
    def active(self) -> bool:
        return bool(self.tag or self.since or self.until or self.annotator_id)

    def as_json(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "annotator_id": self.annotator_id,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Filters:
        return cls(
            tag=data.get("tag") or "",
            since=date.fromisoformat(data["since"]) if data.get("since") else None,
            until=date.fromisoformat(data["until"]) if data.get("until") else None,
            annotator_id=data.get("annotator_id"),
        )


# --- Caching ----------------------------------------------------------------------------


def data_fingerprint() -> tuple[int, int]:
    """Highest judgment and edit ids: both only grow, so any new verdict changes this."""
    j = Judgment.objects.aggregate(m=Max("id"))["m"] or 0
    e = Edit.objects.aggregate(m=Max("id"))["m"] or 0
    return (j, e)


@dataclass
class _Entry:
    fingerprint: tuple[int, int]
    value: Any
    seconds: float  # how long computing it took
    computed_at: float


@dataclass(frozen=True)
class Recipe:
    """A report's computation as plain values (kind and JSON arguments), so that a Celery
    worker can run it; calling it computes the report here."""

    kind: str
    args: dict[str, Any]

    def __call__(self) -> Any:
        return _RECIPES[self.kind](**self.args)


def _refresh_in_background(key: str, compute: Recipe, fingerprint: tuple[int, int]) -> None:
    """Recompute a stale entry off the request path (one refresh per key at a time): a
    Celery task where there is a real broker, else a thread of this process."""
    if not settings.CELERY_TASK_ALWAYS_EAGER:
        from annotation.tasks import dashboard_refresh

        dashboard_refresh.delay(key, compute.kind, compute.args, list(fingerprint))
        return

    def run() -> None:
        try:
            refresh(key, compute, fingerprint)
        finally:
            connection.close()  # this thread's own connection

    threading.Thread(target=run, name=f"dashboard-refresh-{key[-8:]}", daemon=True).start()


def refresh(key: str, compute: Callable[[], Any], fingerprint: tuple[int, int]) -> None:
    """Compute and store one entry, then let the next stale read start another refresh."""
    try:
        _store(key, compute, fingerprint)
    finally:
        cache.delete(key + ":refreshing")


def _store(key: str, compute: Callable[[], T], fingerprint: tuple[int, int]) -> T:
    started = clock.perf_counter()
    value = compute()
    cache.set(key, _Entry(fingerprint, value, clock.perf_counter() - started, clock.time()), CACHE_SECONDS)
    return value


def _cached(kind: str, parts: Sequence[Any], compute: Recipe, *, wait: bool = True) -> Any:
    """``compute()``, cached under (kind, parts) and checked against the data fingerprint.

    A fresh entry (same fingerprint) is served as it is. A stale one is recomputed on the
    spot when that was quick (under ``SLOW_SECONDS`` last time), so small projects always
    show the latest judgment. When it was slow - a round of a million judgments - the
    stale numbers are served at once and recomputed in a background thread; the next
    request gets the new ones. A key never computed before makes the request wait - or,
    with ``wait=False`` on a big database (``big_data``), starts the computation in the
    background and raises ``Pending`` so that a page can show a placeholder that polls.
    """
    raw = json.dumps([CACHE_VERSION, kind, *parts], default=str, separators=(",", ":"))
    key = "dash:" + hashlib.sha256(raw.encode()).hexdigest()[:40]
    fingerprint = data_fingerprint()
    entry = cache.get(key)
    if isinstance(entry, _Entry):
        if entry.fingerprint == fingerprint:
            return entry.value
        if entry.seconds >= SLOW_SECONDS and BACKGROUND_REFRESH:
            if cache.add(key + ":refreshing", 1, REFRESH_LOCK_SECONDS):
                _refresh_in_background(key, compute, fingerprint)
            return entry.value
    elif not wait and big_data():
        if cache.add(key + ":refreshing", 1, REFRESH_LOCK_SECONDS):
            _refresh_in_background(key, compute, fingerprint)
        raise Pending(kind)
    return _store(key, compute, fingerprint)


class Pending(Exception):
    """The report is being computed in the background: ask again in a moment."""


BIG_TABLE_ROWS = 200_000


def big_data() -> bool:
    """Whether a report computed from scratch may take seconds: PostgreSQL's own estimate of
    the judgment table's size (``pg_class.reltuples``, no count). SQLite holds small data."""
    if not _postgres():
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = 'annotation_judgment'::regclass")
        row = cursor.fetchone()
    return bool(row and row[0] >= BIG_TABLE_ROWS)


# --- SQL building blocks ------------------------------------------------------------------

_WIN = (
    "((j.preferred = 'A' AND sa.model_version_id = r.candidate_id) "
    "OR (j.preferred = 'B' AND sb.model_version_id = r.candidate_id))"
)
_LOSS = (
    "((j.preferred = 'A' AND sa.model_version_id = r.baseline_id) "
    "OR (j.preferred = 'B' AND sb.model_version_id = r.baseline_id))"
)
_OUTCOME = f"CASE WHEN {_WIN} THEN 'win' WHEN {_LOSS} THEN 'loss' ELSE j.preferred END"
_OLD_VS_NEW = (
    "((sa.model_version_id = r.baseline_id AND sb.model_version_id = r.candidate_id) "
    "OR (sa.model_version_id = r.candidate_id AND sb.model_version_id = r.baseline_id))"
)


def _postgres() -> bool:
    return connection.vendor == "postgresql"


def _tag_condition(alias: str = "p") -> str:
    if _postgres():
        return f"{alias}.tags @> %s::jsonb"
    return f"EXISTS (SELECT 1 FROM json_each({alias}.tags) WHERE json_each.value = %s)"


def _tag_param(tag: str) -> str:
    return json.dumps([tag]) if _postgres() else tag


def _tag_join(alias: str = "p") -> str:
    if _postgres():
        return f"CROSS JOIN LATERAL jsonb_array_elements_text({alias}.tags) AS tg(value)"
    return f"JOIN json_each({alias}.tags) AS tg"


def _bounds(filters: Filters) -> tuple[datetime | None, datetime | None]:
    tz = timezone.get_current_timezone()
    start = datetime.combine(filters.since, time.min, tzinfo=tz) if filters.since else None
    end = datetime.combine(filters.until + timedelta(days=1), time.min, tzinfo=tz) if filters.until else None
    return start, end


def _where(
    *,
    project_id: int,
    round_ids: Sequence[int] | None,
    filters: Filters,
    old_vs_new: bool,
    use_annotator: bool = True,
    alias: str = "j",
) -> tuple[str, list[Any], bool]:
    """WHERE clause for judgments ``alias`` of comparison c of round r; says whether it needs prompt p."""
    clauses = ["r.project_id = %s"]
    params: list[Any] = [project_id]
    if round_ids is not None:
        if not round_ids:
            clauses.append("1 = 0")
        else:
            clauses.append("c.round_id IN (" + ", ".join(["%s"] * len(round_ids)) + ")")
            params.extend(round_ids)
    if old_vs_new:
        clauses.append(_OLD_VS_NEW)
    start, end = _bounds(filters)
    if start is not None:
        clauses.append(f"{alias}.created_at >= %s")
        params.append(start)
    if end is not None:
        clauses.append(f"{alias}.created_at < %s")
        params.append(end)
    if use_annotator and filters.annotator_id is not None:
        clauses.append(f"{alias}.annotator_id = %s")
        params.append(filters.annotator_id)
    needs_prompt = bool(filters.tag)
    if filters.tag:
        clauses.append(_tag_condition("p"))
        params.append(_tag_param(filters.tag))
    return " AND ".join(clauses), params, needs_prompt


_FROM = (
    "annotation_judgment j "
    "JOIN annotation_comparison c ON c.id = j.comparison_id "
    "JOIN annotation_round r ON r.id = c.round_id "
    "JOIN annotation_sample sa ON sa.id = c.sample_a_id "
    "JOIN annotation_sample sb ON sb.id = c.sample_b_id"
)
_FROM_PROMPT = " JOIN annotation_prompt p ON p.id = c.prompt_id"


# Analytic queries over a whole round: PostgreSQL's default work_mem (4 MB) makes their
# hash joins and aggregates (500,000 prompts in a big round) spill to disk in batches, and
# JIT compilation of their CASE expressions costs more than it saves at this size.
_PG_SESSION = ("SET LOCAL work_mem = '{work_mem}'", "SET LOCAL jit = off")
WORK_MEM = "256MB"


def _fetch(sql: str, params: Sequence[Any]) -> list[tuple]:
    if not _postgres():
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    with transaction.atomic(), connection.cursor() as cursor:
        for setting in _PG_SESSION:
            cursor.execute(setting.format(work_mem=WORK_MEM))
        cursor.execute(sql, params)
        return cursor.fetchall()


# --- Old vs new -------------------------------------------------------------------------


def _per_prompt_sql(*, project_id: int, round_ids: Sequence[int] | None, filters: Filters) -> tuple[str, list[Any]]:
    """Verdict counts per (round, prompt) in candidate terms, for old-vs-new comparisons.

    Judgments are counted per comparison first, in sample terms (one pass over the
    judgment table, no join); only then are the comparisons joined to their samples to turn
    A/B into candidate/baseline - half the rows through the joins with two judgments per
    pair.
    """
    judgment_clauses, judgment_params = [], []
    start, end = _bounds(filters)
    if start is not None:
        judgment_clauses.append("j.created_at >= %s")
        judgment_params.append(start)
    if end is not None:
        judgment_clauses.append("j.created_at < %s")
        judgment_params.append(end)
    if filters.annotator_id is not None:
        judgment_clauses.append("j.annotator_id = %s")
        judgment_params.append(filters.annotator_id)
    scope = ["r.project_id = %s"]
    scope_params: list[Any] = [project_id]
    if round_ids is not None:
        scope.append("c.round_id IN (" + ", ".join(["%s"] * len(round_ids)) + ")" if round_ids else "1 = 0")
        scope_params.extend(round_ids or [])
    per_comparison = (
        "SELECT j.comparison_id AS comparison_id, "
        "SUM(CASE WHEN j.preferred = 'A' THEN 1 ELSE 0 END) AS a, "
        "SUM(CASE WHEN j.preferred = 'B' THEN 1 ELSE 0 END) AS b, "
        "SUM(CASE WHEN j.preferred = 'tie' THEN 1 ELSE 0 END) AS t, "
        "SUM(CASE WHEN j.preferred = 'both_bad' THEN 1 ELSE 0 END) AS bb, "
        "SUM(CASE WHEN j.preferred = 'cant_judge' THEN 1 ELSE 0 END) AS cj "
        "FROM annotation_judgment j WHERE j.comparison_id IN ("
        "SELECT c.id FROM annotation_comparison c JOIN annotation_round r ON r.id = c.round_id "
        f"WHERE {' AND '.join(scope)})"
        + "".join(f" AND {clause}" for clause in judgment_clauses)
        + " GROUP BY j.comparison_id"
    )
    outer = [_OLD_VS_NEW]
    outer_params: list[Any] = []
    if filters.tag:
        outer.append(_tag_condition("p"))
        outer_params.append(_tag_param(filters.tag))
    candidate_is_a = "sa.model_version_id = r.candidate_id"
    sql = (
        "SELECT c.round_id AS round_id, c.prompt_id AS prompt_id, "
        f"SUM(CASE WHEN {candidate_is_a} THEN jc.a ELSE jc.b END) AS w, "
        f"SUM(CASE WHEN {candidate_is_a} THEN jc.b ELSE jc.a END) AS l, "
        "SUM(jc.t) AS t, SUM(jc.bb) AS bb, SUM(jc.cj) AS cj "
        f"FROM ({per_comparison}) jc JOIN annotation_comparison c ON c.id = jc.comparison_id "
        "JOIN annotation_round r ON r.id = c.round_id "
        "JOIN annotation_sample sa ON sa.id = c.sample_a_id JOIN annotation_sample sb ON sb.id = c.sample_b_id"
        f"{_FROM_PROMPT if filters.tag else ''} WHERE {' AND '.join(outer)} GROUP BY c.round_id, c.prompt_id"
    )
    return sql, [*scope_params, *judgment_params, *outer_params]


def _pattern_rows(
    *, project_id: int, round_ids: Sequence[int] | None, filters: Filters, dimensions: bool
) -> list[tuple]:
    """(dimension, round id, value, w, l, t, bb, cj, prompts) — per-prompt counts grouped into patterns.

    dimension "all" always; with ``dimensions`` also "turn" (value: the prompt's user
    turns) and "tag" (value: one of the prompt's tags; a prompt counts under each tag).
    """
    per_prompt, params = _per_prompt_sql(project_id=project_id, round_ids=round_ids, filters=filters)
    counts = "pp.w, pp.l, pp.t, pp.bb, pp.cj"
    parts = [f"SELECT 'all', pp.round_id, '', {counts}, COUNT(*) FROM pp GROUP BY pp.round_id, {counts}"]
    if dimensions:
        parts.append(
            f"SELECT 'turn', pp.round_id, CAST(p.turns AS TEXT), {counts}, COUNT(*) FROM pp "
            f"JOIN annotation_prompt p ON p.id = pp.prompt_id GROUP BY pp.round_id, p.turns, {counts}"
        )
        parts.append(
            f"SELECT 'tag', pp.round_id, tg.value, {counts}, COUNT(*) FROM pp "
            f"JOIN annotation_prompt p ON p.id = pp.prompt_id {_tag_join('p')} "
            f"GROUP BY pp.round_id, tg.value, {counts}"
        )
    sql = f"WITH pp AS ({per_prompt}) " + " UNION ALL ".join(parts)
    return _fetch(sql, params)


def _cube_rows(*, project_id: int, round_ids: Sequence[int], filters: Filters) -> list[tuple]:
    """(annotator id, strength, safety, outcome, judgments) for old-vs-new judgments."""
    where, params, needs_prompt = _where(project_id=project_id, round_ids=round_ids, filters=filters, old_vs_new=True)
    sql = (
        f"SELECT j.annotator_id, j.strength, j.safety, {_OUTCOME} AS outcome, COUNT(*) "
        f"FROM {_FROM}{_FROM_PROMPT if needs_prompt else ''} WHERE {where} GROUP BY 1, 2, 3, 4"
    )
    return _fetch(sql, params)


def _counts_of(outcomes: dict[str, int]) -> Counts:
    return Counts(
        wins=outcomes.get("win", 0),
        losses=outcomes.get("loss", 0),
        ties=outcomes.get("tie", 0),
        both_bad=outcomes.get("both_bad", 0),
        cant_judge=outcomes.get("cant_judge", 0),
    )


@dataclass
class Breakdown:
    """One table of a round: a row per group value, each with its win rate."""

    name: str
    title: str
    rows: list[tuple[str, WinRate]]
    note: str = ""


@dataclass
class RoundReport:
    round_id: int
    overall: WinRate
    breakdowns: list[Breakdown] = field(default_factory=list)
    usernames: dict[int, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return self.overall.counts.total == 0


def _usernames(ids: set[int]) -> dict[int, str]:
    User = get_user_model()
    return dict(User.objects.filter(pk__in=ids).values_list("pk", User.USERNAME_FIELD))


def _compute_round(round_: Round, filters: Filters) -> RoundReport:
    rows = _pattern_rows(project_id=round_.project_id, round_ids=[round_.pk], filters=filters, dimensions=True)
    patterns: dict[tuple[str, str], list[tuple[int, ...]]] = defaultdict(list)
    for dimension, _round_id, value, w, l, t, bb, cj, prompts in rows:
        patterns[(dimension, str(value))].append((int(w), int(l), int(t), int(bb), int(cj), int(prompts)))

    def slice_of(key: tuple[str, str]) -> WinRate:
        p = Patterns.from_rows(patterns.get(key, []))
        return win_rate(p.totals(), p)

    overall = slice_of(("all", ""))
    cube = _cube_rows(project_id=round_.project_id, round_ids=[round_.pk], filters=filters)
    by_strength: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    by_safety: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    by_annotator: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for annotator_id, strength, safety, outcome, n in cube:
        by_strength[strength or ""][outcome] += n
        by_safety[safety or ""][outcome] += n
        by_annotator[annotator_id][outcome] += n
    names = _usernames(set(by_annotator))

    strength_rows = [
        (label, decisive_rate(by_strength[key].get("win", 0), by_strength[key].get("loss", 0)))
        for key, label in STRENGTH_LABELS.items()
        if by_strength[key].get("win", 0) + by_strength[key].get("loss", 0)
    ]
    tags = sorted(v for d, v in patterns if d == "tag")
    turns = sorted((v for d, v in patterns if d == "turn"), key=int)
    breakdowns = [
        Breakdown(
            "strength",
            "By strength",
            strength_rows,
            "Wins and losses at each strength; ties carry no strength, so the rate is among decisive verdicts.",
        ),
        Breakdown("tag", "By tag", [(tag, slice_of(("tag", tag))) for tag in tags], "A prompt with several tags counts under each."),
        Breakdown(
            "safety",
            "By safety label",
            [(label, win_rate(_counts_of(by_safety[key]))) for key, label in SAFETY_LABELS.items() if key in by_safety],
            "The label the annotator gave the pair (about the answer they preferred).",
        ),
        Breakdown(
            "turn",
            "By turns",
            [(f"{t} turn{'s' if t != '1' else ''}", slice_of(("turn", t))) for t in turns],
            "User turns in the conversation.",
        ),
        Breakdown(
            "annotator",
            "By annotator",
            [
                (names.get(a, f"user {a}"), win_rate(_counts_of(o)))
                for a, o in sorted(by_annotator.items(), key=lambda item: names.get(item[0], ""))
            ],
        ),
    ]
    return RoundReport(round_id=round_.pk, overall=overall, breakdowns=breakdowns, usernames=names)


def round_report(*, round_: Round, filters: Filters, wait: bool = True) -> RoundReport:
    return _cached(
        "round",
        [round_.pk, round_.baseline_id, round_.candidate_id, filters.key()],
        Recipe("round", {"round_id": round_.pk, "filters": filters.as_json()}),
        wait=wait,
    )


@dataclass
class HistoryPoint:
    round_id: int
    number: int
    label: str
    baseline: str
    candidate: str
    status: str
    result: WinRate


def _compute_history(project: Project, filters: Filters) -> list[HistoryPoint]:
    rounds = list(
        Round.objects.filter(project=project).select_related("baseline", "candidate").order_by("number")
    )
    rows = _pattern_rows(project_id=project.pk, round_ids=None, filters=filters, dimensions=False)
    per_round: dict[int, list[tuple[int, ...]]] = defaultdict(list)
    for _dimension, round_id, _value, w, l, t, bb, cj, prompts in rows:
        per_round[round_id].append((int(w), int(l), int(t), int(bb), int(cj), int(prompts)))
    points = []
    for r in rounds:
        if r.baseline_id == r.candidate_id:
            continue  # not an old-vs-new round: no win rate to draw
        p = Patterns.from_rows(per_round.get(r.pk, []))
        points.append(
            HistoryPoint(
                round_id=r.pk,
                number=r.number,
                label=str(r),
                baseline=r.baseline.name,
                candidate=r.candidate.name,
                status=r.get_status_display(),
                result=win_rate(p.totals(), p),
            )
        )
    return points


def history(*, project: Project, filters: Filters, wait: bool = True) -> list[HistoryPoint]:
    rounds_key = list(Round.objects.filter(project=project).values_list("pk", "baseline_id", "candidate_id", "status"))
    return _cached(
        "history",
        [project.pk, rounds_key, filters.key()],
        Recipe("history", {"project_id": project.pk, "filters": filters.as_json()}),
        wait=wait,
    )


# --- Bradley-Terry ------------------------------------------------------------------------


@dataclass
class RatingsReport:
    ratings: bradley_terry.Ratings | None
    battles: int
    matrix: list[list[float]]
    names: list[str]


def _battle_rows(*, project_id: int, filters: Filters) -> list[tuple[int, int, str, int]]:
    where, params, needs_prompt = _where(project_id=project_id, round_ids=None, filters=filters, old_vs_new=False)
    sql = (
        f"SELECT sa.model_version_id, sb.model_version_id, j.preferred, COUNT(*) "
        f"FROM {_FROM}{_FROM_PROMPT if needs_prompt else ''} "
        f"WHERE {where} AND j.preferred IN ('A', 'B', 'tie', 'both_bad') "
        f"AND sa.model_version_id <> sb.model_version_id GROUP BY 1, 2, 3"
    )
    return _fetch(sql, params)


def _compute_ratings(project: Project, filters: Filters, anchor: str | None, rounds: int) -> RatingsReport:
    rows = _battle_rows(project_id=project.pk, filters=filters)
    names = dict(ModelVersion.objects.filter(pk__in={r[0] for r in rows} | {r[1] for r in rows}).values_list("pk", "name"))
    battles = bradley_terry.battles_from_counts([(names[a], names[b], p, n) for a, b, p, n in rows])
    if not battles.names:
        return RatingsReport(ratings=None, battles=0, matrix=[], names=[])
    ratings = bradley_terry.rate(battles, rounds=rounds, anchor=anchor)
    order = ratings.order
    full = ratings.win_matrix()
    matrix = [[float(full[i, j]) for j in order] for i in order]
    return RatingsReport(ratings=ratings, battles=int(battles.total), matrix=matrix, names=[ratings.names[i] for i in order])


def ratings_report(
    *,
    project: Project,
    filters: Filters,
    anchor: str | None = None,
    rounds: int = bradley_terry.BOOTSTRAP_ROUNDS,
    wait: bool = True,
) -> RatingsReport:
    return _cached(
        "ratings",
        [project.pk, filters.key(), anchor, rounds],
        Recipe("ratings", {"project_id": project.pk, "filters": filters.as_json(), "anchor": anchor, "rounds": rounds}),
        wait=wait,
    )


def project_versions(*, project: Project) -> list[str]:
    """Names of the model versions that answer in this project's rounds (for the anchor choice)."""
    ids = set()
    for baseline_id, candidate_id in Round.objects.filter(project=project).values_list("baseline_id", "candidate_id"):
        ids.update((baseline_id, candidate_id))
    return list(ModelVersion.objects.filter(pk__in=ids).order_by("created_at", "id").values_list("name", flat=True))


# --- Agreement ----------------------------------------------------------------------------

_AGREEMENT_COLUMNS = [
    *(f"SUM(CASE WHEN j.preferred = '{side}' AND j.strength = '{s}' THEN 1 ELSE 0 END)" for side in "AB" for s in agreement_stats.STRENGTHS),
    "SUM(CASE WHEN j.preferred = 'A' AND j.strength = '' THEN 1 ELSE 0 END)",
    "SUM(CASE WHEN j.preferred = 'B' AND j.strength = '' THEN 1 ELSE 0 END)",
    "SUM(CASE WHEN j.preferred = 'tie' THEN 1 ELSE 0 END)",
    "SUM(CASE WHEN j.preferred = 'both_bad' THEN 1 ELSE 0 END)",
    "SUM(CASE WHEN j.preferred = 'cant_judge' THEN 1 ELSE 0 END)",
]


@dataclass
class PairKappa:
    first: str
    second: str
    items: int
    agreement: float | None
    kappa: float | None
    kappa_strength: float | None


@dataclass
class AgreementReport:
    without_strength: agreement_stats.Agreement
    with_strength: agreement_stats.Agreement
    pairs: list[PairKappa]
    annotator_filter_ignored: bool = False


def _agreement_patterns(*, project_id: int, round_ids: Sequence[int] | None, filters: Filters) -> np.ndarray:
    where, params, needs_prompt = _where(
        project_id=project_id, round_ids=round_ids, filters=filters, old_vs_new=False, use_annotator=False
    )
    names = [f"k{i}" for i in range(len(_AGREEMENT_COLUMNS))]
    inner = ", ".join(f"{col} AS {name}" for col, name in zip(_AGREEMENT_COLUMNS, names, strict=True))
    listed = ", ".join(names)
    sql = (
        f"WITH items AS (SELECT j.comparison_id, {inner} "
        f"FROM annotation_judgment j JOIN annotation_comparison c ON c.id = j.comparison_id "
        f"JOIN annotation_round r ON r.id = c.round_id{_FROM_PROMPT if needs_prompt else ''} "
        f"WHERE {where} GROUP BY j.comparison_id HAVING COUNT(*) >= 2) "
        f"SELECT {listed}, COUNT(*) FROM items GROUP BY {listed}"
    )
    rows = _fetch(sql, params)
    return np.asarray(rows, dtype=np.int64).reshape(-1, len(names) + 1)


def _pair_rows(*, project_id: int, round_ids: Sequence[int] | None, filters: Filters) -> list[tuple]:
    where, params, needs_prompt = _where(
        project_id=project_id, round_ids=round_ids, filters=filters, old_vs_new=False, use_annotator=False
    )
    start, end = _bounds(filters)
    extra, extra_params = "", []
    if start is not None:
        extra += " AND j2.created_at >= %s"
        extra_params.append(start)
    if end is not None:
        extra += " AND j2.created_at < %s"
        extra_params.append(end)
    sql = (
        "SELECT j.annotator_id, j2.annotator_id, j.preferred, j.strength, j2.preferred, j2.strength, COUNT(*) "
        "FROM annotation_judgment j "
        "JOIN annotation_judgment j2 ON j2.comparison_id = j.comparison_id AND j2.annotator_id > j.annotator_id "
        "JOIN annotation_comparison c ON c.id = j.comparison_id JOIN annotation_round r ON r.id = c.round_id"
        f"{_FROM_PROMPT if needs_prompt else ''} WHERE {where}{extra} GROUP BY 1, 2, 3, 4, 5, 6"
    )
    return _fetch(sql, [*params, *extra_params])


MAX_PAIRS = 25
MIN_PAIR_ITEMS = 5


def _label(preferred: str, strength: str, with_strength: bool) -> str:
    if with_strength and preferred in ("A", "B"):
        return f"{preferred}:{strength}" if strength else f"{preferred}:?"
    return preferred


def _compute_agreement(project: Project, round_ids: Sequence[int] | None, filters: Filters) -> AgreementReport:
    patterns = _agreement_patterns(project_id=project.pk, round_ids=round_ids, filters=filters)
    counts, items = patterns[:, :-1], patterns[:, -1]
    # Without strength: A = the four strengths and unknown, same for B.
    plain = np.column_stack([counts[:, 0:4].sum(axis=1) + counts[:, 8], counts[:, 4:8].sum(axis=1) + counts[:, 9], counts[:, 10:13]])
    # With strength: items where a verdict for a side lacks its strength (imports) are left out.
    known = (counts[:, 8] == 0) & (counts[:, 9] == 0)
    strong = np.column_stack([counts[known, 0:8], counts[known, 10:13]])
    without = agreement_stats.agreement(plain, items)
    with_ = agreement_stats.agreement(strong, items[known])
    without = agreement_stats.Agreement(
        without.items, without.judgments, without.pairwise, without.fleiss_kappa, without.krippendorff_alpha,
        agreement_stats.gwet_ac1(plain, items, categories=len(agreement_stats.CATEGORIES)),
    )
    with_ = agreement_stats.Agreement(
        with_.items, with_.judgments, with_.pairwise, with_.fleiss_kappa, with_.krippendorff_alpha,
        agreement_stats.gwet_ac1(strong, items[known], categories=len(agreement_stats.STRENGTH_CATEGORIES)),
    )
    tables: dict[tuple[int, int], dict[tuple[str, str], int]] = defaultdict(lambda: defaultdict(int))
    strength_tables: dict[tuple[int, int], dict[tuple[str, str], int]] = defaultdict(lambda: defaultdict(int))
    for u1, u2, p1, s1, p2, s2, n in _pair_rows(project_id=project.pk, round_ids=round_ids, filters=filters):
        tables[(u1, u2)][(p1, p2)] += n
        strength_tables[(u1, u2)][(_label(p1, s1, True), _label(p2, s2, True))] += n
    names = _usernames({u for pair in tables for u in pair})

    def kappa(cells: dict[tuple[str, str], int]) -> tuple[float | None, float | None, int]:
        labels = sorted({x for pair in cells for x in pair})
        position = {label: i for i, label in enumerate(labels)}
        table = np.zeros((len(labels), len(labels)))
        for (a, b), n in cells.items():
            table[position[a], position[b]] += n
        total = table.sum()
        return (
            agreement_stats.cohen_kappa(table),
            float(np.trace(table) / total) if total else None,
            int(total),
        )

    pairs = []
    for pair, cells in sorted(tables.items(), key=lambda item: -sum(item[1].values())):
        k, raw, total = kappa(cells)
        if total < MIN_PAIR_ITEMS:
            continue
        ks, _, _ = kappa(strength_tables[pair])
        pairs.append(PairKappa(names.get(pair[0], str(pair[0])), names.get(pair[1], str(pair[1])), total, raw, k, ks))
        if len(pairs) >= MAX_PAIRS:
            break
    return AgreementReport(
        without_strength=without, with_strength=with_, pairs=pairs, annotator_filter_ignored=filters.annotator_id is not None
    )


def agreement_report(
    *, project: Project, round_ids: Sequence[int] | None, filters: Filters, wait: bool = True
) -> AgreementReport:
    ids = None if round_ids is None else sorted(round_ids)
    return _cached(
        "agreement",
        [project.pk, ids, filters.key()],
        Recipe("agreement", {"project_id": project.pk, "round_ids": ids, "filters": filters.as_json()}),
        wait=wait,
    )


# --- Annotator quality --------------------------------------------------------------------


def quality_rows(*, project_id: int, round_ids: Sequence[int] | None, filters: Filters) -> list[AnnotatorFigures]:
    """Per-annotator aggregates straight from the database (no cache): the figures ``assess`` rates."""
    where, params, needs_prompt = _where(project_id=project_id, round_ids=round_ids, filters=filters, old_vs_new=False)
    base = (
        "annotation_judgment j JOIN annotation_comparison c ON c.id = j.comparison_id "
        f"JOIN annotation_round r ON r.id = c.round_id{_FROM_PROMPT if needs_prompt else ''}"
    )
    median = (
        "percentile_cont(0.5) WITHIN GROUP (ORDER BY j.time_spent_ms)" if _postgres() else "NULL"
    )
    sql = (
        "SELECT j.annotator_id, COUNT(*), "
        "SUM(CASE WHEN j.time_spent_ms IS NOT NULL THEN 1 ELSE 0 END), "
        f"{median}, "
        "SUM(CASE WHEN j.preferred IN ('A', 'B') AND j.\"left\" IN ('A', 'B') THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN j.preferred IN ('A', 'B') AND j.preferred = j.\"left\" THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN c.is_gold THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN c.is_gold AND j.preferred = c.gold_preferred THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN e.id IS NOT NULL THEN 1 ELSE 0 END) "
        f"FROM {base} LEFT JOIN annotation_edit e ON e.judgment_id = j.id WHERE {where} GROUP BY j.annotator_id"
    )
    rows = _fetch(sql, params)
    medians: dict[int, float] = {}
    if not _postgres():
        # SQLite has no ordered-set aggregates; the embedded default holds small data.
        values: dict[int, list[int]] = defaultdict(list)
        for annotator_id, ms in _fetch(
            f"SELECT j.annotator_id, j.time_spent_ms FROM {base} WHERE {where} AND j.time_spent_ms IS NOT NULL", params
        ):
            values[annotator_id].append(ms)
        medians = {a: float(np.median(v)) for a, v in values.items()}
    # Agreement with the majority of the *other* annotators of the same comparison: for each
    # judgment, n judgments on its comparison and ``same`` with its verdict (itself included).
    # Window functions over one scan; a join back to per-comparison counts was 5x slower.
    majority_sql = (
        "SELECT annotator_id, COUNT(*), SUM(CASE WHEN 2 * (same - 1) > n - 1 THEN 1 ELSE 0 END) FROM ("
        "SELECT j.annotator_id AS annotator_id, COUNT(*) OVER (PARTITION BY j.comparison_id) AS n, "
        "COUNT(*) OVER (PARTITION BY j.comparison_id, j.preferred) AS same "
        f"FROM {base} WHERE {where}) per_judgment WHERE n >= 2 GROUP BY annotator_id"
    )
    majority = {a: (int(n), int(agree)) for a, n, agree in _fetch(majority_sql, params)}
    names = _usernames({row[0] for row in rows})
    figures = []
    for annotator_id, n, timed, median_ms, sided, left, gold_n, gold_ok, edits in rows:
        shared, agreed = majority.get(annotator_id, (0, 0))
        figures.append(
            AnnotatorFigures(
                annotator_id=annotator_id,
                username=names.get(annotator_id, f"user {annotator_id}"),
                judgments=int(n),
                median_ms=float(median_ms) if median_ms is not None else medians.get(annotator_id),
                timed=int(timed or 0),
                sided=int(sided or 0),
                chose_left=int(left or 0),
                shared=shared,
                agreed=agreed,
                gold_items=int(gold_n or 0),
                gold_correct=int(gold_ok or 0),
                edits=int(edits or 0),
            )
        )
    figures.sort(key=lambda f: f.username)
    return figures


def quality_for(
    *, project: Project, round_ids: Sequence[int] | None, filters: Filters, wait: bool = True
) -> list[AnnotatorQuality]:
    """Quality of every annotator; with an annotator filter, that annotator's row only.

    The filter is applied after the figures: agreement with the majority needs the
    others' verdicts, and the flags compare each annotator with the rest of the team.
    """
    ids = None if round_ids is None else sorted(round_ids)
    team = replace(filters, annotator_id=None)
    rows = _cached(
        "quality",
        [project.pk, ids, team.key()],
        Recipe("quality", {"project_id": project.pk, "round_ids": ids, "filters": team.as_json()}),
        wait=wait,
    )
    if filters.annotator_id is not None:
        rows = [row for row in rows if row.figures.annotator_id == filters.annotator_id]
    return rows


# --- The project's rounds and filters --------------------------------------------------


def dashboard_rounds(*, project: Project) -> list[Round]:
    return list(Round.objects.filter(project=project).select_related("baseline", "candidate").order_by("number"))


def default_round(rounds: list[Round]) -> Round | None:
    """The round a dashboard opens on: the latest one with a judgment, else the latest one."""
    for round_ in reversed(rounds):
        if Judgment.objects.filter(comparison__round=round_).exists():
            return round_
    return rounds[-1] if rounds else None


def _compute_tags(project_id: int) -> list[str]:
    sql = f"SELECT DISTINCT tg.value FROM annotation_prompt p {_tag_join('p')} WHERE p.project_id = %s ORDER BY 1"
    return [row[0] for row in _fetch(sql, [project_id]) if isinstance(row[0], str)]


def project_tags(*, project: Project) -> list[str]:
    newest = Prompt.objects.filter(project=project).aggregate(m=Max("id"))["m"]
    return _cached("tags", [project.pk, newest], Recipe("tags", {"project_id": project.pk}))


_JUDGED_HERE = (
    "SELECT 1 FROM annotation_judgment j JOIN annotation_comparison c ON c.id = j.comparison_id "
    "JOIN annotation_round r ON r.id = c.round_id WHERE j.annotator_id = a.annotator_id AND r.project_id = %s"
)


def _compute_annotators(project_id: int) -> list[tuple[int, str]]:
    # Distinct annotators by hopping along the (annotator, created_at) index - one probe
    # per annotator instead of a scan of every judgment - then those with a judgment
    # here: on PostgreSQL, LATERAL ... LIMIT 1 keeps that a probe per annotator too (as
    # EXISTS, it semi-joined all the project's judgments: 730 ms against 44 ms at 1M);
    # SQLite has no LATERAL and probes per row for EXISTS anyway.
    rows = _fetch(
        "WITH RECURSIVE a(annotator_id) AS ("
        "SELECT MIN(annotator_id) FROM annotation_judgment "
        "UNION ALL SELECT (SELECT MIN(j.annotator_id) FROM annotation_judgment j WHERE j.annotator_id > a.annotator_id) "
        "FROM a WHERE a.annotator_id IS NOT NULL) "
        + (
            "SELECT a.annotator_id FROM a CROSS JOIN LATERAL (" + _JUDGED_HERE + " LIMIT 1) hit "
            "WHERE a.annotator_id IS NOT NULL"
            if _postgres()
            else "SELECT a.annotator_id FROM a WHERE a.annotator_id IS NOT NULL AND EXISTS (" + _JUDGED_HERE + ")"
        ),
        [project_id],
    )
    User = get_user_model()
    ids = [row[0] for row in rows]
    return list(User.objects.filter(pk__in=ids).order_by(User.USERNAME_FIELD).values_list("pk", User.USERNAME_FIELD))


def project_annotators(*, project: Project) -> list[tuple[int, str]]:
    """Everyone who judged in the project, for the annotator filter."""
    return _cached("annotators", [project.pk], Recipe("annotators", {"project_id": project.pk}))


# --- Recipes: each report from plain arguments (for ``Recipe`` and the Celery task) ------


def _project(project_id: int) -> Project:
    return Project.objects.get(pk=project_id)


_RECIPES: dict[str, Callable[..., Any]] = {
    "round": lambda round_id, filters: _compute_round(Round.objects.get(pk=round_id), Filters.from_json(filters)),
    "history": lambda project_id, filters: _compute_history(_project(project_id), Filters.from_json(filters)),
    "ratings": lambda project_id, filters, anchor, rounds: _compute_ratings(
        _project(project_id), Filters.from_json(filters), anchor, rounds
    ),
    "agreement": lambda project_id, round_ids, filters: _compute_agreement(
        _project(project_id), round_ids, Filters.from_json(filters)
    ),
    "quality": lambda project_id, round_ids, filters: assess(
        quality_rows(project_id=project_id, round_ids=round_ids, filters=Filters.from_json(filters))
    ),
    "tags": _compute_tags,
    "annotators": _compute_annotators,
}
