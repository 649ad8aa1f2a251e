"""REST API v1 (``/api/v1/``): model versions, projects, rounds, prompts, comparisons,
judgments, imports, API tokens.

Every view has the same shape (STYLE.md §3): access check (the permission classes
of ``permissions``, then the object lookup) → input serializer → service or selector
→ output serializer. Serializers only translate; writes go through
``annotation.services``, reads through ``annotation.selectors``.

The comparison and judgment endpoints show which model wrote which sample; they are
for leads and ML engineers. Annotators reach only what carries no model identity.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView, set_rollback
from rest_framework.views import exception_handler as drf_exception_handler

from annotation import selectors, services
from annotation.assignment import (
    AssignmentRefused,
    NoWork,
    Verdict,
    assignment_next,
    assignment_skip,
    judgment_submit,
    sample_to_screen,
)
from annotation.imports import (
    FileFormat,
    ImportFailed,
    ImportKind,
    ImportOptions,
    ImportReport,
    RowError,
    import_run,
)
from annotation.models import (
    ApiToken,
    EditPolicy,
    JudgmentSource,
    PairingStrategy,
    Preference,
    Project,
    RoundStatus,
    Safety,
    Strength,
)
from annotation.permissions import IsAnnotator, IsAnyRole, IsLead, IsLeadOrMLEngineer
from annotation.roles import Role, user_roles
from models_service.models import Backend, ModelVersion

# --- Plumbing --------------------------------------------------------------------------


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus: Django's ValidationError (raised by services) and IntegrityError
    (a database constraint refused the write) become 400 responses instead of 500s."""
    if isinstance(exc, DjangoValidationError):
        detail = serializers.as_serializer_error(exc)
        if NON_FIELD_ERRORS in detail:  # full_clean's "__all__" reads better as DRF's key
            detail[api_settings.NON_FIELD_ERRORS_KEY] = detail.pop(NON_FIELD_ERRORS)
        set_rollback()
        return Response(detail, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, IntegrityError):
        set_rollback()
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        return Response(
            {
                "detail": "The database refused the change: it conflicts with data already stored "
                "or breaks one of its rules.",
                "reason": reason,
            },
            status=status.HTTP_400_BAD_REQUEST,
        )
    return drf_exception_handler(exc, context)


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """Describes ``Authorization: Token <key>`` in the OpenAPI schema."""

    target_class = "annotation.authentication.ApiTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):  # type: ignore[no-untyped-def]
        return build_bearer_security_scheme_object(header_name="Authorization", token_prefix="Token")


class ApiPagination(LimitOffsetPagination):
    max_limit = 1000


class BaseApi(APIView):
    # Permissions are declared per HTTP method: ``permissions = {"GET": IsAnyRole,
    # "POST": IsLead}``; HEAD and OPTIONS follow GET. A method left out needs only a
    # logged-in user (and then gets its 405). No docstring here on purpose: the
    # schema would show it on every view that has none of its own.

    permissions: ClassVar[Mapping[str, type[BasePermission]]] = {}
    pagination_class = ApiPagination

    def get_permissions(self) -> list[BasePermission]:
        method = self.request.method if self.request is not None else "GET"
        if method in ("HEAD", "OPTIONS"):
            method = "GET"
        role = self.permissions.get(method or "GET")
        # IsAuthenticated first: without credentials the answer is 401, not 403.
        return [IsAuthenticated()] + ([role()] if role and role is not IsAuthenticated else [])

    def paginated(self, queryset: Any, serializer_class: type[serializers.Serializer], **context: Any) -> Response:
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(queryset, self.request, view=self)
        data = serializer_class(page, many=True, context={"request": self.request, **context}).data
        return paginator.get_paginated_response(data)


def _found(obj: Any, what: str) -> Any:
    if obj is None:
        raise NotFound(f"No such {what}.")
    return obj


class MessageSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=sorted(services.VALID_ROLES))
    content = serializers.CharField()

    class Meta:
        ref_name = "Message"


class ModelVersionRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()

    class Meta:
        ref_name = "ModelVersionRef"


# --- Model versions --------------------------------------------------------------------


