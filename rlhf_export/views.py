"""The ML engineer's export pages: start a job, list jobs, follow one (htmx-polled
progress), cancel it, download its files. Same shape as every page (docs/style.md)."""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import EmptyPage, Paginator
from django.http import Http404, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.utils.cache import add_never_cache_headers, patch_vary_headers
from django.views.decorators.http import (
    require_http_methods,
    require_POST,
    require_safe,
)

from accounts.roles import ROLE_LABELS, Role, has_role
from annotation.selectors import project_list
from core.http import HtmxHttpRequest
from rlhf_export import selectors, services
from rlhf_export.apis import export_file_response
from rlhf_export.forms import ExportForm, ExportListFilterForm
from rlhf_export.models import ExportJob, ExportStatus

EXPORT_ROLES = (Role.ML_ENGINEER, Role.LEAD)
JOBS_PER_PAGE = 25


def _require_role(request: HtmxHttpRequest) -> None:
    if not has_role(request.user, *EXPORT_ROLES):
        raise PermissionDenied("This page is for: " + ", ".join(ROLE_LABELS[r] for r in EXPORT_ROLES))


def _job_or_404(pk: int) -> ExportJob:
    job = selectors.export_job_get(pk=pk)
    if job is None:
        raise Http404("no such export")
    return job


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def export_list(request: HtmxHttpRequest) -> HttpResponse:
    _require_role(request)
    projects = project_list(user=request.user)
    if request.method == "POST":
        form = ExportForm(request.POST, projects=projects)
        if form.is_valid():
            try:
                job = services.export_job_create(
                    project=form.cleaned_data["project"],
                    kind=form.cleaned_data["kind"],
                    file_format=form.cleaned_data["file_format"],
                    text_format=form.cleaned_data["text_format"],
                    filters=form.filters(),
                    options=form.options(),
                    created_by=request.user,
                )
            except ValidationError as exc:
                for key, errors in exc.message_dict.items():
                    field = key.rsplit(".", 1)[-1]
                    form.add_error(field if field in form.fields else None, errors)
            else:
                messages.success(request, f"Export #{job.pk} started.")
                return redirect("export-detail", pk=job.pk)
    else:
        form = ExportForm(projects=projects, initial={"project": projects.first()})
    query = ExportListFilterForm(request.GET)
    if not query.is_valid():
        return HttpResponseBadRequest("page must be a positive whole number")
    paginator = Paginator(selectors.export_job_list(), JOBS_PER_PAGE)
    try:
        page = paginator.page(query.cleaned_data["page"] or 1)
    except EmptyPage as exc:
        raise Http404("no such page") from exc
    status = 400 if request.method == "POST" else 200
    return render(request, "rlhf_export/export_list.html", {"form": form, "page": page}, status=status)


@login_required
@require_safe
def export_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    _require_role(request)
    job = _job_or_404(pk)
    context = {
        "job": job,
        "files": selectors.export_artifact_list(job=job) if job.status == ExportStatus.SUCCEEDED else [],
        "count_items": [(key.replace("_", " ").capitalize(), value) for key, value in (job.counts or {}).items()],
        "setting_items": [(key, json.dumps(value)) for key, value in {**job.filters, **job.options}.items()],
    }
    fragment = request.htmx and not request.htmx.history_restore_request
    template = "rlhf_export/export_detail.html#job-status" if fragment else "rlhf_export/export_detail.html"
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    add_never_cache_headers(response)  # a progress bar must never come from a cache
    return response


@login_required
@require_POST
def export_cancel(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    _require_role(request)
    job = _job_or_404(pk)
    try:
        services.export_job_cancel(job=job)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.info(request, f"Export #{job.pk} cancelled.")
    return redirect("export-detail", pk=job.pk)


@login_required
@require_safe
def export_download(request: HtmxHttpRequest, pk: int, name: str) -> HttpResponse:
    _require_role(request)
    job = _job_or_404(pk)
    artifact = selectors.export_artifact_get(job=job, name=name) if job.status == ExportStatus.SUCCEEDED else None
    if artifact is None:
        raise Http404("no such file")
    return export_file_response(artifact)
