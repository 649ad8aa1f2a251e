"""REST API of the models service, mounted at /api/v1/ beside the annotation API: model
versions; creating, opening, closing and pairing rounds; sampling progress and
(re)starts per round, the failures list, the round's sampling settings, and the flagged
samples a lead may release.

Same shape as every API view (docs/style.md): permission per method -> input serializer
-> service or selector -> output serializer.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.permissions import IsLead, IsLeadOrMLEngineer
from annotation import selectors as annotation_selectors
from annotation import services as annotation_services
from annotation.apis import ModelVersionRefSerializer, RoundDetailApi
from annotation.models import PairingStrategy, RoundStatus
from core.api import BaseApi, get_or_404
from models_service import rounds, sampling, selectors, services
from models_service.arms import round_arms
from models_service.models import Backend, JobStatus, ModelVersion


class SamplingJobSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    arm = serializers.CharField(help_text="A or B (pairwise strategies), v<version id> (arena).")
    model_version = ModelVersionRefSerializer()
    seed = serializers.IntegerField()
    params = serializers.DictField(help_text="Sampling parameters besides the seed.")
    status = serializers.ChoiceField(choices=JobStatus.choices)
    total = serializers.IntegerField()
    sampled = serializers.IntegerField()
    failed = serializers.IntegerField()
    runs = serializers.IntegerField()
    error = serializers.CharField(help_text="Why the backend could not start, if it could not.")
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)

    class Meta:
        ref_name = "SamplingJob"


class RoundSamplingSerializer(serializers.Serializer):
    round = serializers.IntegerField(source="round.pk")
    round_status = serializers.ChoiceField(source="round.status", choices=RoundStatus.choices)
    pairing = serializers.ChoiceField(source="round.pairing", choices=PairingStrategy.choices)
    status = serializers.ChoiceField(choices=["not_started", "running", "done", "failed"])
    total = serializers.IntegerField(help_text="Answers asked for: prompts x arms (arena: 2 per prompt).")
    sampled = serializers.IntegerField()
    failed = serializers.IntegerField(help_text="Prompts listed as failed, summed over arms.")
    percent = serializers.IntegerField()
    comparisons = serializers.IntegerField()
    jobs = SamplingJobSerializer(many=True)

    class Meta:
        ref_name = "RoundSampling"


@extend_schema(tags=["sampling"])
class RoundSamplingApi(BaseApi):
    """A round's sampling: progress per arm (GET, leads and ML engineers); start it, or
    rerun it to fill in what failed (POST, leads)."""

    permissions = {"GET": IsLeadOrMLEngineer, "POST": IsLead}
    OutputSerializer = RoundSamplingSerializer

    @extend_schema(responses=OutputSerializer, summary="Sampling progress of a round")
    def get(self, request: Request, pk: int) -> Response:
        round_ = get_or_404(annotation_selectors.round_get(pk=pk), "round")
        return Response(self.OutputSerializer(selectors.round_progress(round_=round_)).data)

    @extend_schema(
        request=None,
        responses={202: OutputSerializer},
        summary="Start or rerun a round's sampling (idempotent: only missing answers are asked for)",
    )
    def post(self, request: Request, pk: int) -> Response:
        round_ = get_or_404(annotation_selectors.round_get(pk=pk), "round")
        sampling.sampling_start(round_=round_)
        round_.refresh_from_db()
        return Response(
            self.OutputSerializer(selectors.round_progress(round_=round_)).data, status=status.HTTP_202_ACCEPTED
        )


@extend_schema(tags=["sampling"])
class RoundSamplingConfigApi(BaseApi):
    """How a round is sampled (seed, temperatures, seeds, max_tokens, prompt tag; arena
    versions). Changeable until its sampling starts. Leads."""

    permissions = {"GET": IsLeadOrMLEngineer, "PUT": IsLead}

    class InputSerializer(serializers.Serializer):
        sampling = serializers.DictField(
            required=False,
            help_text='e.g. {"seed": 0, "temperatures": [0.7, 1.0], "seeds": [0, 1], "max_tokens": 512, "tag": "code"}',
        )
        arena_versions = serializers.PrimaryKeyRelatedField(
            queryset=ModelVersion.objects.all(),
            many=True,
            required=False,
            help_text="Arena rounds: versions taking part besides baseline and candidate.",
        )

        class Meta:
            ref_name = "RoundSamplingConfigInput"

    class OutputSerializer(serializers.Serializer):
        round = serializers.IntegerField(source="pk")
        pairing = serializers.ChoiceField(choices=PairingStrategy.choices)
        sampling = serializers.DictField()
        arena_versions = serializers.SerializerMethodField()
        arms = serializers.SerializerMethodField()

        class Meta:
            ref_name = "RoundSamplingConfig"

        def get_arena_versions(self, obj: Any) -> list[int]:
            return list(obj.arena_versions.order_by("id").values_list("id", flat=True))

        def get_arms(self, obj: Any) -> list[dict[str, Any]]:
            return [
                {
                    "arm": a.key,
                    "model_version": a.version.pk,
                    "model_version_name": a.version.name,
                    "seed": a.seed,
                    "params": a.params.request_fields(),
                }
                for a in round_arms(obj)
            ]

    @extend_schema(responses=OutputSerializer, summary="A round's sampling settings and the arms they give")
    def get(self, request: Request, pk: int) -> Response:
        round_ = get_or_404(annotation_selectors.round_get(pk=pk), "round")
        return Response(self.OutputSerializer(round_).data)

    @extend_schema(request=InputSerializer, responses=OutputSerializer, summary="Set a round's sampling settings")
    def put(self, request: Request, pk: int) -> Response:
        round_ = get_or_404(annotation_selectors.round_get(pk=pk), "round")
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        arena = data.get("arena_versions")
        round_ = sampling.round_sampling_configure(
            round_=round_,
            sampling=data.get("sampling"),
            arena_version_ids=[v.pk for v in arena] if arena is not None else None,
        )
        return Response(self.OutputSerializer(round_).data)


@extend_schema(tags=["sampling"])
class SamplingFailureListApi(BaseApi):
    """The prompts a round's sampling could not answer, with the error and attempt count.
    Leads and ML engineers."""

    permissions = {"GET": IsLeadOrMLEngineer}

    class OutputSerializer(serializers.Serializer):
        job = serializers.IntegerField(source="job_id")
        arm = serializers.CharField(source="job.arm")
        model_version = serializers.CharField(source="job.model_version.name")
        prompt = serializers.IntegerField(source="prompt_id")
        prompt_text = serializers.CharField(source="prompt.last_user_message")
        error = serializers.CharField()
        attempts = serializers.IntegerField()
        retryable = serializers.BooleanField(help_text="False: retrying will not help (fix the cause first).")
        first_failed_at = serializers.DateTimeField()
        last_failed_at = serializers.DateTimeField()

        class Meta:
            ref_name = "SamplingFailure"

    @extend_schema(responses=OutputSerializer(many=True), summary="Prompts a round's sampling could not answer")
    def get(self, request: Request, pk: int) -> Response:
        round_ = get_or_404(annotation_selectors.round_get(pk=pk), "round")
        return self.paginated(selectors.sampling_failure_list(round_=round_), self.OutputSerializer)


class FlaggedSampleSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    prompt = serializers.IntegerField(source="prompt_id")
    model_version = serializers.CharField(source="model_version.name")
    seed = serializers.IntegerField(allow_null=True)
    text = serializers.CharField()
    identity_flagged = serializers.BooleanField()
    identity_released = serializers.BooleanField()

    class Meta:
        ref_name = "FlaggedSample"


@extend_schema(tags=["sampling"])
class FlaggedSampleListApi(BaseApi):
    """Samples kept out of annotation because they name a model or vendor (the project's
    identity terms), not yet released. Leads."""

    permissions = {"GET": IsLead}

    @extend_schema(responses=FlaggedSampleSerializer(many=True), summary="Samples held back for naming a model")
    def get(self, request: Request, slug: str) -> Response:
        project = get_or_404(annotation_selectors.project_get(slug=slug, user=request.user), "project")
        return self.paginated(selectors.flagged_sample_list(project=project), FlaggedSampleSerializer)


@extend_schema(tags=["sampling"])
class SampleReleaseApi(BaseApi):
    """Let a flagged sample into annotation; the comparisons it held back are built. Leads."""

    permissions = {"POST": IsLead}

    class OutputSerializer(serializers.Serializer):
        sample = FlaggedSampleSerializer()
        comparisons_created = serializers.IntegerField()

        class Meta:
            ref_name = "SampleRelease"

    @extend_schema(request=None, responses=OutputSerializer, summary="Release a flagged sample")
    def post(self, request: Request, pk: int) -> Response:
        sample = get_or_404(selectors.sample_get(pk=pk), "sample")
        created = sampling.sample_release(sample=sample)
        return Response(self.OutputSerializer({"sample": sample, "comparisons_created": created}).data)


# --- Model versions --------------------------------------------------------------------


@extend_schema(tags=["model versions"])
class ModelVersionListApi(BaseApi):
    """Model versions (checkpoints): leads and ML engineers list and register them.
    Annotators judge blind, so model names and server addresses are not theirs to read.
    An ``openai`` server must be at a host the operator allows (``MODEL_HOSTS_ALLOWED``);
    only a superuser may switch on ``trust_remote_code``."""

    permissions = {"GET": IsLeadOrMLEngineer, "POST": IsLeadOrMLEngineer}

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200)
        backend = serializers.ChoiceField(choices=Backend.choices, default=Backend.IMPORTED)
        parent = serializers.PrimaryKeyRelatedField(  # type: ignore[assignment]  # a field named like Field.parent
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
        parent = serializers.IntegerField(source="parent_id", allow_null=True)  # type: ignore[assignment]  # a field named like Field.parent
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
        version = services.model_version_create(**serializer.validated_data, by=request.user)
        return Response(self.OutputSerializer(version).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["model versions"])
class ModelVersionDetailApi(BaseApi):
    """One model version, for leads and ML engineers (annotators judge blind). Where it
    sends prompts (``backend``; ``base_url``, ``api_key_env``, ``model`` or the model's
    path in ``config``) and ``trust_remote_code`` change only by a superuser: anyone else
    registers a new version. Refusals are 400s naming the field."""

    permissions = {"GET": IsLeadOrMLEngineer, "PATCH": IsLeadOrMLEngineer}
    InputSerializer = ModelVersionListApi.InputSerializer
    OutputSerializer = ModelVersionListApi.OutputSerializer

    @extend_schema(responses=OutputSerializer, summary="Get a model version")
    def get(self, request: Request, pk: int) -> Response:
        version = get_or_404(selectors.model_version_get(pk=pk), "model version")
        return Response(self.OutputSerializer(version).data)

    @extend_schema(request=InputSerializer, responses=OutputSerializer, summary="Change a model version")
    def patch(self, request: Request, pk: int) -> Response:
        version = get_or_404(selectors.model_version_get(pk=pk), "model version")
        serializer = self.InputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        version = services.model_version_update(version=version, by=request.user, **serializer.validated_data)
        return Response(self.OutputSerializer(version).data)


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
        project = get_or_404(annotation_selectors.project_get(slug=slug, user=request.user), "project")
        return self.paginated(annotation_selectors.round_list(project=project), self.OutputSerializer)

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer}, summary="Start a round (draft)")
    def post(self, request: Request, slug: str) -> Response:
        project = get_or_404(annotation_selectors.project_get(slug=slug, user=request.user), "project")
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        round_ = rounds.round_create(project=project, **serializer.validated_data)
        return Response(
            self.OutputSerializer(annotation_selectors.round_get(pk=round_.pk)).data, status=status.HTTP_201_CREATED
        )


@extend_schema(tags=["rounds"])
class RoundOpenApi(BaseApi):
    """Open a round for annotation. Leads."""

    permissions = {"POST": IsLead}
    OutputSerializer = RoundDetailApi.OutputSerializer

    @extend_schema(request=None, responses=OutputSerializer, summary="Open a round for annotation")
    def post(self, request: Request, pk: int) -> Response:
        round_ = get_or_404(annotation_selectors.round_get(pk=pk), "round")
        rounds.round_open(round_=round_)
        return Response(self.OutputSerializer(annotation_selectors.round_get(pk=pk)).data)


@extend_schema(tags=["rounds"])
class RoundCloseApi(BaseApi):
    """Close a round. Leads."""

    permissions = {"POST": IsLead}
    OutputSerializer = RoundDetailApi.OutputSerializer

    @extend_schema(request=None, responses=OutputSerializer, summary="Close a round")
    def post(self, request: Request, pk: int) -> Response:
        round_ = get_or_404(annotation_selectors.round_get(pk=pk), "round")
        annotation_services.round_close(round_=round_)
        return Response(self.OutputSerializer(annotation_selectors.round_get(pk=pk)).data)


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
        round_ = get_or_404(annotation_selectors.round_get(pk=pk), "round")
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        created = rounds.round_build_comparisons(round_=round_, **serializer.validated_data)
        return Response(
            self.OutputSerializer({"created": created, "round": annotation_selectors.round_get(pk=pk)}).data
        )
