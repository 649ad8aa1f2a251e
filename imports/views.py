"""The lead's import pages: upload a file into a project and read the report."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.utils.cache import patch_vary_headers
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods, require_safe

from accounts.roles import ROLE_LABELS, Role, has_role
from annotation.models import Project, Round
from annotation.selectors import project_get, project_list
from core.http import HtmxHttpRequest
from imports.forms import ImportForm
from imports.services import ImportFailed, ImportKind, ImportOptions, ImportReport, import_run
from imports.uploads import SizeLimit, declared_too_big, size_limit_install, too_big_message


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


@csrf_exempt  # checked by _project_import, once the size limit stands before the upload
@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def project_import(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    """The upload form and, after a post, the report. An htmx GET gets the form alone (the
    project page shows it in its sidebar). A file larger than ``IMPORT_MAX_BYTES`` is
    refused on the form (413) before it is read (``imports/uploads.py``)."""
    _require_lead(request)
    project = _project_or_404(request, slug)
    if request.method == "POST" and declared_too_big(request):
        # Nothing of the body is read, so there is no form to check (nor a CSRF token):
        # the page only says why, and nothing is written.
        form = ImportForm(QueryDict(), project=project, file_refused=too_big_message())
        return _render(request, project, form, status=413)
    limit = size_limit_install(request) if request.method == "POST" else None
    return _project_import(request, project, limit)


@csrf_protect
def _project_import(request: HtmxHttpRequest, project: Project, limit: SizeLimit | None) -> HttpResponse:
    report: ImportReport | None = None
    report_round: Round | None = None
    status = 200
    if request.method == "POST":
        posted, files = request.POST, request.FILES  # the upload is read here, through the limit
        refused = too_big_message() if limit is not None and limit.exceeded else ""
        form = ImportForm(posted, files, project=project, file_refused=refused)
        if refused:
            form.is_valid()
            status = 413
        elif not form.is_valid():
            status = 400
        else:
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
                status = 400
            else:
                if report.round_id is not None:
                    report_round = Round.objects.filter(pk=report.round_id).first()
                if report.committed:
                    form = ImportForm(project=project, initial={"kind": data["kind"], "source": data["source"]})
    else:
        form = ImportForm(project=project)
    return _render(request, project, form, report=report, report_round=report_round, status=status)


def _render(
    request: HtmxHttpRequest,
    project: Project,
    form: ImportForm,
    *,
    report: ImportReport | None = None,
    report_round: Round | None = None,
    status: int = 200,
) -> HttpResponse:
    context = {
        "project": project,
        "form": form,
        "report": report,
        "report_round": report_round,
        "ignored_fields": sorted(report.ignored_fields) if report else [],
        "created_counts": report.counts_for_people("created") if report else [],
        "existing_counts": report.counts_for_people("existing") if report else [],
    }
    fragment = request.method != "POST" and request.htmx and not request.htmx.history_restore_request
    template = "imports/project_import.html#import-form" if fragment else "imports/project_import.html"
    response = render(request, template, context, status=status)
    patch_vary_headers(response, ["HX-Request"])
    return response
