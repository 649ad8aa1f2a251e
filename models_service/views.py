"""Pages of the models service (templates + htmx + one small script):

- the lead's sampling panel: progress per round and arm, the prompts that failed with
  their errors, the samples held back for naming a model, with "rerun" and "release";
- live mode: an annotator writes a prompt, both models answer at once into two panes
  (server-sent events read by static/js/live.js), then judges it like any other pair and
  may continue the dialogue with the preferred answer.

Same shape as every page (docs/style.md): access check -> form -> service -> render.
The live pages speak screen terms only (left/right, a turn id): no model name, sample id
or A/B side is rendered or accepted.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers, patch_vary_headers
from django.views.decorators.http import (
    require_http_methods,
    require_POST,
    require_safe,
)

from accounts.roles import ROLE_LABELS, Role, has_role
from annotation.assignment import AssignmentRefused
from annotation.forms import (
    SAFETY_OPTIONS,
    STRENGTH_OPTIONS,
    JudgmentForm,
    choice_options,
    errors_placed,
    form_errors,
    refusal_errors,
)
from annotation.judging import judgment_submit, screen_to_sample
from annotation.models import EditPolicy, Project, Round
from annotation.selectors import project_get
from core.http import HtmxHttpRequest
from models_service import live as live_mode
from models_service import sampling, selectors
from models_service.arms import round_generates
from models_service.forms import LiveModeForm, LivePromptForm
from models_service.models import LiveTurn

logger = logging.getLogger(__name__)

FAILURES_SHOWN = 20
FLAGGED_SHOWN = 20


def _require_role(request: HtmxHttpRequest, *roles: Role) -> None:
    if not has_role(request.user, *roles):
        raise PermissionDenied("This page is for: " + ", ".join(ROLE_LABELS[r] for r in roles))


def _project_or_404(request: HtmxHttpRequest, slug: str) -> Project:
    project = project_get(slug=slug, user=request.user)
    if project is None:
        raise Http404("no such project")
    return project


def _fragment(request: HtmxHttpRequest) -> bool:
    return bool(request.htmx and not request.htmx.history_restore_request)


# --- The lead's sampling panel --------------------------------------------------------------


def _panel_context(request: HtmxHttpRequest, project: Project) -> dict[str, Any]:
    progress = selectors.project_sampling_progress(project=project)
    for item in progress:
        failures = selectors.sampling_failure_list(round_=item.round)
        item.failures_shown = list(failures[:FAILURES_SHOWN])
        item.failures_more = max(0, item.failed - len(item.failures_shown))
    startable = [
        r
        for r in Round.objects.filter(project=project).exclude(status="closed").select_related("baseline", "candidate")
        if not r.sampling_jobs.exists() and round_generates(r)
    ]
    flagged = selectors.flagged_sample_list(project=project)
    return {
        "project": project,
        "progress": progress,
        "startable": startable,
        "flagged": list(flagged[:FLAGGED_SHOWN]),
        "flagged_count": flagged.count(),
        "running": any(item.active for item in progress),
        "can_act": has_role(request.user, Role.LEAD),
    }


def _render_panel(request: HtmxHttpRequest, project: Project, status: int = 200) -> HttpResponse:
    template = "models_service/sampling.html#panel" if _fragment(request) else "models_service/sampling.html"
    response = render(request, template, _panel_context(request, project), status=status)
    patch_vary_headers(response, ["HX-Request"])
    add_never_cache_headers(response)  # progress changes every second while jobs run
    return response


@login_required
@require_safe
def sampling_panel(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    _require_role(request, Role.LEAD, Role.ML_ENGINEER)
    return _render_panel(request, _project_or_404(request, slug))


def _after_action(request: HtmxHttpRequest, project: Project) -> HttpResponse:
    if _fragment(request):
        return _render_panel(request, project)
    return redirect("sampling-panel", slug=project.slug)


@login_required
@require_POST
def sampling_start_view(request: HtmxHttpRequest, slug: str, number: int) -> HttpResponse:
    _require_role(request, Role.LEAD)
    project = _project_or_404(request, slug)
    round_ = Round.objects.filter(project=project, number=number).first()
    if round_ is None:
        raise Http404("no such round")
    try:
        sampling.sampling_start(round_=round_)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(
            request, f"Sampling of round {round_.number} queued: only answers still missing are asked for."
        )
    return _after_action(request, project)


@login_required
@require_POST
def sample_release_view(request: HtmxHttpRequest, slug: str, sample_id: int) -> HttpResponse:
    _require_role(request, Role.LEAD)
    project = _project_or_404(request, slug)
    sample = selectors.sample_get(pk=sample_id)
    if sample is None or sample.prompt.project_id != project.pk:
        raise Http404("no such sample")
    try:
        created = sampling.sample_release(sample=sample)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"Sample released; {created} comparison{'s' if created != 1 else ''} created.")
    return _after_action(request, project)


@login_required
@require_POST
def live_mode_set_view(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    _require_role(request, Role.LEAD)
    project = _project_or_404(request, slug)
    form = LiveModeForm(request.POST)
    form.is_valid()  # a boolean field: anything but a true value is "off"
    live_mode.project_live_mode_set(project=project, enabled=form.cleaned_data.get("enabled", False))
    return _after_action(request, project)


# --- Live mode ------------------------------------------------------------------------------


def _live_project(request: HtmxHttpRequest, slug: str) -> Project:
    _require_role(request, Role.ANNOTATOR)
    project = _project_or_404(request, slug)
    if not project.live_mode:
        raise Http404("live prompts are not switched on for this project")
    return project


def _turn_or_404(request: HtmxHttpRequest, project: Project, turn_id: int) -> LiveTurn:
    turn = selectors.live_turn_get(pk=turn_id, annotator=request.user, project=project)
    if turn is None:
        raise Http404("no such turn")
    return turn


def _dialogue(turn: LiveTurn) -> list[dict[str, str]]:
    return [{"role": m.get("role", ""), "content": m.get("content", "")} for m in turn.prompt.messages]


def _live_unavailable(project: Project) -> str:
    try:
        live_mode.live_round(project)
    except live_mode.LiveUnavailable as exc:
        return " ".join(exc.messages)
    return ""


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def live(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    """Write a prompt (or the next message of a dialogue); both models answer on the turn's page."""
    project = _live_project(request, slug)
    parent: LiveTurn | None = None
    status = 200
    if request.method == "POST":
        form = LivePromptForm(request.POST)
        if form.is_valid():
            parent_id = form.cleaned_data.get("parent")
            if parent_id:
                parent = _turn_or_404(request, project, parent_id)
            try:
                turn = live_mode.live_turn_start(
                    project=project, annotator=request.user, text=form.cleaned_data["text"], parent=parent
                )
            except ValidationError as exc:
                pairs = exc.message_dict.items() if hasattr(exc, "error_dict") else [("__all__", exc.messages)]
                for field, errors in pairs:
                    # "parent" and anything else without a field of its own go on top of the form.
                    form.add_error(field if field in form.fields and field != "parent" else None, errors)
                status = 422
            else:
                return redirect("live-turn", slug=project.slug, turn_id=turn.pk)
        else:
            status = 422
            parent_id = request.POST.get("parent")
            if parent_id and str(parent_id).isdigit():
                parent = selectors.live_turn_get(pk=int(parent_id), annotator=request.user, project=project)
    else:
        form = LivePromptForm()
    reply = live_mode.live_continuation(parent) if parent else None
    context = {
        "project": project,
        "form": form,
        "parent": parent,
        "dialogue": _dialogue(parent) + [{"role": "assistant", "content": reply}] if parent and reply else [],
        "unavailable": _live_unavailable(project),
    }
    response = render(request, "models_service/live.html", context, status=status)
    add_never_cache_headers(response)
    return response


