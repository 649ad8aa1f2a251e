"""Server-rendered pages (Django templates + htmx).

Every view has the same shape (docs/style.md): access check -> form -> service -> render.
htmx requests get a named partial of the same page template.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import EmptyPage, Paginator
from django.db.models import Prefetch
from django.http import Http404, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.cache import add_never_cache_headers, patch_vary_headers
from django.views.decorators.http import require_POST, require_safe

from accounts.roles import ROLE_LABELS, Role, has_role
from annotation import selectors
from annotation.assignment import AssignmentRefused, NoWork, assignment_next, assignment_skip
from annotation.forms import (
    SAFETY_OPTIONS,
    STRENGTH_OPTIONS,
    JudgmentForm,
    NextPairForm,
    PairPageForm,
    SkipForm,
    choice_options,
    errors_placed,
    form_errors,
    refusal_errors,
)
from annotation.judging import client_rules, judgment_submit
from annotation.models import Assignment, Project, Round, RoundStatus
from annotation.selectors import comparison_list, project_get, project_list, round_list
from core.http import HtmxHttpRequest

ANY_ROLE = (Role.ANNOTATOR, Role.LEAD, Role.ML_ENGINEER)
PAIRS_PER_PAGE = 20


def _require_role(request: HtmxHttpRequest, *roles: Role) -> None:
    if not has_role(request.user, *roles):
        raise PermissionDenied("This page is for: " + ", ".join(ROLE_LABELS[r] for r in roles))


def _with_percent(rounds: list[Round]) -> list[Round]:
    """Share of a round's comparisons that have all their judgments, as a whole percentage."""
    for round_ in rounds:
        counted: Any = round_  # round_list() annotates the counts
        total = counted.comparison_count
        counted.percent_complete = int(100 * counted.comparisons_complete / total) if total else 0
    return rounds


def _project_or_404(request: HtmxHttpRequest, slug: str) -> Project:
    project = project_get(slug=slug, user=request.user)
    if project is None:
        raise Http404("no such project")
    return project


# --- Home and projects -----------------------------------------------------------------


@login_required
@require_safe
def home(request: HtmxHttpRequest) -> HttpResponse:
    has_any_role = has_role(request.user, *ANY_ROLE)
    projects: list[Project] = []
    if has_any_role:
        projects = list(
            project_list(user=request.user).prefetch_related(
                Prefetch("rounds", queryset=round_list(), to_attr="rounds_with_progress")
            )
        )
        for project in projects:
            shown: Any = project  # the prefetch puts the rounds on rounds_with_progress
            _with_percent(shown.rounds_with_progress)
            shown.open_rounds = [r for r in shown.rounds_with_progress if r.status == RoundStatus.OPEN]
    return render(request, "annotation/home.html", {"projects": projects, "has_any_role": has_any_role})


