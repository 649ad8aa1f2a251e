"""The lead's import pages: upload a file into a project and read the report."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_http_methods, require_safe

from accounts.roles import ROLE_LABELS, Role, has_role
from annotation.models import Project, Round
from annotation.selectors import project_get, project_list
from core.http import HtmxHttpRequest
from imports.forms import ImportForm
from imports.services import ImportFailed, ImportKind, ImportOptions, ImportReport, import_run


def _require_lead(request: HtmxHttpRequest) -> None:
    if not has_role(request.user, Role.LEAD):
        raise PermissionDenied("This page is for: " + ROLE_LABELS[Role.LEAD])


def _project_or_404(request: HtmxHttpRequest, slug: str) -> Project:
    project = project_get(slug=slug, user=request.user)
    if project is None:
        raise Http404("no such project")
    return project


@login_required
@require_safe
def import_start(request: HtmxHttpRequest) -> HttpResponse:
    """The nav's "Import": straight to the project's import page when there is one project."""
    _require_lead(request)
    projects = list(project_list(user=request.user).filter(is_active=True))
    if len(projects) == 1:
        return redirect("project-import", slug=projects[0].slug)
    return render(request, "imports/import_start.html", {"projects": projects})


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def project_import(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    """The upload form and, after a post, the report. An htmx GET gets the form alone (the
    project page shows it in its sidebar)."""
    _require_lead(request)
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
                source=data["source"],
                skip_invalid=data["skip_invalid"],
                model_a=data["model_a"],
                model_b=data["model_b"],
            )
            try:
                upload.seek(0)
                # The underlying file (BytesIO, or a temporary file for big uploads)
                # streams record by record, which is what the importer reads.
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
    fragment = request.method != "POST" and request.htmx and not request.htmx.history_restore_request
    template = "imports/project_import.html#import-form" if fragment else "imports/project_import.html"
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response
