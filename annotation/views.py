"""Server-rendered pages (Django templates + htmx).

Every view has the same shape (STYLE.md §3): access check → form → service → render.
htmx requests get a named partial of the same page template (STYLE.md §4).
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import EmptyPage, Paginator
from django.db import DatabaseError, connection
from django.db.models import Prefetch
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import redirect, render
from django.utils.cache import patch_vary_headers
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_safe

from annotation.forms import ImportForm, PairPageForm
from annotation.imports import ImportFailed, ImportKind, ImportOptions, ImportReport, import_run
from annotation.models import Project, Round, RoundStatus
from annotation.roles import ROLE_LABELS, Role, has_role
from annotation.selectors import comparison_list, project_get, project_list, round_list

logger = logging.getLogger(__name__)

ANY_ROLE = (Role.ANNOTATOR, Role.LEAD, Role.ML_ENGINEER)
PAIRS_PER_PAGE = 20


def _require_role(request: HttpRequest, *roles: Role) -> None:
    if not has_role(request.user, *roles):
        raise PermissionDenied("This page is for: " + ", ".join(ROLE_LABELS[r] for r in roles))


def _with_percent(rounds: list[Round]) -> list[Round]:
    """Share of a round's comparisons that have all their judgments, as a whole percentage."""
    for round_ in rounds:
        total = round_.comparison_count
        round_.percent_complete = int(100 * round_.comparisons_complete / total) if total else 0
    return rounds


def _project_or_404(request: HttpRequest, slug: str) -> Project:
    project = project_get(slug=slug, user=request.user)
    if project is None:
        raise Http404("no such project")
    return project


# --- Health --------------------------------------------------------------------------


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """For load balancers and orchestrators: no login, one trivial query."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError:
        logger.exception("healthz: the database did not answer")
        return JsonResponse({"status": "error", "database": "error"}, status=503)
    return JsonResponse({"status": "ok", "database": "ok"})


# --- Home and projects -----------------------------------------------------------------


@login_required
@require_safe
def home(request: HttpRequest) -> HttpResponse:
    has_any_role = has_role(request.user, *ANY_ROLE)
    projects: list[Project] = []
    if has_any_role:
        projects = list(
            project_list(user=request.user).prefetch_related(
                Prefetch("rounds", queryset=round_list(), to_attr="rounds_with_progress")
            )
        )
        for project in projects:
            _with_percent(project.rounds_with_progress)
            project.open_rounds = [r for r in project.rounds_with_progress if r.status == RoundStatus.OPEN]
    return render(request, "annotation/home.html", {"projects": projects, "has_any_role": has_any_role})


@login_required
@require_safe
def project_detail(request: HttpRequest, slug: str) -> HttpResponse:
    _require_role(request, *ANY_ROLE)
    project = _project_or_404(request, slug)
    rounds = _with_percent(list(round_list(project=project)))
    context: dict[str, Any] = {"project": project, "rounds": rounds}
    if has_role(request.user, Role.LEAD):
        context["form"] = ImportForm(project=project)
    return render(request, "annotation/project_detail.html", context)


# --- Pair browser --------------------------------------------------------------------


@login_required
@require_safe
def round_pairs(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    _require_role(request, Role.LEAD, Role.ML_ENGINEER)
    project = _project_or_404(request, slug)
    round_ = round_list(project=project).filter(number=number).first()
    if round_ is None:
        raise Http404("no such round")
    form = PairPageForm(request.GET)
    if not form.is_valid():
        return HttpResponseBadRequest("page must be a positive whole number")
    paginator = Paginator(comparison_list(round_=round_), PAIRS_PER_PAGE)
    try:
        page = paginator.page(form.cleaned_data["page"])
    except EmptyPage as exc:
        raise Http404("no such page") from exc
    context = {"project": project, "round": _with_percent([round_])[0], "page": page, "paginator": paginator}
    # A history restore (back button after a cache miss) needs the whole page, not the fragment.
    fragment = request.htmx and not request.htmx.history_restore_request
    template = "annotation/round_pairs.html#pairs-page" if fragment else "annotation/round_pairs.html"
    response = render(request, template, context)
    # Same URL, two bodies (page or fragment): caches must key on the htmx header.
    patch_vary_headers(response, ["HX-Request"])
    return response


# --- Imports -------------------------------------------------------------------------


@login_required
@require_safe
def import_start(request: HttpRequest) -> HttpResponse:
    """The nav's "Import": straight to the project's import page when there is one project."""
    _require_role(request, Role.LEAD)
    projects = list(project_list(user=request.user).filter(is_active=True))
    if len(projects) == 1:
        return redirect("project-import", slug=projects[0].slug)
    return render(request, "annotation/import_start.html", {"projects": projects})


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def project_import(request: HttpRequest, slug: str) -> HttpResponse:
    _require_role(request, Role.LEAD)
    project = _project_or_404(request, slug)
    report: ImportReport | None = None
    report_round: Round | None = None
    if request.method == "POST":
        form = ImportForm(request.POST, request.FILES, project=project)
        if form.is_valid():
            data = form.cleaned_data
            upload = data["file"]
            options = ImportOptions(
                kind=ImportKind(data["kind"]),
                project=project,
                round=data["round"],
                source=data["source"].strip(),
                skip_invalid=data["skip_invalid"],
                model_a=data["model_a"],
                model_b=data["model_b"],
            )
            try:
                upload.seek(0)
                # The underlying file (BytesIO, or a temporary file for big uploads)
                # streams line by line, which is what the importer reads.
                report = import_run(stream=upload.file, filename=upload.name, options=options)
            except ImportFailed as exc:
                form.add_error("file", str(exc))
            else:
                if report.round_id is not None:
                    report_round = Round.objects.filter(pk=report.round_id).first()
                if report.committed:
                    form = ImportForm(project=project, initial={"kind": data["kind"], "source": data["source"]})
    else:
        form = ImportForm(project=project)
    context = {
        "project": project,
        "form": form,
        "report": report,
        "report_round": report_round,
        "ignored_fields": sorted(report.ignored_fields) if report else [],
    }
    return render(request, "annotation/project_import.html", context)
