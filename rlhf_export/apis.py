"""REST API for exports (``/api/v1/exports/``): start, list, follow, cancel, download.

Leads and ML engineers only (they see model identities anyway). Same shape as every
API view (docs/style.md): permission → input serializer → service/selector → output.
Downloads stream the file from storage (local disk), or redirect to a signed URL
when the storage serves files itself (S3).
"""

from __future__ import annotations

from django.http import FileResponse, HttpResponseRedirect
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse

from accounts.permissions import IsLeadOrMLEngineer
from annotation.selectors import project_get
from core.api import BaseApi, get_or_404
from rlhf_export import selectors, services
from rlhf_export.models import (
    ExportJob,
    ExportKind,
    ExportStatus,
    FileFormat,
    TextFormat,
)
from rlhf_export.schemas import ExportFilters, ExportOptions
from rlhf_export.writers import export_storage, is_local


class ArtifactSerializer(serializers.Serializer):
    name = serializers.CharField()
    role = serializers.CharField(help_text="data, manifest or card")
    split = serializers.CharField(help_text="train / test for data files; empty otherwise")
    rows = serializers.IntegerField(allow_null=True)
    size = serializers.IntegerField(help_text="Bytes.")
    sha256 = serializers.CharField()
    url = serializers.SerializerMethodField()

    class Meta:
        ref_name = "ExportFile"

    def get_url(self, artifact) -> str:
        return reverse(
            "rlhf_export_api:export-file", args=[artifact.job_id, artifact.name], request=self.context.get("request")
        )


class ExportJobOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    project = serializers.CharField(source="project.slug")
    kind = serializers.ChoiceField(choices=ExportKind.choices)
    file_format = serializers.ChoiceField(choices=FileFormat.choices)
    text_format = serializers.ChoiceField(choices=TextFormat.choices)
    filters = serializers.DictField()
    options = serializers.DictField()
    status = serializers.ChoiceField(choices=ExportStatus.choices)
    percent = serializers.IntegerField()
    judgments_done = serializers.IntegerField()
    judgments_total = serializers.IntegerField()
    rows_total = serializers.IntegerField()
    rows_train = serializers.IntegerField()
    rows_test = serializers.IntegerField()
    counts = serializers.DictField(help_text="Judgments read and rows left out, by reason.")
    error = serializers.CharField()
    attempt = serializers.IntegerField(help_text="How many times a worker took the job (more than 1 after a crash).")
    source_state = serializers.DictField(help_text="What the export read: highest judgment id, excluded annotators.")
    created_by = serializers.CharField(source="created_by.username", allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    files = serializers.SerializerMethodField()

    class Meta:
        ref_name = "ExportJob"

    @extend_schema_field(ArtifactSerializer(many=True))
    def get_files(self, job: ExportJob) -> list[dict]:
        if job.status != ExportStatus.SUCCEEDED:
            return []
        return list(ArtifactSerializer(selectors.export_artifact_list(job=job), many=True, context=self.context).data)


def _job_or_404(pk: int) -> ExportJob:
    return get_or_404(selectors.export_job_get(pk=pk), "export")


_FILTERS_HELP = "; ".join(f"{name}: {field.description}" for name, field in ExportFilters.model_fields.items())
_OPTIONS_HELP = "; ".join(f"{name}: {field.description}" for name, field in ExportOptions.model_fields.items())


class ExportListApi(BaseApi):
    """Export jobs, newest first; start one. Leads and ML engineers."""

    permissions = {"GET": IsLeadOrMLEngineer, "POST": IsLeadOrMLEngineer}

    class FilterSerializer(serializers.Serializer):
        project = serializers.SlugField(required=False, help_text="Only this project's exports.")

    class InputSerializer(serializers.Serializer):
        project = serializers.SlugField(help_text="The project's slug.")
        kind = serializers.ChoiceField(choices=ExportKind.choices)
        file_format = serializers.ChoiceField(choices=FileFormat.choices, default=FileFormat.PARQUET)
        text_format = serializers.ChoiceField(
            choices=TextFormat.choices,
            default=TextFormat.STANDARD,
            help_text="TRL's standard (plain strings) or conversational (message lists) format.",
        )
        filters = serializers.DictField(required=False, default=dict, help_text=_FILTERS_HELP)
        options = serializers.DictField(required=False, default=dict, help_text=_OPTIONS_HELP)

        class Meta:
            ref_name = "ExportCreate"

    @extend_schema(
        tags=["exports"],
        parameters=[FilterSerializer],
        responses=ExportJobOutputSerializer(many=True),
        summary="List export jobs",
    )
    def get(self, request: Request) -> Response:
        query = self.FilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        project = None
        if query.validated_data.get("project"):
            project = get_or_404(project_get(slug=query.validated_data["project"], user=request.user), "project")
        return self.paginated(selectors.export_job_list(project=project), ExportJobOutputSerializer)

    @extend_schema(
        tags=["exports"],
        request=InputSerializer,
        responses={201: ExportJobOutputSerializer},
        summary="Start an export job",
        description="Queues a Celery job on the default queue; follow it with GET /exports/{id}/.",
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        project = project_get(slug=data["project"], user=request.user)
        if project is None:
            raise serializers.ValidationError({"project": [f"No project {data['project']!r}."]})
        job = services.export_job_create(
            project=project,
            kind=data["kind"],
            file_format=data["file_format"],
            text_format=data["text_format"],
            filters=data["filters"],
            options=data["options"],
            created_by=request.user,
        )
        job = get_or_404(selectors.export_job_get(pk=job.pk), "export")
        return Response(
            ExportJobOutputSerializer(job, context={"request": request}).data, status=status.HTTP_201_CREATED
        )


class ExportDetailApi(BaseApi):
    """One export job: status, progress, counts, and its files with SHA-256 once it succeeded."""

    permissions = {"GET": IsLeadOrMLEngineer}

    @extend_schema(tags=["exports"], responses=ExportJobOutputSerializer, summary="Get an export job")
    def get(self, request: Request, pk: int) -> Response:
        return Response(ExportJobOutputSerializer(_job_or_404(pk), context={"request": request}).data)


class ExportCancelApi(BaseApi):
    """Cancel a pending or running export; its files are deleted."""

    permissions = {"POST": IsLeadOrMLEngineer}

    @extend_schema(
        tags=["exports"], request=None, responses={200: ExportJobOutputSerializer}, summary="Cancel an export job"
    )
    def post(self, request: Request, pk: int) -> Response:
        job = services.export_job_cancel(job=_job_or_404(pk))
        return Response(ExportJobOutputSerializer(job, context={"request": request}).data)


class ExportFileApi(BaseApi):
    """Download one file of a finished export (``Authorization: Token …`` or a session)."""

    permissions = {"GET": IsLeadOrMLEngineer}

    @extend_schema(
        tags=["exports"],
        responses={
            (200, "application/octet-stream"): OpenApiTypes.BINARY,
            302: OpenApiResponse(description="Redirect to a signed URL (S3)."),
        },
        summary="Download an export file",
    )
    def get(self, request: Request, pk: int, name: str):
        job = _job_or_404(pk)
        artifact = selectors.export_artifact_get(job=job, name=name) if job.status == ExportStatus.SUCCEEDED else None
        artifact = get_or_404(artifact, "file")
        return export_file_response(artifact)


def export_file_response(artifact):
    storage = export_storage()
    if not is_local(storage):
        # Object storage serves the bytes itself, through a signed, expiring URL.
        return HttpResponseRedirect(storage.url(artifact.storage_name))
    content_type = {
        ".json": "application/json",
        ".md": "text/markdown; charset=utf-8",
        ".jsonl": "application/jsonl",
        ".parquet": "application/vnd.apache.parquet",
    }.get("." + artifact.name.rsplit(".", 1)[-1], "application/octet-stream")
    response = FileResponse(
        storage.open(artifact.storage_name, "rb"),
        as_attachment=True,
        filename=f"export-{artifact.job_id}-{artifact.name.replace('/', '-')}",
        content_type=content_type,
    )
    response["Content-Length"] = str(artifact.size)
    response["Digest"] = f"sha-256={artifact.sha256}"
    response["X-Content-SHA256"] = artifact.sha256
    return response
