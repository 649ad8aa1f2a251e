"""The dashboards' reports: old-vs-new win rates per round (with breakdowns) and across
rounds, Bradley-Terry ratings, agreement and annotator quality.

Each report is a few aggregate queries (``insights.sql``, from the tallies when nothing
is filtered) and statistics on their small results (``insights.stats``), cached per
project (``insights.cache``) under what was asked.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from django.contrib.auth import get_user_model

from annotation.models import Project, Round
from insights import sql
from insights.cache import Recipe, cached, recipe
from insights.filters import Filters
from insights.stats import agreement as agreement_stats
from insights.stats import bradley_terry
from insights.stats.quality import AnnotatorFigures, AnnotatorQuality, assess
from insights.stats.winrate import Counts, Patterns, WinRate, decisive_rate, win_rate
from models_service.models import ModelVersion

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


# --- Old vs new -------------------------------------------------------------------------


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
    rows = sql.pattern_rows(project_id=round_.project_id, round_ids=[round_.pk], filters=filters, dimensions=True)
    patterns: dict[tuple[str, str], list[tuple[int, ...]]] = defaultdict(list)
    for dimension, _round_id, value, w, lost, t, bb, cj, prompts in rows:
        patterns[(dimension, str(value))].append((int(w), int(lost), int(t), int(bb), int(cj), int(prompts)))

    def slice_of(key: tuple[str, str]) -> WinRate:
        p = Patterns.from_rows(patterns.get(key, []))
        return win_rate(p.totals(), p)

    overall = slice_of(("all", ""))
    cube = sql.cube_rows(project_id=round_.project_id, round_ids=[round_.pk], filters=filters)
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
        Breakdown(
            "tag",
            "By tag",
            [(tag, slice_of(("tag", tag))) for tag in tags],
            "A prompt with several tags counts under each.",
        ),
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
    return cached(
        "round",
        round_.project_id,
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
    rounds = list(Round.objects.filter(project=project).select_related("baseline", "candidate").order_by("number"))
    rows = sql.pattern_rows(project_id=project.pk, round_ids=None, filters=filters, dimensions=False)
    per_round: dict[int, list[tuple[int, ...]]] = defaultdict(list)
    for _dimension, round_id, _value, w, lost, t, bb, cj, prompts in rows:
        per_round[round_id].append((int(w), int(lost), int(t), int(bb), int(cj), int(prompts)))
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
    return cached(
        "history",
        project.pk,
        [rounds_key, filters.key()],
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


def _compute_ratings(project: Project, filters: Filters, anchor: str | None, rounds: int) -> RatingsReport:
    rows = sql.battle_rows(project_id=project.pk, filters=filters)
    names = dict(
        ModelVersion.objects.filter(pk__in={r[0] for r in rows} | {r[1] for r in rows}).values_list("pk", "name")
    )
    battles = bradley_terry.battles_from_counts([(names[a], names[b], p, n) for a, b, p, n in rows])
    if not battles.names:
        return RatingsReport(ratings=None, battles=0, matrix=[], names=[])
    ratings = bradley_terry.rate(battles, rounds=rounds, anchor=anchor)
    order = ratings.order
    full = ratings.win_matrix()
    matrix = [[float(full[i, j]) for j in order] for i in order]
    return RatingsReport(
        ratings=ratings, battles=int(battles.total), matrix=matrix, names=[ratings.names[i] for i in order]
    )


def ratings_report(
    *,
    project: Project,
    filters: Filters,
    anchor: str | None = None,
    rounds: int = bradley_terry.BOOTSTRAP_ROUNDS,
    wait: bool = True,
) -> RatingsReport:
    return cached(
        "ratings",
        project.pk,
        [filters.key(), anchor, rounds],
        Recipe("ratings", {"project_id": project.pk, "filters": filters.as_json(), "anchor": anchor, "rounds": rounds}),
        wait=wait,
    )


# --- Agreement ----------------------------------------------------------------------------


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


MAX_PAIRS = 25
MIN_PAIR_ITEMS = 5


def _label(preferred: str, strength: str, with_strength: bool) -> str:
    if with_strength and preferred in ("A", "B"):
        return f"{preferred}:{strength}" if strength else f"{preferred}:?"
    return preferred


def _compute_agreement(project: Project, round_ids: Sequence[int] | None, filters: Filters) -> AgreementReport:
    patterns = sql.agreement_patterns(project_id=project.pk, round_ids=round_ids, filters=filters)
    counts, items = patterns[:, :-1], patterns[:, -1]
    # Without strength: A = the four strengths and unknown, same for B.
    plain = np.column_stack(
        [counts[:, 0:4].sum(axis=1) + counts[:, 8], counts[:, 4:8].sum(axis=1) + counts[:, 9], counts[:, 10:13]]
    )
    # With strength: items where a verdict for a side lacks its strength (imports) are left out.
    known = (counts[:, 8] == 0) & (counts[:, 9] == 0)
    strong = np.column_stack([counts[known, 0:8], counts[known, 10:13]])
    without = agreement_stats.agreement(plain, items)
    with_ = agreement_stats.agreement(strong, items[known])
    without = agreement_stats.Agreement(
        without.items,
        without.judgments,
        without.pairwise,
        without.fleiss_kappa,
        without.krippendorff_alpha,
        agreement_stats.gwet_ac1(plain, items, categories=len(agreement_stats.CATEGORIES)),
    )
    with_ = agreement_stats.Agreement(
        with_.items,
        with_.judgments,
        with_.pairwise,
        with_.fleiss_kappa,
        with_.krippendorff_alpha,
        agreement_stats.gwet_ac1(strong, items[known], categories=len(agreement_stats.STRENGTH_CATEGORIES)),
    )
    tables: dict[tuple[int, int], dict[tuple[str, str], int]] = defaultdict(lambda: defaultdict(int))
    strength_tables: dict[tuple[int, int], dict[tuple[str, str], int]] = defaultdict(lambda: defaultdict(int))
    for u1, u2, p1, s1, p2, s2, n in sql.pair_rows(project_id=project.pk, round_ids=round_ids, filters=filters):
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
        without_strength=without,
        with_strength=with_,
        pairs=pairs,
        annotator_filter_ignored=filters.annotator_id is not None,
    )


def agreement_report(
    *, project: Project, round_ids: Sequence[int] | None, filters: Filters, wait: bool = True
) -> AgreementReport:
    ids = None if round_ids is None else sorted(round_ids)
    return cached(
        "agreement",
        project.pk,
        [ids, filters.key()],
        Recipe("agreement", {"project_id": project.pk, "round_ids": ids, "filters": filters.as_json()}),
        wait=wait,
    )


# --- Annotator quality --------------------------------------------------------------------


def quality_rows(*, project_id: int, round_ids: Sequence[int] | None, filters: Filters) -> list[AnnotatorFigures]:
    """Per-annotator figures straight from the database (no cache): what ``assess`` rates."""
    counts = sql.quality_counts(project_id=project_id, round_ids=round_ids, filters=filters)
    names = _usernames({row[0] for row in counts.rows})
    figures = []
    for annotator_id, n, timed, median_ms, sided, left, gold_n, gold_ok, edits in counts.rows:
        shared, agreed = counts.majority.get(annotator_id, (0, 0))
        figures.append(
            AnnotatorFigures(
                annotator_id=annotator_id,
                username=names.get(annotator_id, f"user {annotator_id}"),
                judgments=int(n),
                median_ms=float(median_ms) if median_ms is not None else counts.medians.get(annotator_id),
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
    rows = cached(
        "quality",
        project.pk,
        [ids, team.key()],
        Recipe("quality", {"project_id": project.pk, "round_ids": ids, "filters": team.as_json()}),
        wait=wait,
    )
    if filters.annotator_id is not None:
        rows = [row for row in rows if row.figures.annotator_id == filters.annotator_id]
    return rows


def flagged_annotator_ids(*, project: Project, rounds: Iterable[Any] | None = None) -> set[int]:
    """User ids of the annotators whose judgments in ``project`` (optionally only in
    ``rounds``: Round objects or ids) raise any quality flag. Used by exports to leave
    flagged annotators out: computed from the data as it is now, never from a dashboard
    cache that may be a refresh behind (the same aggregates and rules as the dashboard)."""
    round_ids = None if rounds is None else sorted(getattr(r, "pk", r) for r in rounds)
    rows = assess(quality_rows(project_id=project.pk, round_ids=round_ids, filters=Filters()))
    return {row.figures.annotator_id for row in rows if row.flags}


# --- Recipes: each report from plain arguments (for ``Recipe`` and the Celery task) ------


def _project(project_id: int) -> Project:
    return Project.objects.get(pk=project_id)


@recipe("round")
def _round_recipe(round_id: int, filters: dict[str, Any]) -> RoundReport:
    return _compute_round(Round.objects.get(pk=round_id), Filters.from_json(filters))


@recipe("history")
def _history_recipe(project_id: int, filters: dict[str, Any]) -> list[HistoryPoint]:
    return _compute_history(_project(project_id), Filters.from_json(filters))


@recipe("ratings")
def _ratings_recipe(project_id: int, filters: dict[str, Any], anchor: str | None, rounds: int) -> RatingsReport:
    return _compute_ratings(_project(project_id), Filters.from_json(filters), anchor, rounds)


@recipe("agreement")
def _agreement_recipe(project_id: int, round_ids: list[int] | None, filters: dict[str, Any]) -> AgreementReport:
    return _compute_agreement(_project(project_id), round_ids, Filters.from_json(filters))


@recipe("quality")
def _quality_recipe(project_id: int, round_ids: list[int] | None, filters: dict[str, Any]) -> list[AnnotatorQuality]:
    return assess(quality_rows(project_id=project_id, round_ids=round_ids, filters=Filters.from_json(filters)))
