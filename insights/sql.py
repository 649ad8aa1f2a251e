"""The dashboards' SQL: every figure comes from a handful of GROUP BY queries, none of
which returns a row per judgment.

Two sources answer them:

- the tallies (``insights.models``), kept by the database as judgments arrive: the
  numbers of a round or a project with no filter come from these, whatever its size;
- the judgments themselves, joined to their comparisons (and the two samples, whose
  model versions say which side is the round's baseline and which its candidate): what
  a date, annotator or tag filter narrows, the pairs of annotators of Cohen's kappa, and
  annotator quality (median times, agreement with the majority, gold answers).

Both give the same rows for the same data (tests/insights/test_tallies.py holds them to it):

- per-prompt verdict counts, grouped a second time into distinct *patterns* with their
  multiplicities, which is all the prompt bootstrap needs (``pattern_rows``);
- a small cube for the strength, safety and annotator breakdowns (``cube_rows``);
- Bradley-Terry battles per (version A, version B, verdict) (``battle_rows``);
- per-comparison category counts for agreement, grouped into patterns too
  (``agreement_patterns``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from django.db import connection, transaction
from django.utils import timezone

from insights.stats import agreement as agreement_stats

if TYPE_CHECKING:
    from insights.filters import Filters

# --- Building blocks ---------------------------------------------------------------------

_WIN = (
    "((j.preferred = 'A' AND sa.model_version_id = r.candidate_id) "
    "OR (j.preferred = 'B' AND sb.model_version_id = r.candidate_id))"
)
_LOSS = (
    "((j.preferred = 'A' AND sa.model_version_id = r.baseline_id) "
    "OR (j.preferred = 'B' AND sb.model_version_id = r.baseline_id))"
)
_OUTCOME = f"CASE WHEN {_WIN} THEN 'win' WHEN {_LOSS} THEN 'loss' ELSE j.preferred END"
# A round whose baseline is its candidate (a seeds or temperatures round of one version)
# has no old-vs-new pairs: its judgments count in agreement and quality, not in win rates.
_OLD_VS_NEW = (
    "(r.baseline_id <> r.candidate_id AND ("
    "(sa.model_version_id = r.baseline_id AND sb.model_version_id = r.candidate_id) "
    "OR (sa.model_version_id = r.candidate_id AND sb.model_version_id = r.baseline_id)))"
)


def postgres() -> bool:
    return connection.vendor == "postgresql"


def _tag_condition(alias: str = "p") -> str:
    if postgres():
        return f"{alias}.tags @> %s::jsonb"
    return f"EXISTS (SELECT 1 FROM json_each({alias}.tags) WHERE json_each.value = %s)"


def _tag_param(tag: str) -> str:
    return json.dumps([tag]) if postgres() else tag


def tag_join(alias: str = "p") -> str:
    if postgres():
        return f"CROSS JOIN LATERAL jsonb_array_elements_text({alias}.tags) AS tg(value)"
    return f"JOIN json_each({alias}.tags) AS tg"


def _bounds(filters: Filters) -> tuple[datetime | None, datetime | None]:
    tz = timezone.get_current_timezone()
    start = datetime.combine(filters.since, time.min, tzinfo=tz) if filters.since else None
    end = datetime.combine(filters.until + timedelta(days=1), time.min, tzinfo=tz) if filters.until else None
    return start, end


def _judgment_clauses(filters: Filters, *, alias: str = "j", use_annotator: bool = True) -> tuple[list[str], list[Any]]:
    """Conditions on the judgments themselves: their dates and annotator."""
    clauses: list[str] = []
    params: list[Any] = []
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
    return clauses, params


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
    own, own_params = _judgment_clauses(filters, alias=alias, use_annotator=use_annotator)
    clauses += own
    params += own_params
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


def fetch(sql: str, params: Sequence[Any]) -> list[tuple]:
    if not postgres():
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    with transaction.atomic(), connection.cursor() as cursor:
        for setting in _PG_SESSION:
            cursor.execute(setting.format(work_mem=WORK_MEM))
        cursor.execute(sql, params)
        return cursor.fetchall()


# --- From the judgments --------------------------------------------------------------------


def _per_prompt_sql(*, project_id: int, round_ids: Sequence[int] | None, filters: Filters) -> tuple[str, list[Any]]:
    """Verdict counts per (round, prompt) in candidate terms, for old-vs-new comparisons.

    Judgments are counted per comparison first, in sample terms (one pass over the
    judgment table, no join); only then are the comparisons joined to their samples to turn
    A/B into candidate/baseline - half the rows through the joins with two judgments per
    pair.
    """
    judgment_clauses, judgment_params = _judgment_clauses(filters)
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


def _pattern_rows_scanned(
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
            f"JOIN annotation_prompt p ON p.id = pp.prompt_id {tag_join('p')} "
            f"GROUP BY pp.round_id, tg.value, {counts}"
        )
    sql = f"WITH pp AS ({per_prompt}) " + " UNION ALL ".join(parts)
    return fetch(sql, params)


def _cube_rows_scanned(*, project_id: int, round_ids: Sequence[int], filters: Filters) -> list[tuple]:
    """(annotator id, strength, safety, outcome, judgments) for old-vs-new judgments."""
    where, params, needs_prompt = _where(project_id=project_id, round_ids=round_ids, filters=filters, old_vs_new=True)
    sql = (
        f"SELECT j.annotator_id, j.strength, j.safety, {_OUTCOME} AS outcome, COUNT(*) "
        f"FROM {_FROM}{_FROM_PROMPT if needs_prompt else ''} WHERE {where} GROUP BY 1, 2, 3, 4"
    )
    return fetch(sql, params)


def _battle_rows_scanned(*, project_id: int, filters: Filters) -> list[tuple[int, int, str, int]]:
    where, params, needs_prompt = _where(project_id=project_id, round_ids=None, filters=filters, old_vs_new=False)
    sql = (
        f"SELECT sa.model_version_id, sb.model_version_id, j.preferred, COUNT(*) "
        f"FROM {_FROM}{_FROM_PROMPT if needs_prompt else ''} "
        f"WHERE {where} AND j.preferred IN ('A', 'B', 'tie', 'both_bad') "
        f"AND sa.model_version_id <> sb.model_version_id GROUP BY 1, 2, 3"
    )
    return fetch(sql, params)


AGREEMENT_COLUMNS = [
    *(
        f"SUM(CASE WHEN j.preferred = '{side}' AND j.strength = '{s}' THEN 1 ELSE 0 END)"
        for side in "AB"
        for s in agreement_stats.STRENGTHS
    ),
    "SUM(CASE WHEN j.preferred = 'A' AND j.strength = '' THEN 1 ELSE 0 END)",
    "SUM(CASE WHEN j.preferred = 'B' AND j.strength = '' THEN 1 ELSE 0 END)",
    "SUM(CASE WHEN j.preferred = 'tie' THEN 1 ELSE 0 END)",
    "SUM(CASE WHEN j.preferred = 'both_bad' THEN 1 ELSE 0 END)",
    "SUM(CASE WHEN j.preferred = 'cant_judge' THEN 1 ELSE 0 END)",
]


def _agreement_patterns_scanned(*, project_id: int, round_ids: Sequence[int] | None, filters: Filters) -> np.ndarray:
    where, params, needs_prompt = _where(
        project_id=project_id, round_ids=round_ids, filters=filters, old_vs_new=False, use_annotator=False
    )
    names = [f"k{i}" for i in range(len(AGREEMENT_COLUMNS))]
    inner = ", ".join(f"{col} AS {name}" for col, name in zip(AGREEMENT_COLUMNS, names, strict=True))
    listed = ", ".join(names)
    sql = (
        f"WITH items AS (SELECT j.comparison_id, {inner} "
        f"FROM annotation_judgment j JOIN annotation_comparison c ON c.id = j.comparison_id "
        f"JOIN annotation_round r ON r.id = c.round_id{_FROM_PROMPT if needs_prompt else ''} "
        f"WHERE {where} GROUP BY j.comparison_id HAVING COUNT(*) >= 2) "
        f"SELECT {listed}, COUNT(*) FROM items GROUP BY {listed}"
    )
    rows = fetch(sql, params)
    return np.asarray(rows, dtype=np.int64).reshape(-1, len(names) + 1)


def pair_rows(*, project_id: int, round_ids: Sequence[int] | None, filters: Filters) -> list[tuple]:
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
    return fetch(sql, [*params, *extra_params])


@dataclass(frozen=True)
class QualityCounts:
    """Per-annotator aggregates: (annotator, judgments, timed, median ms, sided, chose
    left, gold items, gold correct, edits) rows, medians computed in Python where the
    database has no ordered-set aggregate, and (shared, agreed) with the majority."""

    rows: list[tuple]
    medians: dict[int, float]
    majority: dict[int, tuple[int, int]]


def quality_counts(*, project_id: int, round_ids: Sequence[int] | None, filters: Filters) -> QualityCounts:
    """Per-annotator aggregates straight from the judgments: what ``assess`` rates."""
    where, params, needs_prompt = _where(project_id=project_id, round_ids=round_ids, filters=filters, old_vs_new=False)
    base = (
        "annotation_judgment j JOIN annotation_comparison c ON c.id = j.comparison_id "
        f"JOIN annotation_round r ON r.id = c.round_id{_FROM_PROMPT if needs_prompt else ''}"
    )
    median = "percentile_cont(0.5) WITHIN GROUP (ORDER BY j.time_spent_ms)" if postgres() else "NULL"
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
    rows = fetch(sql, params)
    medians: dict[int, float] = {}
    if not postgres():
        # SQLite has no ordered-set aggregates; the embedded default holds small data.
        values: dict[int, list[int]] = defaultdict(list)
        for annotator_id, ms in fetch(
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
    majority = {a: (int(n), int(agree)) for a, n, agree in fetch(majority_sql, params)}
    return QualityCounts(rows=rows, medians=medians, majority=majority)


def project_tag_values(project_id: int) -> list[str]:
    sql = f"SELECT DISTINCT tg.value FROM annotation_prompt p {tag_join('p')} WHERE p.project_id = %s ORDER BY 1"
    return [row[0] for row in fetch(sql, [project_id]) if isinstance(row[0], str)]


# --- From the tallies ----------------------------------------------------------------------

_A = "(t.a_significantly + t.a_better + t.a_slightly + t.a_negligibly + t.a_unrated)"
_B = "(t.b_significantly + t.b_better + t.b_slightly + t.b_negligibly + t.b_unrated)"


def _versions_old_vs_new(alias: str) -> str:
    return (
        f"(r.baseline_id <> r.candidate_id AND ("
        f"({alias}.version_a_id = r.baseline_id AND {alias}.version_b_id = r.candidate_id) "
        f"OR ({alias}.version_a_id = r.candidate_id AND {alias}.version_b_id = r.baseline_id)))"
    )


def _rounds_clause(round_ids: Sequence[int] | None, column: str) -> tuple[str, list[Any]]:
    if round_ids is None:
        return "", []
    if not round_ids:
        return " AND 1 = 0", []
    return f" AND {column} IN ({', '.join(['%s'] * len(round_ids))})", list(round_ids)


def _old_vs_new_rounds(project_id: int, round_ids: Sequence[int] | None) -> list[tuple[int, int, int]]:
    """(round, baseline, candidate) of the project's rounds (of ``round_ids``) that compare two versions."""
    rounds, params = _rounds_clause(round_ids, "id")
    return [
        (int(r), int(b), int(c))
        for r, b, c in fetch(
            f"SELECT id, baseline_id, candidate_id FROM annotation_round WHERE project_id = %s{rounds} "
            "AND baseline_id <> candidate_id",
            [project_id, *params],
        )
    ]


