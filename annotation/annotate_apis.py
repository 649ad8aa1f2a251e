"""The annotators' own REST API: screen terms (left/right), an assignment id, never a
model name, a sample id or which answer is A. The same engine and judgment service as
the annotator's page (``annotation.assignment``, ``annotation.judging``).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.permissions import IsAnnotator
from annotation import selectors
from annotation.assignment import SKIP_REASON_MAX_CHARS, AssignmentRefused, NoWork, assignment_next, assignment_skip
from annotation.judging import (
    EDIT_MAX_CHARS,
    RATIONALE_MAX_CHARS,
    TIME_SPENT_MAX_MS,
    Verdict,
    judgment_submit,
    sample_to_screen,
)
from annotation.models import JudgmentSource, Safety, Strength
from core.api import BaseApi, MessageSerializer, get_or_404
from core.limits import MAX_ID


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
            child=serializers.IntegerField(min_value=1, max_value=MAX_ID),
            max_length=100,
            required=False,
            default=list,
            help_text="Assignment ids already on screen (to prefetch the one after).",
        )

        class Meta:
            ref_name = "AnnotationNextInput"

    @extend_schema(request=InputSerializer, responses=_NextSerializer, summary="Get my next pair")
    def post(self, request: Request, slug: str) -> Response:
        project = get_or_404(selectors.project_get_cached(slug=slug, user=request.user), "project")
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        got = assignment_next(
            annotator=request.user, project=project, exclude=tuple(serializer.validated_data["exclude"])
        )
        if isinstance(got, NoWork):
            return Response({"pair": None, "reason": got.reason, "retry_after_seconds": got.retry_after_seconds})
        # The selector already returns the pair in screen terms (what _PairSerializer
        # documents); serialising it field by field again would only cost CPU.
        pair = selectors.pair_for_annotator(pk=got.pk)
        return Response({"pair": pair, "reason": "", "retry_after_seconds": None})


def _refused(exc: AssignmentRefused) -> Response:
    """A refusal as the API answers it: field errors (400), or a detail with the status
    of its kind (``annotation.assignment.Refusal``: 404 for a foreign assignment, 409 for
    one that is gone, 400 otherwise)."""
    if hasattr(exc, "error_dict"):
        return Response(serializers.as_serializer_error(exc), status=status.HTTP_400_BAD_REQUEST)
    return Response({"detail": exc.messages[0]}, status=exc.refusal.http_status)


@extend_schema(tags=["annotation"])
class JudgmentSubmitApi(BaseApi):
    """Judge the pair of an assignment, in screen terms (left/right). Idempotent: a retry returns
    the judgment already saved (200) instead of a second one (201). Annotators."""

    permissions = {"POST": IsAnnotator}

    class InputSerializer(serializers.Serializer):
        # Shapes only: every rule and limit is the judgment service's (annotation.judging),
        # so this API and the annotator's page refuse the same judgments alike.
        choice = serializers.ChoiceField(choices=["left", "right", "tie", "both_bad", "cant_judge"])
        strength = serializers.ChoiceField(choices=Strength.choices, required=False, allow_blank=True, default="")
        safety = serializers.ChoiceField(choices=Safety.choices, required=False, allow_blank=True, default="")
        rationale = serializers.CharField(
            required=False, allow_blank=True, default="", help_text=f"At most {RATIONALE_MAX_CHARS:,} characters."
        )
        time_spent_ms = serializers.IntegerField(
            required=False,
            allow_null=True,
            default=None,
            help_text=f"Milliseconds on the pair; longer than {TIME_SPENT_MAX_MS:,} is recorded as that.",
        )
        edit_text = serializers.CharField(
            required=False,
            allow_blank=True,
            default="",
            trim_whitespace=False,
            help_text=f"At most {EDIT_MAX_CHARS:,} characters.",
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

    @extend_schema(
        request=InputSerializer, responses={201: OutputSerializer, 200: OutputSerializer}, summary="Judge a pair"
    )
    def post(self, request: Request, pk: int) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        verdict = Verdict.from_screen(serializer.validated_data)
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
        reason = serializers.CharField(help_text=f"Why; at most {SKIP_REASON_MAX_CHARS} characters.")

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