@extend_schema(tags=["model versions"])
class ModelVersionListApi(BaseApi):
    """Model versions (checkpoints): leads and ML engineers list and register them.
    Annotators judge blind, so model names and server addresses are not theirs to read."""

    permissions = {"GET": IsLeadOrMLEngineer, "POST": IsLeadOrMLEngineer}

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200)
        backend = serializers.ChoiceField(choices=Backend.choices, default=Backend.IMPORTED)
        parent = serializers.PrimaryKeyRelatedField(
            queryset=ModelVersion.objects.all(), allow_null=True, required=False, default=None
        )
        config = serializers.DictField(required=False, default=dict, help_text="Backend settings (engine path, URL…).")
        default_sampling = serializers.DictField(required=False, default=dict)
        description = serializers.CharField(required=False, allow_blank=True, default="")

        class Meta:
            ref_name = "ModelVersion"

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        name = serializers.CharField()
        parent = serializers.IntegerField(source="parent_id", allow_null=True)
        parent_name = serializers.CharField(source="parent.name", allow_null=True)
        backend = serializers.ChoiceField(choices=Backend.choices)
        config = serializers.DictField()
        default_sampling = serializers.DictField()
        description = serializers.CharField()
        created_at = serializers.DateTimeField()

        class Meta:
            ref_name = "ModelVersion"

    @extend_schema(responses=OutputSerializer(many=True), summary="List model versions")
    def get(self, request: Request) -> Response:
        return self.paginated(selectors.model_version_list(), self.OutputSerializer)

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer}, summary="Register a model version")
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        version = services.model_version_create(**serializer.validated_data)
        return Response(self.OutputSerializer(version).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["model versions"])
class ModelVersionDetailApi(BaseApi):
    """One model version, for leads and ML engineers (annotators judge blind)."""

    permissions = {"GET": IsLeadOrMLEngineer, "PATCH": IsLeadOrMLEngineer}
    InputSerializer = ModelVersionListApi.InputSerializer
    OutputSerializer = ModelVersionListApi.OutputSerializer

    @extend_schema(responses=OutputSerializer, summary="Get a model version")
    def get(self, request: Request, pk: int) -> Response:
        version = _found(selectors.model_version_get(pk=pk), "model version")
        return Response(self.OutputSerializer(version).data)

    @extend_schema(request=InputSerializer, responses=OutputSerializer, summary="Change a model version")
    def patch(self, request: Request, pk: int) -> Response:
        version = _found(selectors.model_version_get(pk=pk), "model version")
        serializer = self.InputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        version = services.model_version_update(version=version, **serializer.validated_data)
        return Response(self.OutputSerializer(version).data)


# --- Projects --------------------------------------------------------------------------


class _ProjectFields(serializers.Serializer):
    """The settings a lead may give a project, at creation or later."""

    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True)
    guidelines = serializers.CharField(required=False, allow_blank=True, help_text="Markdown shown to annotators.")
    overlap = serializers.IntegerField(required=False, min_value=1, max_value=50)
    allow_tie = serializers.BooleanField(required=False)
    allow_both_bad = serializers.BooleanField(required=False)
    allow_cant_judge = serializers.BooleanField(required=False)
    require_safety = serializers.BooleanField(required=False)
    edit_policy = serializers.ChoiceField(choices=EditPolicy.choices, required=False)
    lease_seconds = serializers.IntegerField(required=False, min_value=30)
    gold_rate = serializers.FloatField(required=False, min_value=0, max_value=1)
    identity_terms = serializers.ListField(child=serializers.CharField(max_length=200), required=False)
    is_active = serializers.BooleanField(required=False)