def _pattern_rows_tallied(*, project_id: int, round_ids: Sequence[int] | None, dimensions: bool) -> list[tuple]:
    """Per-prompt counts from the comparisons' tallies, grouped twice: by prompt (the
    bootstrap resamples prompts), then by (turns, tags, counts), which leaves a few hundred
    rows to break down by turn and by tag. The rounds' versions are given as constants, so
    the planner sees how many tally rows match and hashes instead of sorting."""
    rounds = _old_vs_new_rounds(project_id, round_ids)
    if not rounds:
        return []
    pairs = ", ".join(["(%s, %s, %s)"] * (2 * len(rounds)))
    pair_params = [x for r, b, c in rounds for x in (r, b, c, r, c, b)]
    candidates = ", ".join(["(%s, %s)"] * len(rounds))
    candidate_params = [x for r, _b, c in rounds for x in (r, c)]
    candidate_is_a = f"(t.round_id, t.version_a_id) IN ({candidates})"
    tags = "MAX(CAST(t.tags AS TEXT))" if postgres() else "MAX(t.tags)"
    per_prompt = (
        f"SELECT t.round_id AS round_id, t.prompt_id AS prompt_id, MAX(t.turns) AS turns, {tags} AS tags, "
        f"SUM(CASE WHEN {candidate_is_a} THEN {_A} ELSE {_B} END) AS w, "
        f"SUM(CASE WHEN {candidate_is_a} THEN {_B} ELSE {_A} END) AS l, "
        "SUM(t.tie) AS t, SUM(t.both_bad) AS bb, SUM(t.cant_judge) AS cj "
        f"FROM insights_comparisontally t WHERE (t.round_id, t.version_a_id, t.version_b_id) IN ({pairs}) "
        "AND t.total > 0 GROUP BY t.round_id, t.prompt_id"
    )
    counts = "pt.w, pt.l, pt.t, pt.bb, pt.cj"
    by_pattern = (
        "SELECT pp.round_id AS round_id, pp.turns AS turns, pp.tags AS tags, pp.w AS w, pp.l AS l, pp.t AS t, "
        "pp.bb AS bb, pp.cj AS cj, COUNT(*) AS n FROM pp GROUP BY pp.round_id, pp.turns, pp.tags, pp.w, pp.l, pp.t, "
        "pp.bb, pp.cj"
    )
    parts = [f"SELECT 'all', pt.round_id, '', {counts}, SUM(pt.n) FROM pt GROUP BY pt.round_id, {counts}"]
    if dimensions:
        each_tag = (
            "CROSS JOIN LATERAL jsonb_array_elements_text(CAST(pt.tags AS jsonb)) AS tg(value)"
            if postgres()
            else "JOIN json_each(pt.tags) AS tg"
        )
        parts.append(
            f"SELECT 'turn', pt.round_id, CAST(pt.turns AS TEXT), {counts}, SUM(pt.n) FROM pt "
            f"GROUP BY pt.round_id, pt.turns, {counts}"
        )
        parts.append(
            f"SELECT 'tag', pt.round_id, tg.value, {counts}, SUM(pt.n) FROM pt {each_tag} "
            f"GROUP BY pt.round_id, tg.value, {counts}"
        )
    sql = f"WITH pp AS ({per_prompt}), pt AS ({by_pattern}) " + " UNION ALL ".join(parts)
    return fetch(sql, [*candidate_params, *candidate_params, *pair_params])