@login_required
@require_safe
def live_turn(request: HtmxHttpRequest, slug: str, turn_id: int) -> HttpResponse:
    project = _live_project(request, slug)
    turn = _turn_or_404(request, project, turn_id)
    context = {
        "project": project,
        "turn": turn,
        "dialogue": _dialogue(turn),
        "left_url": reverse("live-stream", args=[project.slug, turn.pk, "left"]),
        "right_url": reverse("live-stream", args=[project.slug, turn.pk, "right"]),
        "judge_url": reverse("live-judge", args=[project.slug, turn.pk]),
    }
    response = render(request, "models_service/live_turn.html", context)
    add_never_cache_headers(response)
    return response


HELD_MESSAGE = "This answer was held back for a lead to review. Start a new prompt."
BUSY_MESSAGE = "This answer is being written in another window; it appears here when it is complete."
# How long a browser waits before asking again for an answer another request is generating.
BUSY_RETRY_MS = 2000


def _sse(event: str, data: dict[str, Any], *, retry_ms: int | None = None) -> bytes:
    retry = f"retry: {retry_ms}\n" if retry_ms is not None else ""
    return f"{retry}event: {event}\ndata: {json.dumps(data)}\n\n".encode()


@login_required
@require_safe
def live_stream(request: HtmxHttpRequest, slug: str, turn_id: int, side: str) -> StreamingHttpResponse:
    """One answer of a turn as server-sent events: ``delta`` pieces, then ``done`` (or
    ``failed``, or ``held`` for an answer kept from annotators). Named ``failed``, not
    ``error``: a browser's EventSource uses "error" for a broken connection.

    While another request generates this answer, the stream is one ``busy`` event with a
    ``retry`` delay and ends at once: the browser's EventSource reconnects after it by
    itself and then gets the stored answer (static/js/live.js). No second generation, and
    no web thread waits on the first."""
    project = _live_project(request, slug)
    turn = _turn_or_404(request, project, turn_id)
    if side not in ("left", "right"):
        raise Http404("no such side")
    sample_side = screen_to_sample(side, turn.left)

    def events() -> Iterator[bytes]:
        yield b": stream open\n\n"  # headers and a first byte out at once, before the model starts
        try:
            for event in live_mode.live_stream(turn=turn, side=sample_side):
                if event.done and event.extra.get("busy"):
                    yield _sse("busy", {"message": BUSY_MESSAGE}, retry_ms=BUSY_RETRY_MS)
                elif event.done and event.extra.get("held"):
                    # Never say why: that would tell the annotator the answer named its model.
                    yield _sse("held", {"message": HELD_MESSAGE})
                elif event.done:
                    yield _sse("done", {"finish_reason": event.generation.finish_reason if event.generation else ""})
                else:
                    yield _sse("delta", {"text": event.delta})
        except live_mode.LiveStreamFailed:
            # The details (server address, model path) are for leads: they stay on the turn.
            logger.warning("live turn %s: the %s answer failed", turn.pk, side)
            yield _sse(
                "failed", {"message": "This answer could not be generated: the model server did not answer. Try again."}
            )

    response = StreamingHttpResponse(events(), content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache, no-store"
    response["X-Accel-Buffering"] = "no"  # nginx: pass the pieces on as they come
    return response


def _render_judge(
    request: HtmxHttpRequest,
    project: Project,
    turn: LiveTurn,
    *,
    status: int = 200,
    values: dict[str, str] | None = None,
    errors: dict[str, list[str]] | None = None,
    reason: str = "",
) -> HttpResponse:
    errors, general_errors = errors_placed(dict(errors or {}), project)
    context = {
        "project": project,
        "turn": turn,
        "reason": reason,
        "values": values or {},
        "errors": errors,
        "general_errors": general_errors,
        "choice_options": choice_options(project),
        "strength_options": STRENGTH_OPTIONS,
        "safety_options": SAFETY_OPTIONS,
        "edits_on": project.edit_policy != EditPolicy.OFF,
    }
    response = render(request, "models_service/live_turn.html#judge", context, status=status)
    add_never_cache_headers(response)
    return response


@login_required
@require_safe
def live_judge(request: HtmxHttpRequest, slug: str, turn_id: int) -> HttpResponse:
    """The judgment form, once both answers are in (the author takes the comparison's first slot)."""
    project = _live_project(request, slug)
    turn = _turn_or_404(request, project, turn_id)
    judging = live_mode.live_assignment_create(turn=turn)
    if judging.assignment is None:
        return _render_judge(
            request, project, turn, reason=judging.reason, status=409 if judging.code == "waiting" else 200
        )
    return _render_judge(request, project, turn)


@login_required
@require_POST
def live_submit(request: HtmxHttpRequest, slug: str, turn_id: int) -> HttpResponse:
    project = _live_project(request, slug)
    turn = _turn_or_404(request, project, turn_id)
    turn.refresh_from_db()
    if turn.assignment_id is None:
        return _render_judge(request, project, turn, status=409, reason="Wait until both answers are complete.")
    values = {
        k: str(request.POST.get(k, "")) for k in ("choice", "strength", "safety", "rationale", "edit_text", "edit_base")
    }
    form = JudgmentForm(request.POST)
    if not form.is_valid():
        errors = form_errors(form)
        return _render_judge(request, project, turn, status=422, values=values, errors=errors)
    try:
        judgment_submit(assignment_id=turn.assignment_id, annotator=request.user, verdict=form.verdict(), screen=True)
    except AssignmentRefused as exc:
        if hasattr(exc, "error_dict"):
            errors = refusal_errors(exc)
        else:
            errors = {"__all__": exc.messages}
        return _render_judge(request, project, turn, status=422, values=values, errors=errors)
    continuation = live_mode.live_continuation(turn)
    context = {
        "project": project,
        "turn": turn,
        "can_continue": bool(continuation),
        "form": LivePromptForm(initial={"parent": turn.pk}),
    }
    return render(request, "models_service/live_turn.html#after", context)