@extend_schema(tags=["projects"])
class ProjectListApi(BaseApi):
    """Projects. Anyone with a role lists them (annotators: active ones only); leads create them."""

    permissions = {"GET": IsAnyRole, "POST": IsLead}

    class InputSerializer(_ProjectFields):
        slug = serializers.SlugField(max_length=100, required=False, help_text="Default: made from the name.")

        class Meta:
            ref_name = "ProjectCreate"

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        name = serializers.CharField()
        slug = serializers.SlugField()
        description = serializers.CharField()
        guidelines = serializers.CharField()
        overlap = serializers.IntegerField()
        allow_tie = serializers.BooleanField()
        allow_both_bad = serializers.BooleanField()
        allow_cant_judge = serializers.BooleanField()
        require_safety = serializers.BooleanField()
        edit_policy = serializers.ChoiceField(choices=EditPolicy.choices)
        lease_seconds = serializers.IntegerField()
        gold_rate = serializers.FloatField()
        identity_terms = serializers.ListField(
            child=serializers.CharField(),
            required=False,
            help_text="Model and vendor names kept out of annotation; shown to leads and ML engineers only.",
        )
        is_active = serializers.BooleanField()
        created_by = serializers.CharField(source="created_by.username", allow_null=True)
        created_at = serializers.DateTimeField()

        class Meta:
            ref_name = "Project"

        def to_representation(self, instance: Project) -> dict[str, Any]:
            data = super().to_representation(instance)
            # The terms name the models under comparison: annotators must not learn them.
            if not self.context.get("show_identity_terms"):
                data.pop("identity_terms", None)
            return data

    @extend_schema(responses=OutputSerializer(many=True), summary="List projects")
    def get(self, request: Request) -> Response:
        projects = selectors.project_list(user=request.user)
        return self.paginated(projects, self.OutputSerializer, **_project_context(request))

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer}, summary="Create a project")
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        project = services.project_create(created_by=request.user, **serializer.validated_data)
        return Response(
            self.OutputSerializer(project, context=_project_context(request)).data, status=status.HTTP_201_CREATED
        )


def _project_context(request: Request) -> dict[str, Any]:
    return {"show_identity_terms": selectors.user_sees_all_projects(request.user)}


@extend_schema(tags=["projects"])
class ProjectDetailApi(BaseApi):
    """One project, by slug. Anyone with a role reads it; leads change its settings."""

    permissions = {"GET": IsAnyRole, "PATCH": IsLead}
    OutputSerializer = ProjectListApi.OutputSerializer

    class InputSerializer(_ProjectFields):
        class Meta:
            ref_name = "ProjectUpdate"

    @extend_schema(responses=OutputSerializer, summary="Get a project")
    def get(self, request: Request, slug: str) -> Response:
        project = _found(selectors.project_get(slug=slug, user=request.user), "project")
        return Response(self.OutputSerializer(project, context=_project_context(request)).data)

    @extend_schema(request=InputSerializer, responses=OutputSerializer, summary="Change a project's settings")
    def patch(self, request: Request, slug: str) -> Response:
        project = _found(selectors.project_get(slug=slug, user=request.user), "project")
        serializer = self.InputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        project = services.project_update(project=project, **serializer.validated_data)
        return Response(self.OutputSerializer(project, context=_project_context(request)).data)


# --- Rounds ----------------------------------------------------------------------------


@extend_schema(tags=["rounds"])
class RoundDetailApi(BaseApi):
    """One round with its progress counts. Leads and ML engineers."""

    permissions = {"GET": IsLeadOrMLEngineer}

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        project = serializers.SlugField(source="project.slug")
        number = serializers.IntegerField()
        name = serializers.CharField()
        baseline = ModelVersionRefSerializer()
        candidate = ModelVersionRefSerializer()
        pairing = serializers.ChoiceField(choices=PairingStrategy.choices)
        status = serializers.ChoiceField(choices=RoundStatus.choices)
        created_at = serializers.DateTimeField()
        opened_at = serializers.DateTimeField(allow_null=True)
        closed_at = serializers.DateTimeField(allow_null=True)
        comparison_count = serializers.IntegerField()
        judgment_count = serializers.IntegerField()
        comparisons_complete = serializers.IntegerField(
            help_text="Comparisons that have all the judgments they need."
        )

        class Meta:
            ref_name = "Round"

    @extend_schema(responses=OutputSerializer, summary="Get a round with its progress")
    def get(self, request: Request, pk: int) -> Response:
        round_ = _found(selectors.round_get(pk=pk), "round")
        return Response(self.OutputSerializer(round_).data)


@extend_schema(tags=["rounds"])
class RoundListApi(BaseApi):
    """A project's rounds. Leads and ML engineers list them; leads start new ones."""

    permissions = {"GET": IsLeadOrMLEngineer, "POST": IsLead}
    OutputSerializer = RoundDetailApi.OutputSerializer

    class InputSerializer(serializers.Serializer):
        baseline = serializers.PrimaryKeyRelatedField(queryset=ModelVersion.objects.all(), help_text="Previous model.")
        candidate = serializers.PrimaryKeyRelatedField(queryset=ModelVersion.objects.all(), help_text="New model.")
        pairing = serializers.ChoiceField(choices=PairingStrategy.choices, default=PairingStrategy.OLD_VS_NEW)
        name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")

        class Meta:
            ref_name = "RoundCreate"

    @extend_schema(responses=OutputSerializer(many=True), summary="List a project's rounds")
    def get(self, request: Request, slug: str) -> Response:
        project = _found(selectors.project_get(slug=slug, user=request.user), "project")
        return self.paginated(selectors.round_list(project=project), self.OutputSerializer)

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer}, summary="Start a round (draft)")
    def post(self, request: Request, slug: str) -> Response:
        project = _found(selectors.project_get(slug=slug, user=request.user), "project")
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        round_ = services.round_create(project=project, **serializer.validated_data)
        return Response(self.OutputSerializer(selectors.round_get(pk=round_.pk)).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["rounds"])