def _cube_rows_tallied(*, project_id: int, round_ids: Sequence[int]) -> list[tuple]:
    rounds, params = _rounds_clause(round_ids, "v.round_id")
    sql = (
        "SELECT v.annotator_id, v.strength, v.safety, "
        "CASE WHEN (v.preferred = 'A' AND v.version_a_id = r.candidate_id) "
        "OR (v.preferred = 'B' AND v.version_b_id = r.candidate_id) THEN 'win' "
        "WHEN (v.preferred = 'A' AND v.version_a_id = r.baseline_id) "
        "OR (v.preferred = 'B' AND v.version_b_id = r.baseline_id) THEN 'loss' "
        "ELSE v.preferred END AS outcome, SUM(v.n) "
        "FROM insights_verdicttally v JOIN annotation_round r ON r.id = v.round_id "
        f"WHERE r.project_id = %s{rounds} AND v.n > 0 AND {_versions_old_vs_new('v')} GROUP BY 1, 2, 3, 4"
    )
    return fetch(sql, [project_id, *params])


def _battle_rows_tallied(*, project_id: int) -> list[tuple]:
    sql = (
        "SELECT v.version_a_id, v.version_b_id, v.preferred, SUM(v.n) "
        "FROM insights_verdicttally v JOIN annotation_round r ON r.id = v.round_id "
        "WHERE r.project_id = %s AND v.n > 0 AND v.preferred IN ('A', 'B', 'tie', 'both_bad') "
        "AND v.version_a_id <> v.version_b_id GROUP BY 1, 2, 3"
    )
    return fetch(sql, [project_id])


