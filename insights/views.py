"""The lead dashboard (htmx page, sections, CSV downloads).

Same shape as every view (docs/style.md): access check -> filters (``resolve_filters``,
shared with the API) -> reports (``insights.reports``) -> render. The page renders every section; each section
re-polls itself (htmx, ``hx-trigger="every 30s"``) through ``dashboard_section``, and
every table downloads as CSV with the same filters. Leads and ML engineers may read;
annotators judge blind and never see these numbers.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_safe

from accounts.roles import ROLE_LABELS, Role, has_role
from annotation.models import Project
from annotation.selectors import project_get
from core.http import HtmxHttpRequest
from insights import reports
from insights.cache import Pending
from insights.filters import FilterError, Scope, resolve_filters
from insights.stats import bradley_terry, quality, winrate
from insights.stats.winrate import WinRate

READERS = (Role.LEAD, Role.ML_ENGINEER)
SECTIONS = ("summary", "round", "ratings", "agreement", "quality")
REFRESH_SECONDS = 30
PENDING_POLL_SECONDS = 1  # the tallied numbers of a big round take about a second

WIN_COLUMNS = [
    "wins",
    "losses",
    "ties",
    "both_bad",
    "cant_judge",
    "n",
    "prompts",
    "win_rate",
    "wilson_low",
    "wilson_high",
    "bootstrap_low",
    "bootstrap_high",
    "sign_test_p",
]


def _require_reader(request: HtmxHttpRequest) -> None:
    if not has_role(request.user, *READERS):
        raise PermissionDenied("This page is for: " + ", ".join(ROLE_LABELS[r] for r in READERS))


def _project_or_404(request: HtmxHttpRequest, slug: str) -> Project:
    project = project_get(slug=slug, user=request.user)
    if project is None:
        raise Http404("no such project")
    return project


def _scope(request: HtmxHttpRequest, slug: str) -> Scope:
    """The checked request (raises FilterError when the filters are refused)."""
    _require_reader(request)
    return resolve_filters(request.GET or None, _project_or_404(request, slug))


# --- Sections ----------------------------------------------------------------------------


def _history_chart(points: list[reports.HistoryPoint]) -> dict[str, Any]:
    return {
        "labels": [f"R{p.number}: {p.candidate}" for p in points],
        "titles": [f"{p.label} ({p.baseline} → {p.candidate})" for p in points],
        "rate": [p.result.rate for p in points],
        "wilson": [list(p.result.wilson) if p.result.wilson else None for p in points],
        "bootstrap": [list(p.result.bootstrap) if p.result.bootstrap else None for p in points],
        "n": [p.result.counts.n for p in points],
    }


def _forest_chart(rows: list[tuple[str, WinRate]]) -> dict[str, Any]:
    rows = [(label, r) for label, r in rows if r.rate is not None]
    return {
        "labels": [label for label, _ in rows],
        "rate": [r.rate for _, r in rows],
        "interval": [list(r.bootstrap or r.wilson or ()) or None for _, r in rows],
        "n": [r.counts.n for _, r in rows],
    }


def _json(data: dict[str, Any]) -> str:
    # Rendered into a data-values attribute (autoescaped): htmx drops <script> elements
    # from swapped content (allowScriptTags is off), so json_script would not survive a poll.
    return json.dumps(data, allow_nan=False)


def _section_context(req: Scope, section: str, *, wait: bool = True) -> dict[str, Any]:
    """What one section shows. ``wait=False`` (the page): a report that is not computed yet
    on a big database comes back as ``pending`` and the section polls until it is there."""
    try:
        return _section_data(req, section, wait=wait)
    except Pending:
        return {"pending": {section}}


def _section_data(req: Scope, section: str, *, wait: bool) -> dict[str, Any]:
    context: dict[str, Any] = {}
    project, filters = req.project, req.filters
    round_ids = [req.round.pk] if req.round is not None else []
    if section == "summary":
        points = reports.history(project=project, filters=filters, wait=wait)
        context["history"] = points
        context["history_chart_json"] = _json(_history_chart(points))
    elif section == "round":
        report = reports.round_report(round_=req.round, filters=filters, wait=wait) if req.round else None
        context["report"] = report
        if report is not None:
            tags = next((b.rows for b in report.breakdowns if b.name == "tag"), [])
            context["tag_chart"] = _forest_chart(tags)
            context["tag_chart_json"] = _json(context["tag_chart"])
            context["verdict_chart_json"] = _json(
                {
                    "labels": ["Candidate better", "Tie", "Both bad", "Baseline better", "Can't judge"],
                    "values": [
                        report.overall.counts.wins,
                        report.overall.counts.ties,
                        report.overall.counts.both_bad,
                        report.overall.counts.losses,
                        report.overall.counts.cant_judge,
                    ],
                }
            )
    elif section == "ratings":
        ratings = reports.ratings_report(project=project, filters=filters, anchor=req.anchor, wait=wait)
        context["ratings"] = ratings
        if ratings.ratings is not None:
            context["ratings_rows"] = ratings.ratings.table()
            context["matrix_rows"] = list(zip(ratings.names, ratings.matrix, strict=True))
    elif section == "agreement":
        context["agreement"] = reports.agreement_report(
            project=project, round_ids=round_ids, filters=filters, wait=wait
        )
    elif section == "quality":
        context["quality"] = reports.quality_for(project=project, round_ids=round_ids, filters=filters, wait=wait)
    return context


def _base_context(req: Scope) -> dict[str, Any]:
    query = urlencode(req.form.data) if req.form.is_bound else ""
    return {
        "project": req.project,
        "form": req.form,
        "round": req.round,
        "rounds": req.rounds,
        "filters": req.filters,
        "query": query,
        "refresh_seconds": REFRESH_SECONDS,
        "policy": winrate.POLICY,
        "bt_method": bradley_terry.METHOD,
        "flag_rules": quality.FLAG_RULES,
        "anchor": req.anchor,
        "pending": set(),
        "pending_poll_seconds": PENDING_POLL_SECONDS,
    }


def _bad_filters(request: HtmxHttpRequest, error: FilterError, slug: str) -> HttpResponse:
    project = _project_or_404(request, slug)
    form = error.form
    context = {"project": project, "form": form, "rounds": list(form.rounds.values()), "invalid": True, "query": ""}
    return render(request, "insights/dashboard.html", context, status=400)


@login_required
@require_safe
def dashboard(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    try:
        req = _scope(request, slug)
    except FilterError as error:
        return _bad_filters(request, error, slug)
    context = _base_context(req)
    pending: set[str] = set()
    for section in SECTIONS:
        data = _section_context(req, section, wait=False)
        pending |= data.pop("pending", set())
        context.update(data)
    context["pending"] = pending
    response = render(request, "insights/dashboard.html", context)
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_safe
def dashboard_section(request: HtmxHttpRequest, slug: str, section: str) -> HttpResponse:
    """One section as a fragment (the htmx poll); outside htmx, the whole page."""
    if section not in SECTIONS:
        raise Http404("no such section")
    try:
        req = _scope(request, slug)
    except FilterError as error:
        return HttpResponse(
            "Invalid filters: " + "; ".join(f"{k}: {' '.join(v)}" for k, v in error.errors.items()),
            status=400,
            content_type="text/plain; charset=utf-8",
        )
    context = _base_context(req)
    context.update(_section_context(req, section, wait=False))
    response = render(request, f"insights/dashboard.html#section-{section}", context)
    patch_vary_headers(response, ["HX-Request"])
    return response


# --- CSV ---------------------------------------------------------------------------------

CSV_TABLES = (
    "history",
    "round",
    "strength",
    "tag",
    "safety",
    "turn",
    "annotator",
    "ratings",
    "win-matrix",
    "agreement",
    "agreement-pairs",
    "quality",
)
_TABLE_SECTION = {
    "history": "summary",
    "round": "round",
    "strength": "round",
    "tag": "round",
    "safety": "round",
    "turn": "round",
    "annotator": "round",
    "ratings": "ratings",
    "win-matrix": "ratings",
    "agreement": "agreement",
    "agreement-pairs": "agreement",
    "quality": "quality",
}


def _win_cells(result: WinRate) -> list[Any]:
    data = result.as_dict()
    return [data[c] for c in WIN_COLUMNS]


def table_rows(req: Scope, table: str) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of one dashboard table, exactly the numbers the page shows."""
    context = _section_context(req, _TABLE_SECTION[table])
    if table == "history":
        header = ["round", "name", "baseline", "candidate", "status", *WIN_COLUMNS]
        return header, [
            [p.number, p.label, p.baseline, p.candidate, p.status, *_win_cells(p.result)] for p in context["history"]
        ]
    if _TABLE_SECTION[table] == "round":
        report = context["report"]
        if table == "round":
            rows = (
                []
                if report is None or req.round is None
                else [[req.round.number, str(req.round), *_win_cells(report.overall)]]
            )
            return ["round", "name", *WIN_COLUMNS], rows
        breakdown = [] if report is None else next(b.rows for b in report.breakdowns if b.name == table)
        return [table, *WIN_COLUMNS], [[label, *_win_cells(result)] for label, result in breakdown]
    if table == "ratings":
        header = ["rank", "model", "rating", "low", "high", "battles", "score", "never_won", "never_lost", "group"]
        return header, [[row[h] for h in header] for row in context.get("ratings_rows", [])]
    if table == "win-matrix":
        names = context["ratings"].names
        return ["model", *names], [[name, *row] for name, row in context.get("matrix_rows", [])]
    if table == "agreement":
        report = context["agreement"]
        header = [
            "scheme",
            "items",
            "judgments",
            "pairwise_agreement",
            "fleiss_kappa",
            "krippendorff_alpha",
            "gwet_ac1",
        ]
        rows = []
        for scheme, result in (("without strength", report.without_strength), ("with strength", report.with_strength)):
            data = result.as_dict()
            rows.append([scheme, *(data[h] for h in header[1:])])
        return header, rows
    if table == "agreement-pairs":
        header = ["first", "second", "items", "agreement", "cohen_kappa", "cohen_kappa_with_strength"]
        return header, [
            [p.first, p.second, p.items, p.agreement, p.kappa, p.kappa_strength] for p in context["agreement"].pairs
        ]
    # quality
    header = [
        "annotator",
        "judgments",
        "median_seconds",
        "sided",
        "left_share",
        "left_p",
        "shared",
        "agreement_with_majority",
        "agreement_p",
        "gold_items",
        "gold_accuracy",
        "edits",
        "edit_rate",
        "flags",
    ]
    rows = []
    for row in context["quality"]:
        f = row.figures
        rows.append(
            [
                f.username,
                f.judgments,
                row.median_seconds,
                f.sided,
                row.left_share,
                row.left_p,
                f.shared,
                row.agreement,
                row.agreement_p,
                f.gold_items,
                row.gold_accuracy,
                f.edits,
                row.edit_rate,
                "; ".join(row.flags),
            ]
        )
    return header, rows


def _cell(value: Any) -> Any:
    # Spreadsheets run cells that start with = + - @ as formulas: names and tags are user input.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _write_csv(response: HttpResponse, header: list[str], rows: Iterable[list[Any]]) -> None:
    writer = csv.writer(response)
    writer.writerow([_cell(v) for v in header])  # the win matrix's header holds model names
    for row in rows:
        writer.writerow([_cell(v) for v in row])


@login_required
@require_safe
def dashboard_csv(request: HtmxHttpRequest, slug: str, table: str) -> HttpResponse:
    if table not in CSV_TABLES:
        raise Http404("no such table")
    try:
        req = _scope(request, slug)
    except FilterError as error:
        return HttpResponse(json.dumps(error.form.errors.get_json_data()), status=400, content_type="application/json")
    header, rows = table_rows(req, table)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    suffix = (
        f"-round{req.round.number}"
        if req.round is not None and _TABLE_SECTION[table] in ("round", "agreement", "quality")
        else ""
    )
    response["Content-Disposition"] = f'attachment; filename="{req.project.slug}-{table}{suffix}.csv"'
    _write_csv(response, header, rows)
    return response