class RoundOpenApi(BaseApi):
    """Open a round for annotation. Leads."""

    permissions = {"POST": IsLead}
    OutputSerializer = RoundDetailApi.OutputSerializer

    @extend_schema(request=None, responses=OutputSerializer, summary="Open a round for annotation")
    def post(self, request: Request, pk: int) -> Response:
        round_ = _found(selectors.round_get(pk=pk), "round")
        services.round_open(round_=round_)
        return Response(self.OutputSerializer(selectors.round_get(pk=pk)).data)


@extend_schema(tags=["rounds"])
class RoundCloseApi(BaseApi):
    """Close a round. Leads."""

    permissions = {"POST": IsLead}
    OutputSerializer = RoundDetailApi.OutputSerializer

    @extend_schema(request=None, responses=OutputSerializer, summary="Close a round")
    def post(self, request: Request, pk: int) -> Response:
        round_ = _found(selectors.round_get(pk=pk), "round")
        services.round_close(round_=round_)
        return Response(self.OutputSerializer(selectors.round_get(pk=pk)).data)


@extend_schema(tags=["rounds"])
class RoundBuildComparisonsApi(BaseApi):
    """Build a round's comparisons from the samples of its two versions. Leads."""

    permissions = {"POST": IsLead}

    class InputSerializer(serializers.Serializer):
        seed_a = serializers.IntegerField(
            required=False, allow_null=True, default=None, help_text="Use only baseline samples with this seed."
        )
        seed_b = serializers.IntegerField(
            required=False, allow_null=True, default=None, help_text="Use only candidate samples with this seed."
        )

        class Meta:
            ref_name = "BuildComparisons"

    class OutputSerializer(serializers.Serializer):
        created = serializers.IntegerField(help_text="Comparisons created by this call.")
        round = RoundDetailApi.OutputSerializer()

        class Meta:
            ref_name = "BuildComparisonsResult"

    @extend_schema(
        request=InputSerializer,
        responses=OutputSerializer,
        summary="Pair the baseline's and the candidate's samples into comparisons (idempotent)",
    )
    def post(self, request: Request, pk: int) -> Response:
        round_ = _found(selectors.round_get(pk=pk), "round")
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        created = services.round_build_comparisons(round_=round_, **serializer.validated_data)
        return Response(self.OutputSerializer({"created": created, "round": selectors.round_get(pk=pk)}).data)


# --- Prompts ---------------------------------------------------------------------------


@extend_schema(tags=["prompts"])
class PromptDetailApi(BaseApi):
    """One prompt. Leads and ML engineers."""

    permissions = {"GET": IsLeadOrMLEngineer}

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        project = serializers.IntegerField(source="project_id")
        messages = MessageSerializer(many=True)
        tags = serializers.ListField(child=serializers.CharField())
        source = serializers.CharField()
        external_id = serializers.CharField()
        content_hash = serializers.CharField()
        turns = serializers.IntegerField()
        created_at = serializers.DateTimeField()

        class Meta:
            ref_name = "Prompt"

    @extend_schema(responses=OutputSerializer, summary="Get a prompt")
    def get(self, request: Request, pk: int) -> Response:
        prompt = _found(selectors.prompt_get(pk=pk), "prompt")
        return Response(self.OutputSerializer(prompt).data)


@extend_schema(tags=["prompts"])
class PromptListApi(BaseApi):
    """A project's prompts, optionally by tag. Leads and ML engineers."""

    permissions = {"GET": IsLeadOrMLEngineer}
    OutputSerializer = PromptDetailApi.OutputSerializer

    class FilterSerializer(serializers.Serializer):
        tag = serializers.CharField(
            required=False, allow_blank=True, max_length=64, help_text="Only prompts with this tag."
        )

    @extend_schema(parameters=[FilterSerializer], responses=OutputSerializer(many=True), summary="List prompts")
    def get(self, request: Request, slug: str) -> Response:
        project = _found(selectors.project_get(slug=slug, user=request.user), "project")
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        prompts = selectors.prompt_list(project=project, tag=filters.validated_data.get("tag", ""))
        return self.paginated(prompts, self.OutputSerializer)


