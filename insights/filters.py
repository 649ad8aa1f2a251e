"""What a lead narrowed the dashboard to, checked once for the page, the CSV downloads and
the API alike (``resolve_filters``): the round on show, a tag, a date range, one
annotator, the Bradley-Terry anchor."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, cast

from django import forms
from django.core.validators import MaxValueValidator, MinValueValidator

from annotation.models import Project, Round
from insights import lookups

MAX_DAYS = 3660
# The dates a filter may name: the last day is one before date.max, since a range ends
# at midnight after its last day, and the first is far before any judgment (a date
# before year 1 in a timezone east of UTC would not exist either).
EARLIEST = date(1900, 1, 1)
LATEST = date(9999, 12, 30)
_DATE_ERRORS = {
    "min_value": f"Pick a date from {EARLIEST.isoformat()} on.",
    "max_value": f"Pick a date up to {LATEST.isoformat()}.",
}


@dataclass(frozen=True)
class Filters:
    """What the lead narrowed the numbers to; every field optional."""

    tag: str = ""
    since: date | None = None
    until: date | None = None  # inclusive
    annotator_id: int | None = None

    def key(self) -> str:
        return json.dumps(self.as_json(), sort_keys=True, separators=(",", ":"))

    @property
    def active(self) -> bool:
        return bool(self.tag or self.since or self.until or self.annotator_id)

    def as_json(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "annotator_id": self.annotator_id,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Filters:
        return cls(
            tag=data.get("tag") or "",
            since=date.fromisoformat(data["since"]) if data.get("since") else None,
            until=date.fromisoformat(data["until"]) if data.get("until") else None,
            annotator_id=data.get("annotator_id"),
        )


class DashboardFilterForm(forms.Form):
    round = forms.TypedChoiceField(
        required=False, coerce=int, empty_value=None, help_text="Empty: the latest round with judgments."
    )
    tag = forms.ChoiceField(required=False)
    since = forms.DateField(
        required=False,
        label="From",
        widget=forms.DateInput(attrs={"type": "date", "min": EARLIEST.isoformat(), "max": LATEST.isoformat()}),
        validators=[MinValueValidator(EARLIEST), MaxValueValidator(LATEST)],
        error_messages=_DATE_ERRORS,
    )
    until = forms.DateField(
        required=False,
        label="To",
        widget=forms.DateInput(attrs={"type": "date", "min": EARLIEST.isoformat(), "max": LATEST.isoformat()}),
        validators=[MinValueValidator(EARLIEST), MaxValueValidator(LATEST)],
        error_messages=_DATE_ERRORS,
    )
    annotator = forms.TypedChoiceField(required=False, coerce=int, empty_value=None)
    anchor = forms.ChoiceField(required=False, label="Anchor at 1000", help_text="Empty: ratings average 1000.")

    def __init__(
        self,
        *args: Any,
        rounds: list[Round],
        tags: list[str],
        annotators: list[tuple[int, str]],
        versions: list[str],
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.rounds = {r.number: r for r in rounds}
        choices: dict[str, list[tuple[Any, str]]] = {
            "round": [("", "Latest judged")] + [(r.number, f"{r}") for r in rounds],
            "tag": [("", "All tags")] + [(t, t) for t in tags],
            "annotator": [("", "Everyone")] + [(pk, name) for pk, name in annotators],
            "anchor": [("", "Mean (no anchor)")] + [(v, v) for v in versions],
        }
        for name, options in choices.items():
            cast(forms.ChoiceField, self.fields[name]).choices = options

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        since, until = data.get("since"), data.get("until")
        if since and until:
            if since > until:
                self.add_error("until", "The end date must not be before the start date.")
            elif (until - since).days > MAX_DAYS:
                self.add_error("until", f"Pick a range of at most {MAX_DAYS} days.")
        return data


@dataclass
class Scope:
    """A checked dashboard request: the project, the filters, the round on show."""

    project: Project
    form: DashboardFilterForm
    filters: Filters
    round: Round | None
    rounds: list[Round]
    anchor: str | None


class FilterError(Exception):
    """The filters were refused; ``form`` carries the errors, field by field."""

    def __init__(self, form: DashboardFilterForm):
        super().__init__("invalid dashboard filters")
        self.form = form

    @property
    def errors(self) -> dict[str, list[str]]:
        return {field: [e["message"] for e in errs] for field, errs in self.form.errors.get_json_data().items()}


def resolve_filters(data: Mapping[str, Any] | None, project: Project) -> Scope:
    """Check the query (a page's GET or the API's query parameters) against what the
    project has - its rounds, tags, annotators and versions - and say what to show.
    Raises FilterError. No query: everything, on the latest round with judgments."""
    rounds = lookups.dashboard_rounds(project=project)
    form = DashboardFilterForm(
        data or None,
        rounds=rounds,
        tags=lookups.project_tags(project=project),
        annotators=lookups.project_annotators(project=project),
        versions=lookups.project_versions(project=project),
    )
    if not form.is_bound:
        return Scope(project, form, Filters(), lookups.default_round(rounds), rounds, None)
    if not form.is_valid():
        raise FilterError(form)
    cleaned = form.cleaned_data
    number = cleaned.get("round")
    chosen = form.rounds.get(number) if number is not None else None
    filters = Filters(
        tag=cleaned.get("tag") or "",
        since=cleaned.get("since"),
        until=cleaned.get("until"),
        annotator_id=cleaned.get("annotator"),
    )
    return Scope(project, form, filters, chosen or lookups.default_round(rounds), rounds, cleaned.get("anchor") or None)