# The tally columns in the order of AGREEMENT_COLUMNS.
_AGREEMENT_TALLY = [
    *(f"t.a_{s}" for s in agreement_stats.STRENGTHS),
    *(f"t.b_{s}" for s in agreement_stats.STRENGTHS),
    "t.a_unrated",
    "t.b_unrated",
    "t.tie",
    "t.both_bad",
    "t.cant_judge",
]


def _agreement_patterns_tallied(*, project_id: int, round_ids: Sequence[int] | None) -> np.ndarray:
    rounds, params = _rounds_clause(round_ids, "t.round_id")
    listed = ", ".join(_AGREEMENT_TALLY)
    sql = (
        f"SELECT {listed}, COUNT(*) FROM insights_comparisontally t JOIN annotation_round r ON r.id = t.round_id "
        f"WHERE r.project_id = %s{rounds} AND t.total >= 2 GROUP BY {listed}"
    )
    rows = fetch(sql, [project_id, *params])
    return np.asarray(rows, dtype=np.int64).reshape(-1, len(_AGREEMENT_TALLY) + 1)


# --- The queries the reports ask: from the tallies when nothing is filtered -----------------


def pattern_rows(
    *, project_id: int, round_ids: Sequence[int] | None, filters: Filters, dimensions: bool
) -> list[tuple]:
    """(dimension, round id, value, w, l, t, bb, cj, prompts) — per-prompt counts grouped into patterns.

    dimension "all" always; with ``dimensions`` also "turn" (value: the prompt's user
    turns) and "tag" (value: one of the prompt's tags; a prompt counts under each tag).
    """
    if filters.active:
        return _pattern_rows_scanned(project_id=project_id, round_ids=round_ids, filters=filters, dimensions=dimensions)
    return _pattern_rows_tallied(project_id=project_id, round_ids=round_ids, dimensions=dimensions)