# --- Comparisons -----------------------------------------------------------------------


class ComparisonPromptSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    messages = MessageSerializer(many=True)
    tags = serializers.ListField(child=serializers.CharField())

    class Meta:
        ref_name = "ComparisonPrompt"


class ComparisonSampleSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    model_version = serializers.IntegerField(source="model_version_id")
    model_version_name = serializers.CharField(source="model_version.name")
    text = serializers.CharField()
    sampling_params = serializers.DictField()
    seed = serializers.IntegerField(allow_null=True)
    finish_reason = serializers.CharField()
    identity_flagged = serializers.BooleanField()

    class Meta:
        ref_name = "ComparisonSample"


@extend_schema(tags=["comparisons"])
class ComparisonDetailApi(BaseApi):
    """One comparison with its prompt and both samples, model names included. Leads and ML engineers."""

    permissions = {"GET": IsLeadOrMLEngineer}

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        round = serializers.IntegerField(source="round_id")
        prompt = ComparisonPromptSerializer()
        sample_a = ComparisonSampleSerializer(help_text="Sample A: the baseline's answer in old-vs-new rounds.")
        sample_b = ComparisonSampleSerializer(help_text="Sample B: the candidate's answer in old-vs-new rounds.")
        required_judgments = serializers.IntegerField()
        judgment_count = serializers.IntegerField()
        is_complete = serializers.SerializerMethodField()
        is_gold = serializers.BooleanField()
        gold_preferred = serializers.CharField(help_text="The known answer of a gold item; empty otherwise.")
        created_at = serializers.DateTimeField()

        class Meta:
            ref_name = "Comparison"

        def get_is_complete(self, obj: Any) -> bool:
            return obj.judgment_count >= obj.required_judgments

    @extend_schema(responses=OutputSerializer, summary="Get a comparison (with model names)")
    def get(self, request: Request, pk: int) -> Response:
        comparison = _found(selectors.comparison_get(pk=pk), "comparison")
        return Response(self.OutputSerializer(comparison).data)


@extend_schema(tags=["comparisons"])
class ComparisonListApi(BaseApi):
    """A round's comparisons with prompts and both samples, model names included. Leads and ML engineers."""

    permissions = {"GET": IsLeadOrMLEngineer}
    OutputSerializer = ComparisonDetailApi.OutputSerializer

    @extend_schema(responses=OutputSerializer(many=True), summary="List a round's comparisons (with model names)")
    def get(self, request: Request, pk: int) -> Response:
        round_ = _found(selectors.round_get(pk=pk), "round")
        return self.paginated(selectors.comparison_list(round_=round_), self.OutputSerializer)


# --- Judgments -------------------------------------------------------------------------


@extend_schema(tags=["judgments"])
class JudgmentListApi(BaseApi):
    """A round's judgments in sample terms (A/B), oldest first. Leads and ML engineers."""

    permissions = {"GET": IsLeadOrMLEngineer}

    class FilterSerializer(serializers.Serializer):
        since = serializers.DateTimeField(
            required=False, help_text="Only judgments created at or after this time (ISO 8601)."
        )

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        comparison = serializers.IntegerField(source="comparison_id")
        prompt = serializers.IntegerField(source="comparison.prompt_id")
        sample_a = serializers.IntegerField(source="comparison.sample_a_id")
        sample_b = serializers.IntegerField(source="comparison.sample_b_id")
        annotator = serializers.CharField(source="annotator.username")
        preferred = serializers.ChoiceField(choices=Preference.choices, help_text="In sample terms (A/B).")
        strength = serializers.CharField(help_text="Empty unless A or B is preferred.")
        safety = serializers.CharField()
        left = serializers.CharField(help_text="The sample shown on the left (A/B); empty when unknown (imports).")
        time_spent_ms = serializers.IntegerField(allow_null=True)
        rationale = serializers.CharField()
        source = serializers.ChoiceField(choices=JudgmentSource.choices)
        created_at = serializers.DateTimeField()
        edit_text = serializers.CharField(source="edit.text", allow_null=True, help_text="The annotator's rewrite.")
        edit_base_sample = serializers.IntegerField(
            source="edit.base_sample_id", allow_null=True, help_text="The sample the rewrite started from."
        )

        class Meta:
            ref_name = "Judgment"

    @extend_schema(
        parameters=[FilterSerializer], responses=OutputSerializer(many=True), summary="List a round's judgments"
    )
    def get(self, request: Request, pk: int) -> Response:
        round_ = _found(selectors.round_get(pk=pk), "round")
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        judgments = selectors.judgment_list(round_=round_, since=filters.validated_data.get("since"))
        return self.paginated(judgments, self.OutputSerializer)


