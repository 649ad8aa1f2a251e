"""REST API of imports: upload a file into a project."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.permissions import IsLeadOrMLEngineer
from annotation import selectors
from core.api import BaseApi, get_or_404
from core.limits import MAX_ID
from imports.services import FileFormat, ImportFailed, ImportKind, ImportOptions, ImportReport, RowError, import_run
from imports.uploads import SizeLimit, declared_too_big, size_limit_install, too_big_message


class _CommaListField(serializers.ListField):
    """A list given as repeated form fields, or as one comma-separated value."""

    def to_internal_value(self, data: Any) -> list[Any]:
        if isinstance(data, str):
            data = [data]
        if isinstance(data, list) and all(isinstance(item, str) for item in data):
            data = [part.strip() for item in data for part in item.split(",") if part.strip()]
        return super().to_internal_value(data)


class ImportErrorSerializer(serializers.Serializer):
    line = serializers.IntegerField(
        allow_null=True, help_text="1-based line of a JSONL or CSV file; null for a JSON array and the whole file."
    )
    item = serializers.IntegerField(
        allow_null=True, help_text="1-based position of the record in a JSON array; null otherwise."
    )
    field = serializers.CharField(help_text="The field at fault; empty for the whole record.")
    message = serializers.CharField()

    class Meta:
        ref_name = "ImportError"


class LabelsNotStoredSerializer(serializers.Serializer):
    line = serializers.IntegerField(allow_null=True)
    item = serializers.IntegerField(allow_null=True)
    count = serializers.IntegerField(help_text="Labels of this record that were not stored.")

    class Meta:
        ref_name = "ImportLabelsNotStored"


@extend_schema(tags=["imports"])
class ImportApi(BaseApi):
    """Upload a file of prompts, samples or pairs into a project. Leads and ML engineers."""

    permissions = {"POST": IsLeadOrMLEngineer}
    parser_classes = [MultiPartParser, FormParser]
    size_limit: SizeLimit | None = None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # Before authentication: a session's CSRF check reads the form, and with it the file.
        self.size_limit = size_limit_install(request)
        super().initial(request, *args, **kwargs)

    class InputSerializer(serializers.Serializer):
        file = serializers.FileField(help_text="JSONL, CSV or a JSON array.")
        kind = serializers.ChoiceField(choices=[k.value for k in ImportKind])
        round = serializers.IntegerField(
            required=False,
            allow_null=True,
            default=None,
            min_value=0,
            max_value=MAX_ID,
            help_text="Round number in the project. Pairs: default is an import round of their own; "
            "samples: also build that round's comparisons.",
        )
        source = serializers.CharField(  # type: ignore[assignment]  # a field named like Field.source
            required=False,
            allow_blank=True,
            default="",
            max_length=200,
            help_text="Where the data comes from; names the outside annotators of imported labels.",
        )
        skip_invalid = serializers.BooleanField(
            required=False, default=False, help_text="Commit the good lines and report the bad ones."
        )
        model_a = serializers.CharField(required=False, default="model-a", max_length=200)
        model_b = serializers.CharField(required=False, default="model-b", max_length=200)
        label_columns = _CommaListField(
            child=serializers.CharField(max_length=200),
            required=False,
            default=lambda: ["label"],
            help_text="Pairs: columns holding existing labels (default: label).",
        )
        tags = _CommaListField(
            child=serializers.CharField(max_length=64),
            required=False,
            default=list,
            help_text="Tags added to every imported prompt.",
        )
        format = serializers.ChoiceField(
            choices=[f.value for f in FileFormat],
            required=False,
            allow_null=True,
            default=None,
            help_text="Default: from the file name.",
        )

        class Meta:
            ref_name = "ImportUpload"

    class OutputSerializer(serializers.Serializer):
        kind = serializers.CharField()
        committed = serializers.BooleanField(help_text="False: nothing was written.")
        records = serializers.IntegerField()
        valid = serializers.IntegerField()
        created = serializers.DictField(child=serializers.IntegerField())
        existing = serializers.DictField(child=serializers.IntegerField())
        error_count = serializers.IntegerField()
        errors = ImportErrorSerializer(many=True)  # type: ignore[assignment]  # a field named like Serializer.errors
        errors_truncated = serializers.BooleanField()
        ignored_fields = serializers.ListField(child=serializers.CharField())
        round_id = serializers.IntegerField(allow_null=True)
        seconds = serializers.FloatField()
        labels_read = serializers.IntegerField(help_text="Labels found in the records read.")
        labels_not_stored = serializers.IntegerField(
            help_text="Labels read that were neither stored nor already there (all of them when nothing was written)."
        )
        labels_not_stored_at = LabelsNotStoredSerializer(
            many=True, help_text="The records that lost labels (the errors say why); the first IMPORT_MAX_ERRORS."
        )
        labels_not_stored_truncated = serializers.BooleanField()

        class Meta:
            ref_name = "ImportReport"

    class TooLargeSerializer(serializers.Serializer):
        detail = serializers.CharField()
        max_bytes = serializers.IntegerField(help_text="IMPORT_MAX_BYTES")

        class Meta:
            ref_name = "ImportTooLarge"

    @extend_schema(
        request={"multipart/form-data": InputSerializer},
        responses={201: OutputSerializer, 400: OutputSerializer, 413: TooLargeSerializer},
        summary="Import prompts, samples or pairs from a file",
        description="Every line is validated. Without skip_invalid a single bad line means nothing is written "
        "(HTTP 400, the errors name their line and field); HTTP 201 when the import was committed. Labels that "
        "were not stored are counted (labels_not_stored) and placed (labels_not_stored_at). A file larger than "
        "IMPORT_MAX_BYTES is refused with HTTP 413 before it is read; a line or item longer than "
        "IMPORT_MAX_RECORD_BYTES is an error on its line.",
    )
    def post(self, request: Request, slug: str) -> Response:
        project = get_or_404(selectors.project_get(slug=slug, user=request.user), "project")
        too_large = Response(
            {"detail": too_big_message(), "max_bytes": settings.IMPORT_MAX_BYTES},
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
        if declared_too_big(request):  # refused before a byte of it is read
            return too_large
        form = request.data  # the upload is read here, through the size limit
        if self.size_limit is not None and self.size_limit.exceeded:
            return too_large
        serializer = self.InputSerializer(data=form)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        round_ = None
        if data["round"] is not None:
            round_ = selectors.round_get_by_number(project=project, number=data["round"])
            if round_ is None:
                missing = f"Project {project.slug!r} has no round {data['round']}."
                raise serializers.ValidationError({"round": [missing]})
        kind = ImportKind(data["kind"])
        options = ImportOptions(
            kind=kind,
            project=project,
            round=round_,
            source=data["source"],
            skip_invalid=data["skip_invalid"],
            file_format=FileFormat(data["format"]) if data["format"] else None,
            model_a=data["model_a"],
            model_b=data["model_b"],
            label_columns=tuple(data["label_columns"]),
            extra_tags=tuple(data["tags"]),
        )
        upload = data["file"]
        try:
            report = import_run(stream=upload, filename=upload.name, options=options)
        except ImportFailed as exc:  # the options or the file as a whole, not one line
            report = ImportReport(kind=kind.value, error_count=1, errors=[RowError(None, "", str(exc))])
        return Response(
            self.OutputSerializer(report.as_dict()).data,
            status=status.HTTP_201_CREATED if report.committed else status.HTTP_400_BAD_REQUEST,
        )
