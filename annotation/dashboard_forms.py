"""The dashboard's filters, validated by one Form for the pages and the CSV downloads
(the API's input serializer applies the same rules)."""

from __future__ import annotations

from typing import Any

from django import forms

from annotation.dashboards import Filters
from annotation.models import Project, Round

MAX_DAYS = 3660


class DashboardFilterForm(forms.Form):
    round = forms.TypedChoiceField(
        required=False, coerce=int, empty_value=None, help_text="Empty: the latest round with judgments."
    )
    tag = forms.ChoiceField(required=False)
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))
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
        self.fields["round"].choices = [("", "Latest judged")] + [(r.number, f"{r}") for r in rounds]
        self.fields["tag"].choices = [("", "All tags")] + [(t, t) for t in tags]
        self.fields["annotator"].choices = [("", "Everyone")] + [(pk, name) for pk, name in annotators]
        self.fields["anchor"].choices = [("", "Mean (no anchor)")] + [(v, v) for v in versions]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until:
            if since > until:
                self.add_error("until", "The end date must not be before the start date.")
            elif (until - since).days > MAX_DAYS:
                self.add_error("until", f"Pick a range of at most {MAX_DAYS} days.")
        return data

    def filters(self) -> Filters:
        data = self.cleaned_data
        return Filters(
            tag=data.get("tag") or "",
            since=data.get("since"),
            until=data.get("until"),
            annotator_id=data.get("annotator"),
        )

    def chosen_round(self) -> Round | None:
        number = self.cleaned_data.get("round")
        return self.rounds.get(number) if number is not None else None


def filter_form(data: Any, project: Project) -> DashboardFilterForm:
    from annotation import dashboards

    return DashboardFilterForm(
        data,
        rounds=dashboards.dashboard_rounds(project=project),
        tags=dashboards.project_tags(project=project),
        annotators=dashboards.project_annotators(project=project),
        versions=dashboards.project_versions(project=project),
    )