# --- Imports ---------------------------------------------------------------------------


class _CommaListField(serializers.ListField):
    """A list given as repeated form fields, or as one comma-separated value."""

    def to_internal_value(self, data: Any) -> list[Any]:
        if isinstance(data, str):
            data = [data]
        if isinstance(data, list) and all(isinstance(item, str) for item in data):
            data = [part.strip() for item in data for part in item.split(",") if part.strip()]
        return super().to_internal_value(data)


class ImportErrorSerializer(serializers.Serializer):
    line = serializers.IntegerField(help_text="1-based line of the file; 0 for the file as a whole.")
    field = serializers.CharField(help_text="The field at fault; empty for the whole line.")
    message = serializers.CharField()

    class Meta:
        ref_name = "ImportError"


@extend_schema(tags=["imports"])
class ImportApi(BaseApi):
    """Upload a file of prompts, samples or pairs into a project. Leads and ML engineers."""

    permissions = {"POST": IsLeadOrMLEngineer}
    parser_classes = [MultiPartParser, FormParser]

    class InputSerializer(serializers.Serializer):
        file = serializers.FileField(help_text="JSONL, CSV or a JSON array.")
        kind = serializers.ChoiceField(choices=[k.value for k in ImportKind])
        round = serializers.IntegerField(
            required=False, allow_null=True, default=None, min_value=1,
            help_text="Round number in the project. Pairs: default is an import round of their own; "
            "samples: also build that round's comparisons.",
        )
        source = serializers.CharField(
            required=False, allow_blank=True, default="", max_length=200,
            help_text="Where the data comes from; names the outside annotators of imported labels.",
        )
        skip_invalid = serializers.BooleanField(
            required=False, default=False, help_text="Commit the good lines and report the bad ones."
        )
        model_a = serializers.CharField(required=False, default="model-a", max_length=200)
        model_b = serializers.CharField(required=False, default="model-b", max_length=200)
        label_columns = _CommaListField(
            child=serializers.CharField(max_length=200), required=False, default=lambda: ["label"],
            help_text="Pairs: columns holding existing labels (default: label).",
        )
        tags = _CommaListField(
            child=serializers.CharField(max_length=64), required=False, default=list,
            help_text="Tags added to every imported prompt.",
        )
        format = serializers.ChoiceField(
            choices=[f.value for f in FileFormat], required=False, allow_null=True, default=None,
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
        errors = ImportErrorSerializer(many=True)
        errors_truncated = serializers.BooleanField()
        ignored_fields = serializers.ListField(child=serializers.CharField())
        round_id = serializers.IntegerField(allow_null=True)
        seconds = serializers.FloatField()

        class Meta:
            ref_name = "ImportReport"

    @extend_schema(
        request={"multipart/form-data": InputSerializer},
        responses={201: OutputSerializer, 400: OutputSerializer},
        summary="Import prompts, samples or pairs from a file",
        description="Every line is validated. Without skip_invalid a single bad line means nothing is written "
        "(HTTP 400, the errors name their line and field); HTTP 201 when the import was committed.",
    )
    def post(self, request: Request, slug: str) -> Response:
        project = _found(selectors.project_get(slug=slug, user=request.user), "project")
        serializer = self.InputSerializer(data=request.data)
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
            report = ImportReport(kind=kind.value, error_count=1, errors=[RowError(0, "", str(exc))])
        return Response(
            self.OutputSerializer(report.as_dict()).data,
            status=status.HTTP_201_CREATED if report.committed else status.HTTP_400_BAD_REQUEST,
        )


# --- API tokens and the current user ---------------------------------------------------


@extend_schema(tags=["tokens"])
class TokenListApi(BaseApi):
    """My API tokens (their keys are never shown again); any logged-in user."""

    # Any logged-in user, with or without a role, manages their own tokens.
    permissions = {"GET": IsAuthenticated, "POST": IsAuthenticated}

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="token")

        class Meta:
            ref_name = "TokenCreate"

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        name = serializers.CharField()
        prefix = serializers.CharField(help_text="The key's first characters, to recognise it.")
        created_at = serializers.DateTimeField()
        last_used_at = serializers.DateTimeField(allow_null=True)
        revoked_at = serializers.DateTimeField(allow_null=True)

        class Meta:
            ref_name = "Token"

    class CreatedSerializer(OutputSerializer):
        key = serializers.CharField(help_text="Shown this once; only its hash is stored.")

        class Meta:
            ref_name = "TokenCreated"

    @extend_schema(responses=OutputSerializer(many=True), summary="List my API tokens")
    def get(self, request: Request) -> Response:
        return self.paginated(selectors.api_token_list(user=request.user), self.OutputSerializer)

    @extend_schema(request=InputSerializer, responses={201: CreatedSerializer}, summary="Create an API token")
    def post(self, request: Request) -> Response:
        if isinstance(request.auth, ApiToken):
            # A leaked key must not be able to mint keys that outlive its revocation.
            raise PermissionDenied(
                "API tokens are created from a logged-in session (log in, then POST here from the browsable API), "
                "not with another token."
            )
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token, key = services.api_token_create(user=request.user, **serializer.validated_data)
        token.key = key  # for this response only; never stored
        return Response(self.CreatedSerializer(token).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["tokens"])
