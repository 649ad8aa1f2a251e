"""REST API v1 (``/api/v1/``) of the annotation domain, for leads and ML engineers:
projects, rounds, prompts, comparisons and judgments. The annotators' own endpoints are
in ``annotation.annotate_apis``.

Every view has the same shape (docs/style.md): access check (the permission classes
declared per method, then the object look-up) -> input serializer -> service or
selector -> output serializer. Serializers only translate.

The comparison and judgment endpoints show which model wrote which sample; they are
for leads and ML engineers. Annotators reach only what carries no model identity.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.permissions import IsAnyRole, IsLead, IsLeadOrMLEngineer
from annotation import selectors, services
from annotation.models import EditPolicy, JudgmentSource, PairingStrategy, Preference, Project, RoundStatus
from core.api import BaseApi, MessageSerializer, get_or_404


class ModelVersionRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()

    class Meta:
        ref_name = "ModelVersionRef"


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
        project = get_or_404(selectors.project_get(slug=slug, user=request.user), "project")
        return Response(self.OutputSerializer(project, context=_project_context(request)).data)

    @extend_schema(request=InputSerializer, responses=OutputSerializer, summary="Change a project's settings")
    def patch(self, request: Request, slug: str) -> Response:
        project = get_or_404(selectors.project_get(slug=slug, user=request.user), "project")
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
        comparisons_complete = serializers.IntegerField(help_text="Comparisons that have all the judgments they need.")
        comparisons_held = serializers.IntegerField(
            help_text="Comparisons not handed out: an answer names a model and no lead has released it yet."
        )

        class Meta:
            ref_name = "Round"

    @extend_schema(responses=OutputSerializer, summary="Get a round with its progress")
    def get(self, request: Request, pk: int) -> Response:
        round_ = get_or_404(selectors.round_get(pk=pk), "round")
        return Response(self.OutputSerializer(round_).data)


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
        source = serializers.CharField()  # type: ignore[assignment]  # a field named like Field.source
        external_id = serializers.CharField()
        content_hash = serializers.CharField()
        turns = serializers.IntegerField()
        created_at = serializers.DateTimeField()

        class Meta:
            ref_name = "Prompt"

    @extend_schema(responses=OutputSerializer, summary="Get a prompt")
    def get(self, request: Request, pk: int) -> Response:
        prompt = get_or_404(selectors.prompt_get(pk=pk), "prompt")
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
        project = get_or_404(selectors.project_get(slug=slug, user=request.user), "project")
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
        comparison = get_or_404(selectors.comparison_get(pk=pk), "comparison")
        return Response(self.OutputSerializer(comparison).data)


@extend_schema(tags=["comparisons"])
class ComparisonListApi(BaseApi):
    """A round's comparisons with prompts and both samples, model names included. Leads and ML engineers."""

    permissions = {"GET": IsLeadOrMLEngineer}
    OutputSerializer = ComparisonDetailApi.OutputSerializer

    @extend_schema(responses=OutputSerializer(many=True), summary="List a round's comparisons (with model names)")
    def get(self, request: Request, pk: int) -> Response:
        round_ = get_or_404(selectors.round_get(pk=pk), "round")
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
        source = serializers.ChoiceField(choices=JudgmentSource.choices)  # type: ignore[assignment]  # likewise
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
        round_ = get_or_404(selectors.round_get(pk=pk), "round")
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        judgments = selectors.judgment_list(round_=round_, since=filters.validated_data.get("since"))
        return self.paginated(judgments, self.OutputSerializer)
