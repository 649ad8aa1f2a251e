"""The ML engineer's export form: fields for the job, the filters and the options.

The form checks types and ranges; the service validates the whole request again
(pydantic schema + the project's rounds and users) and its errors land on these fields.
"""

from __future__ import annotations

from typing import Any, cast

from django import forms

from annotation.models import Project, Strength
from rlhf_export.models import ExportKind, FileFormat, TextFormat
from rlhf_export.schemas import ExportFilters, ExportOptions

_F = ExportFilters.model_fields
_O = ExportOptions.model_fields


def _comma_list(value: str) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


class ExportForm(forms.Form):
    project = forms.ModelChoiceField(queryset=Project.objects.none(), empty_label=None, to_field_name="slug")
    kind = forms.ChoiceField(choices=ExportKind.choices, initial=ExportKind.DPO)
    file_format = forms.ChoiceField(label="File format", choices=FileFormat.choices, initial=FileFormat.PARQUET)
    text_format = forms.ChoiceField(
        label="TRL format",
        choices=TextFormat.choices,
        initial=TextFormat.STANDARD,
        help_text="Standard: plain strings. Conversational: lists of {role, content} messages.",
    )
    rounds = forms.CharField(required=False, help_text="Round numbers, comma-separated; empty: every round.")
    tags = forms.CharField(required=False, help_text="Keep prompts with any of these tags (comma-separated).")
    min_strength = forms.ChoiceField(
        label="Minimum strength",
        required=False,
        choices=[("", "Any")] + list(Strength.choices),
        help_text="Llama 3 kept only 'significantly better' and 'better' for DPO.",
    )
    drop_ties = forms.BooleanField(required=False, help_text=_F["drop_ties"].description or "")
    drop_both_bad = forms.BooleanField(
        label="Drop both-bad", required=False, help_text=_F["drop_both_bad"].description or ""
    )
    drop_cant_judge = forms.BooleanField(
        label="Drop can't-judge", required=False, initial=True, help_text=_F["drop_cant_judge"].description or ""
    )
    drop_chosen_unsafe = forms.BooleanField(
        label="Drop unsafe-chosen", required=False, initial=True, help_text=_F["drop_chosen_unsafe"].description or ""
    )
    include_gold = forms.BooleanField(label="Include gold items", required=False, initial=True)
    aggregation = forms.ChoiceField(
        choices=[("majority", "Majority per comparison"), ("none", "None: one row per judgment")], initial="majority"
    )
    disagreements = forms.ChoiceField(
        choices=[("keep", "Keep, with agreement recorded"), ("drop", "Drop (unanimous only)")], initial="keep"
    )
    exclude_flagged_annotators = forms.BooleanField(
        label="Exclude flagged annotators", required=False, help_text=_F["exclude_flagged_annotators"].description or ""
    )
    exclude_annotators = forms.CharField(required=False, help_text="Usernames, comma-separated.")
    deduplicate = forms.BooleanField(required=False, initial=True, help_text=_F["deduplicate"].description or "")
    test_fraction = forms.FloatField(
        label="Test fraction",
        min_value=0.0,
        max_value=0.5,
        initial=0.05,
        help_text=_F["test_fraction"].description or "",
    )
    split_seed = forms.CharField(max_length=100, initial="prefdata", help_text=_F["split_seed"].description or "")
    margin = forms.ChoiceField(
        choices=[
            ("none", "None"),
            ("small", "Llama 2 small (1, 2/3, 1/3, 0)"),
            ("large", "Llama 2 large (3, 2, 1, 0)"),
        ],
        initial="none",
        help_text="Reward-model exports only.",
    )
    rows_per_shard = forms.IntegerField(label="Rows per file", min_value=1, max_value=50_000_000, initial=500_000)

    def __init__(self, *args: Any, projects: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ModelChoiceField, self.fields["project"]).queryset = projects

    def clean_rounds(self) -> list[int]:
        numbers = []
        for part in _comma_list(self.cleaned_data["rounds"]):
            if not part.isdigit():  # round numbers are 0 (a pilot), 1, 2, …
                raise forms.ValidationError(f"{part!r} is not a round number (0, 1, 2, …).")
            numbers.append(int(part))
        return numbers

    def clean_tags(self) -> list[str]:
        return _comma_list(self.cleaned_data["tags"])

    def clean_exclude_annotators(self) -> list[str]:
        return _comma_list(self.cleaned_data["exclude_annotators"])

    def filters(self) -> dict[str, Any]:
        data = self.cleaned_data
        filters = {name: data[name] for name in ExportFilters.model_fields if name in data}
        filters["min_strength"] = data["min_strength"] or None
        return filters

    def options(self) -> dict[str, Any]:
        return {name: self.cleaned_data[name] for name in ExportOptions.model_fields}


class ExportListFilterForm(forms.Form):
    page = forms.IntegerField(min_value=1, required=False)