class TokenDetailApi(BaseApi):
    """Revoke one of my API tokens; any logged-in user."""

    permissions = {"DELETE": IsAuthenticated}

    @extend_schema(responses={204: None}, summary="Revoke one of my API tokens")
    def delete(self, request: Request, pk: int) -> Response:
        token = _found(selectors.api_token_get(user=request.user, pk=pk), "token")
        services.api_token_revoke(token=token)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=["me"])
class MeApi(BaseApi):
    """The logged-in user and their roles."""

    permissions = {"GET": IsAuthenticated}

    class OutputSerializer(serializers.Serializer):
        username = serializers.CharField()
        roles = serializers.ListField(child=serializers.ChoiceField(choices=[r.value for r in Role]))

        class Meta:
            ref_name = "Me"

    @extend_schema(responses=OutputSerializer, summary="Who am I")
    def get(self, request: Request) -> Response:
        roles = sorted(role.value for role in user_roles(request.user))
        return Response(self.OutputSerializer({"username": request.user.get_username(), "roles": roles}).data)


# --- Annotation (annotators' own API: screen terms, no model names) ---------------------


class _PairSerializer(serializers.Serializer):
    """What an annotator sees: the prompt and the two answers by screen side. Nothing in it
    names a model, a sample or which answer is A."""

    assignment = serializers.IntegerField(source="pk")
    lease_expires_at = serializers.DateTimeField()
    prompt = MessageSerializer(many=True, source="comparison.prompt.messages")
    left = serializers.SerializerMethodField()
    right = serializers.SerializerMethodField()

    class Meta:
        ref_name = "AnnotationPair"

    def _text(self, obj: Any, side: str) -> str:
        comparison = obj.comparison
        shown = obj.left if side == "left" else ("B" if obj.left == "A" else "A")
        return comparison.sample_a.text if shown == "A" else comparison.sample_b.text

    def get_left(self, obj: Any) -> str:
        return self._text(obj, "left")

    def get_right(self, obj: Any) -> str:
        return self._text(obj, "right")


class _NextSerializer(serializers.Serializer):
    pair = _PairSerializer(allow_null=True)
    reason = serializers.CharField(allow_blank=True, help_text="Why there is no pair, when there is none.")
    retry_after_seconds = serializers.IntegerField(allow_null=True)

    class Meta:
        ref_name = "AnnotationNext"


