"""The dashboard's numbers over the REST API (``/api/v1/projects/<slug>/stats/…``).

The same reports as the page (``insights.reports``), the same filters checked by the same
function (``insights.filters.resolve_filters``, so both refuse the same values with the
same words), the same numbers. Leads and ML engineers read them; annotators, who judge
blind, get a 403.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.permissions import IsLeadOrMLEngineer
from annotation import selectors
from core.api import BaseApi, get_or_404
from insights import reports
from insights.filters import FilterError, Scope, resolve_filters
from insights.stats import bradley_terry, quality, winrate
from insights.stats.winrate import WinRate


class FilterInputSerializer(serializers.Serializer):
    """The query parameters, for the schema; they are checked by ``resolve_filters``."""

    round = serializers.IntegerField(
        required=False, min_value=1, help_text="Round number; default: the latest judged round."
    )
    tag = serializers.CharField(
        required=False, allow_blank=True, max_length=100, help_text="Only prompts with this tag."
    )
    since = serializers.DateField(required=False, help_text="Judgments made on or after this day (YYYY-MM-DD).")
    until = serializers.DateField(required=False, help_text="Judgments made on or before this day (YYYY-MM-DD).")
    annotator = serializers.IntegerField(
        required=False, min_value=1, help_text="Only this annotator's judgments (user id)."
    )
    anchor = serializers.CharField(
        required=False, allow_blank=True, max_length=200, help_text="Ratings: the version put at 1000."
    )

    class Meta:
        ref_name = "DashboardFilters"


class WinRateSerializer(serializers.Serializer):
    wins = serializers.IntegerField()
    losses = serializers.IntegerField()
    ties = serializers.IntegerField()
    both_bad = serializers.IntegerField()
    cant_judge = serializers.IntegerField()
    n = serializers.IntegerField(help_text="wins + losses + ties + both-bad (can't-judge excluded)")
    prompts = serializers.IntegerField(allow_null=True)
    win_rate = serializers.FloatField(allow_null=True)
    wilson_low = serializers.FloatField(allow_null=True)
    wilson_high = serializers.FloatField(allow_null=True)
    bootstrap_low = serializers.FloatField(allow_null=True)
    bootstrap_high = serializers.FloatField(allow_null=True)
    sign_test_p = serializers.FloatField(allow_null=True)

    class Meta:
        ref_name = "WinRate"


class GroupWinRateSerializer(WinRateSerializer):
    group = serializers.CharField()

    class Meta:
        ref_name = "GroupWinRate"


def _win(result: WinRate, **extra: Any) -> dict[str, Any]:
    return {**result.as_dict(), **extra}


class _StatsApi(BaseApi):
    permissions = {"GET": IsLeadOrMLEngineer}

    def scope(self, request: Request, slug: str) -> Scope:
        project = get_or_404(selectors.project_get(slug=slug, user=request.user), "project")
        try:
            return resolve_filters(request.query_params or None, project)
        except FilterError as error:
            raise ValidationError(error.errors) from error


@extend_schema(tags=["statistics"], parameters=[FilterInputSerializer])
class HistoryApi(_StatsApi):
    """Old-vs-new win rate of every round of the project (the history chart)."""

    class OutputSerializer(serializers.Serializer):
        policy = serializers.CharField()
        rounds = serializers.ListField(child=serializers.DictField())

        class Meta:
            ref_name = "WinRateHistory"

    @extend_schema(responses=OutputSerializer, summary="Win rate per round")
    def get(self, request: Request, slug: str) -> Response:
        scope = self.scope(request, slug)
        project, filters = scope.project, scope.filters
        points = reports.history(project=project, filters=filters)
        rows = [
            _win(p.result, round=p.number, name=p.label, baseline=p.baseline, candidate=p.candidate, status=p.status)
            for p in points
        ]
        return Response({"policy": winrate.POLICY, "rounds": rows})


@extend_schema(tags=["statistics"], parameters=[FilterInputSerializer])
class RoundStatsApi(_StatsApi):
    """One round, old vs new: counts, win rate, intervals, sign test, and the breakdowns."""

    class OutputSerializer(serializers.Serializer):
        round = serializers.IntegerField(allow_null=True)
        baseline = serializers.CharField(allow_null=True)
        candidate = serializers.CharField(allow_null=True)
        policy = serializers.CharField()
        overall = WinRateSerializer(allow_null=True)
        breakdowns = serializers.DictField(child=GroupWinRateSerializer(many=True))

        class Meta:
            ref_name = "RoundWinRate"

    @extend_schema(responses=OutputSerializer, summary="A round's win rate and breakdowns")
    def get(self, request: Request, slug: str) -> Response:
        scope = self.scope(request, slug)
        filters, round_ = scope.filters, scope.round
        if round_ is None:
            return Response(
                {
                    "round": None,
                    "baseline": None,
                    "candidate": None,
                    "policy": winrate.POLICY,
                    "overall": None,
                    "breakdowns": {},
                }
            )
        report = reports.round_report(round_=round_, filters=filters)
        return Response(
            {
                "round": round_.number,
                "baseline": round_.baseline.name,
                "candidate": round_.candidate.name,
                "policy": winrate.POLICY,
                "overall": _win(report.overall),
                "breakdowns": {b.name: [_win(r, group=label) for label, r in b.rows] for b in report.breakdowns},
            }
        )


@extend_schema(tags=["statistics"], parameters=[FilterInputSerializer])
class RatingsApi(_StatsApi):
    """Bradley-Terry ratings of every version judged in the project, with the predicted win matrix."""

    class OutputSerializer(serializers.Serializer):
        method = serializers.CharField()
        battles = serializers.IntegerField()
        anchor = serializers.CharField(allow_null=True)
        bootstrap_rounds = serializers.IntegerField()
        connected = serializers.BooleanField()
        models = serializers.ListField(child=serializers.DictField())
        win_matrix = serializers.DictField(help_text="models (row order) and p[i][j] = P(models[i] beats models[j])")

        class Meta:
            ref_name = "Ratings"

    @extend_schema(responses=OutputSerializer, summary="Bradley-Terry ratings across versions")
    def get(self, request: Request, slug: str) -> Response:
        scope = self.scope(request, slug)
        project, filters, anchor = scope.project, scope.filters, scope.anchor
        report = reports.ratings_report(project=project, filters=filters, anchor=anchor)
        ratings = report.ratings
        return Response(
            {
                "method": bradley_terry.METHOD,
                "battles": report.battles,
                "anchor": ratings.anchor if ratings else None,
                "bootstrap_rounds": ratings.rounds if ratings else 0,
                "connected": ratings.connected if ratings else True,
                "models": ratings.table() if ratings else [],
                "win_matrix": {"models": report.names, "p": report.matrix},
            }
        )


@extend_schema(tags=["statistics"], parameters=[FilterInputSerializer])
class AgreementApi(_StatsApi):
    """Agreement on the round's comparisons judged by several annotators (annotator filter not applied)."""

    class OutputSerializer(serializers.Serializer):
        round = serializers.IntegerField(allow_null=True)
        without_strength = serializers.DictField()
        with_strength = serializers.DictField()
        pairs = serializers.ListField(child=serializers.DictField())

        class Meta:
            ref_name = "Agreement"

    @extend_schema(responses=OutputSerializer, summary="Inter-annotator agreement")
    def get(self, request: Request, slug: str) -> Response:
        scope = self.scope(request, slug)
        project, filters, round_ = scope.project, scope.filters, scope.round
        report = reports.agreement_report(project=project, round_ids=[round_.pk] if round_ else [], filters=filters)
        return Response(
            {
                "round": round_.number if round_ else None,
                "without_strength": report.without_strength.as_dict(),
                "with_strength": report.with_strength.as_dict(),
                "pairs": [
                    {
                        "first": p.first,
                        "second": p.second,
                        "items": p.items,
                        "agreement": p.agreement,
                        "cohen_kappa": p.kappa,
                        "cohen_kappa_with_strength": p.kappa_strength,
                    }
                    for p in report.pairs
                ],
            }
        )


@extend_schema(tags=["statistics"], parameters=[FilterInputSerializer])
class QualityApi(_StatsApi):
    """Per-annotator quality figures and flags in the round."""

    class OutputSerializer(serializers.Serializer):
        round = serializers.IntegerField(allow_null=True)
        rules = serializers.ListField(child=serializers.CharField())
        annotators = serializers.ListField(child=serializers.DictField())

        class Meta:
            ref_name = "AnnotatorQuality"

    @extend_schema(responses=OutputSerializer, summary="Annotator quality")
    def get(self, request: Request, slug: str) -> Response:
        scope = self.scope(request, slug)
        project, filters, round_ = scope.project, scope.filters, scope.round
        rows = reports.quality_for(project=project, round_ids=[round_.pk] if round_ else [], filters=filters)
        return Response(
            {
                "round": round_.number if round_ else None,
                "rules": list(quality.FLAG_RULES),
                "annotators": [r.as_dict() for r in rows],
            }
        )