def cube_rows(*, project_id: int, round_ids: Sequence[int], filters: Filters) -> list[tuple]:
    """(annotator id, strength, safety, outcome, judgments) for old-vs-new judgments."""
    if filters.active:
        return _cube_rows_scanned(project_id=project_id, round_ids=round_ids, filters=filters)
    return _cube_rows_tallied(project_id=project_id, round_ids=round_ids)


def battle_rows(*, project_id: int, filters: Filters) -> list[tuple]:
    """(version A, version B, preferred, judgments) of every pair of distinct versions."""
    if filters.active:
        return _battle_rows_scanned(project_id=project_id, filters=filters)
    return _battle_rows_tallied(project_id=project_id)


def agreement_patterns(*, project_id: int, round_ids: Sequence[int] | None, filters: Filters) -> np.ndarray:
    """Per-comparison category counts (``AGREEMENT_COLUMNS``) of comparisons with two or
    more judgments, grouped into patterns: one row per pattern, its count last. The
    annotator filter does not apply (agreement is between annotators)."""
    if filters.tag or filters.since or filters.until:
        return _agreement_patterns_scanned(project_id=project_id, round_ids=round_ids, filters=filters)
    return _agreement_patterns_tallied(project_id=project_id, round_ids=round_ids)


def project_annotator_ids(project_id: int) -> list[int]:
    """Everyone with a judgment in the project (from the tallies: one index range)."""
    rows = fetch(
        "SELECT annotator_id FROM insights_projectactivity WHERE project_id = %s AND judgments > 0", [project_id]
    )
    return [row[0] for row in rows]