@extend_schema(tags=["annotation"])
class AssignmentNextApi(BaseApi):
    """The annotator's next pair in a project: a lease they hold, or a new one (never a pair they
    were handed before). Sides are randomised per assignment. Annotators."""

    permissions = {"POST": IsAnnotator}

    class InputSerializer(serializers.Serializer):
        exclude = serializers.ListField(
            child=serializers.IntegerField(), required=False, default=list,
            help_text="Assignment ids already on screen (to prefetch the one after).",
        )

        class Meta:
            ref_name = "AnnotationNextInput"

    @extend_schema(request=InputSerializer, responses=_NextSerializer, summary="Get my next pair")
    def post(self, request: Request, slug: str) -> Response:
        project = _found(selectors.project_get_cached(slug=slug, user=request.user), "project")
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        got = assignment_next(annotator=request.user, project=project, exclude=tuple(serializer.validated_data["exclude"]))
        if isinstance(got, NoWork):
            return Response({"pair": None, "reason": got.reason, "retry_after_seconds": got.retry_after_seconds})
        # The selector already returns the pair in screen terms (what _PairSerializer
        # documents); serialising it field by field again would only cost CPU.
        pair = selectors.pair_for_annotator(pk=got.pk)
        return Response({"pair": pair, "reason": "", "retry_after_seconds": None})


def _refused(exc: AssignmentRefused) -> Response:
    codes = {getattr(e, "code", None) for e in exc.error_list} if not hasattr(exc, "error_dict") else set()
    if "foreign" in codes:
        return Response({"detail": exc.messages[0]}, status=status.HTTP_404_NOT_FOUND)
    if codes & {"stale", "closed"}:
        return Response({"detail": exc.messages[0]}, status=status.HTTP_409_CONFLICT)
    return Response(serializers.as_serializer_error(exc), status=status.HTTP_400_BAD_REQUEST)


@extend_schema(tags=["annotation"])
class JudgmentSubmitApi(BaseApi):
    """Judge the pair of an assignment, in screen terms (left/right). Idempotent: a retry returns
    the judgment already saved (200) instead of a second one (201). Annotators."""

    permissions = {"POST": IsAnnotator}

    class InputSerializer(serializers.Serializer):
        choice = serializers.ChoiceField(choices=["left", "right", "tie", "both_bad", "cant_judge"])
        strength = serializers.ChoiceField(choices=Strength.choices, required=False, allow_blank=True, default="")
        safety = serializers.ChoiceField(choices=Safety.choices, required=False, allow_blank=True, default="")
        rationale = serializers.CharField(required=False, allow_blank=True, default="", max_length=10_000)
        time_spent_ms = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=0)
        edit_text = serializers.CharField(
            required=False, allow_blank=True, default="", trim_whitespace=False, max_length=100_000
        )
        edit_base = serializers.ChoiceField(choices=["left", "right"], required=False, allow_blank=True, default="")

        class Meta:
            ref_name = "JudgmentSubmit"

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        assignment = serializers.IntegerField(source="assignment_id")
        choice = serializers.SerializerMethodField()
        strength = serializers.CharField()
        safety = serializers.CharField()
        created_at = serializers.DateTimeField()

        class Meta:
            ref_name = "JudgmentSubmitted"

        def get_choice(self, obj: Any) -> str:
            return sample_to_screen(obj.preferred, obj.left)

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer, 200: OutputSerializer},
                   summary="Judge a pair")
    def post(self, request: Request, pk: int) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        verdict = Verdict(  # in screen terms: the engine knows which side was left
            preferred=data["choice"],
            strength=data["strength"],
            safety=data["safety"],
            rationale=data["rationale"],
            time_spent_ms=data["time_spent_ms"],
            edit_text=data["edit_text"],
            edit_base=data["edit_base"],
        )
        try:
            judgment, created = judgment_submit(
                assignment_id=pk, annotator=request.user, verdict=verdict, source=JudgmentSource.API, screen=True
            )
        except AssignmentRefused as exc:
            return _refused(exc)
        return Response(self.OutputSerializer(judgment).data, status=201 if created else 200)


@extend_schema(tags=["annotation"])
class AssignmentSkipApi(BaseApi):
    """Skip a pair, with a reason; it goes back to the pool for others. Annotators."""

    permissions = {"POST": IsAnnotator}

    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(max_length=500)

        class Meta:
            ref_name = "AssignmentSkip"

    @extend_schema(request=InputSerializer, responses={204: None}, summary="Skip a pair")
    def post(self, request: Request, pk: int) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            assignment_skip(assignment_id=pk, annotator=request.user, reason=serializer.validated_data["reason"])
        except AssignmentRefused as exc:
            return _refused(exc)
        return Response(status=status.HTTP_204_NO_CONTENT)