@login_required
@require_safe
def project_detail(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    _require_role(request, *ANY_ROLE)
    project = _project_or_404(request, slug)
    rounds = _with_percent(list(round_list(project=project)))
    context: dict[str, Any] = {
        "project": project,
        "rounds": rounds,
        "has_open_round": any(r.status == RoundStatus.OPEN for r in rounds),
    }
    return render(request, "annotation/project_detail.html", context)


# --- Pair browser --------------------------------------------------------------------


@login_required
@require_safe
def round_pairs(request: HtmxHttpRequest, slug: str, number: int) -> HttpResponse:
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


# --- The annotator's workspace -------------------------------------------------------
#
# One page (annotate.html) whose "pair" partial is what every htmx request gets back: the
# pair to judge, or why there is none. The page speaks screen terms only (left/right and
# the assignment id): no sample id, model name or A/B side is ever rendered or accepted.


@dataclass(frozen=True)
class Turn:
    role: str
    content: str
    is_last_user: bool = False


@dataclass(frozen=True)
class PairScreen:
    """One assignment as the annotator sees it: the conversation and two raw answer texts."""

    assignment_id: int
    turns: list[Turn]
    left_text: str
    right_text: str
    # Seconds until the lease runs out: the page will not show a prefetched pair this old.
    lease_seconds_left: int


def _pair_screen(assignment_id: int) -> PairScreen:
    pair = selectors.pair_for_annotator(pk=assignment_id)
    if pair is None:
        raise Http404("no such assignment")
    messages_ = [m for m in pair["prompt"] if isinstance(m, dict)]
    last_user = max((i for i, m in enumerate(messages_) if m.get("role") == "user"), default=-1)
    turns = [
        Turn(
            role=str(m.get("role")) if m.get("role") in ("system", "user", "assistant") else "other",
            content=str(m.get("content") or ""),
            is_last_user=i == last_user,
        )
        for i, m in enumerate(messages_)
    ]
    return PairScreen(
        assignment_id=pair["assignment"],
        turns=turns,
        left_text=pair["left"],
        right_text=pair["right"],
        lease_seconds_left=max(0, int((pair["lease_expires_at"] - timezone.now()).total_seconds())),
    )


def _annotator_project(request: HtmxHttpRequest, slug: str) -> Project:
    _require_role(request, Role.ANNOTATOR)
    project = selectors.project_get_cached(slug=slug, user=request.user)
    if project is None:
        raise Http404("no such project")
    return project


def _own_assignment(user, project: Project, assignment_id: int) -> bool:
    """Whether the assignment is this user's and belongs to this project."""
    return Assignment.objects.filter(pk=assignment_id, annotator=user, comparison__round__project=project).exists()


def _render_workspace(
    request: HtmxHttpRequest,
    project: Project,
    got: Assignment | NoWork | int,
    *,
    status: int = 200,
    values: dict[str, str] | None = None,
    errors: dict[str, list[str]] | None = None,
    notice: str = "",
    skip_open: bool = False,
    prefetch: bool = False,
) -> HttpResponse:
    errors, general_errors = errors_placed(dict(errors or {}), project)
    if isinstance(got, NoWork):
        pair, no_work = None, got
    else:
        pair, no_work = _pair_screen(got if isinstance(got, int) else got.pk), None
    context = {
        "project": project,
        "pair": pair,
        "no_work": no_work,
        "retry_after": max(2, no_work.retry_after_seconds) if no_work and no_work.retry_after_seconds else None,
        "judged_today": selectors.judged_today_count(annotator=request.user),
        "values": values or {},
        "errors": errors,
        "general_errors": general_errors,
        "notice": notice,
        "skip_open": skip_open,
        "prefetch": prefetch,
        "choice_options": choice_options(project),
        "rules_json": json.dumps(client_rules(project)),
        "strength_options": STRENGTH_OPTIONS,
        "safety_options": SAFETY_OPTIONS,
    }
    # A history restore (back button after a cache miss) needs the whole page, not the fragment.
    fragment = request.htmx and not request.htmx.history_restore_request
    template = "annotation/annotate.html#pair" if fragment else "annotation/annotate.html"
    response = render(request, template, context, status=status)
    patch_vary_headers(response, ["HX-Request"])
    add_never_cache_headers(response)  # every answer hands out or shows a lease
    return response


def _next_pair(request: HtmxHttpRequest, project: Project, notice: str = "") -> HttpResponse:
    """After a judgment or skip: the next pair for htmx, a redirect to the page otherwise."""
    if not request.htmx:
        if notice:
            messages.warning(request, notice)
        return redirect("annotate", slug=project.slug)
    got = assignment_next(annotator=request.user, project=project)
    return _render_workspace(request, project, got, notice=notice)


def _posted_values(data) -> dict[str, str]:
    keys = ("choice", "strength", "safety", "rationale", "edit_text", "edit_base", "reason")
    return {key: str(data.get(key, "")) for key in keys}


@login_required
@require_safe
def annotate(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    project = _annotator_project(request, slug)
    got = assignment_next(annotator=request.user, project=project)
    return _render_workspace(request, project, got)


@login_required
@require_safe
def annotate_next(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    """The next pair as a fragment: the no-work poll, and the prefetch (``?exclude=`` the pair on screen)."""
    project = _annotator_project(request, slug)
    form = NextPairForm(request.GET)
    if not form.is_valid():
        return HttpResponseBadRequest("exclude must be an assignment id")
    if not request.htmx:
        return redirect("annotate", slug=project.slug)
    exclude = form.cleaned_data["exclude"]
    got = assignment_next(annotator=request.user, project=project, exclude=(exclude,) if exclude else ())
    return _render_workspace(request, project, got, prefetch=exclude is not None)


@login_required
@require_POST
def annotate_submit(request: HtmxHttpRequest, slug: str, assignment_id: int) -> HttpResponse:
    project = _annotator_project(request, slug)
    if not _own_assignment(request.user, project, assignment_id):
        return _next_pair(request, project, "That pair does not exist or is not yours; here is your next one.")
    form = JudgmentForm(request.POST)
    values = _posted_values(request.POST)
    if not form.is_valid():
        errors = form_errors(form)
        return _render_workspace(request, project, assignment_id, status=422, values=values, errors=errors)
    try:
        judgment_submit(assignment_id=assignment_id, annotator=request.user, verdict=form.verdict(), screen=True)
    except AssignmentRefused as exc:
        if hasattr(exc, "error_dict"):
            errors = refusal_errors(exc)
            return _render_workspace(request, project, assignment_id, status=422, values=values, errors=errors)
        if exc.refusal.gone:
            return _next_pair(request, project, " ".join(exc.messages))
        return _render_workspace(
            request, project, assignment_id, status=422, values=values, errors={"__all__": exc.messages}
        )
    return _next_pair(request, project)


@login_required
@require_POST
def annotate_skip(request: HtmxHttpRequest, slug: str, assignment_id: int) -> HttpResponse:
    project = _annotator_project(request, slug)
    if not _own_assignment(request.user, project, assignment_id):
        return _next_pair(request, project, "That pair does not exist or is not yours; here is your next one.")
    form = SkipForm(request.POST)
    values = _posted_values(request.POST)
    if not form.is_valid():
        errors = form_errors(form)
        return _render_workspace(
            request, project, assignment_id, status=422, values=values, errors=errors, skip_open=True
        )
    try:
        assignment_skip(assignment_id=assignment_id, annotator=request.user, reason=form.cleaned_data["reason"])
    except AssignmentRefused as exc:
        if exc.refusal.gone:
            return _next_pair(request, project, " ".join(exc.messages))
        return _render_workspace(
            request,
            project,
            assignment_id,
            status=422,
            values=values,
            errors={"reason": exc.messages},
            skip_open=True,
        )
    return _next_pair(request, project)
