"""The lead's upload form: it validates the choices, the import service does the work."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings

from annotation.models import Project
from annotation.selectors import round_get_by_number
from core.limits import MAX_ID
from imports.report import ImportKind
from imports.uploads import size_text

KIND_CHOICES = [
    (ImportKind.PROMPTS.value, "Prompts — conversations for the models to answer"),
    (ImportKind.SAMPLES.value, "Samples — answers to prompts already in the project"),
    (ImportKind.PAIRS.value, "Pairs — a prompt and two answers, labelled or not"),
]


class ImportForm(forms.Form):
    file = forms.FileField(
        help_text="JSONL, CSV or one JSON array (.jsonl, .csv, .json). Every record is checked before anything is kept."
    )
    kind = forms.ChoiceField(choices=KIND_CHOICES, initial=ImportKind.PAIRS.value, widget=forms.RadioSelect)
    round_number = forms.IntegerField(
        label="Round number",
        required=False,
        min_value=0,
        max_value=MAX_ID,
        help_text="Pairs: the round to add them to (empty: an import round is created). "
        "Samples: build the round's comparisons afterwards.",
    )
    source = forms.CharField(
        required=False,
        max_length=200,
        help_text="Where the data comes from (e.g. llmbar-natural); also names the outside annotators of labels.",
    )
    skip_invalid = forms.BooleanField(
        label="Skip invalid records",
        required=False,
        help_text="Keep the good records and list the bad ones. Unticked, one bad record means nothing is written.",
    )
    model_a = forms.CharField(
        label="Model A",
        required=False,
        max_length=200,
        initial="model-a",
        help_text="Pairs: the model that wrote response A when a record names none.",
    )
    model_b = forms.CharField(
        label="Model B",
        required=False,
        max_length=200,
        initial="model-b",
        help_text="Pairs: the model that wrote response B when a record names none.",
    )

    def __init__(self, *args: Any, project: Project, file_refused: str = "", **kwargs: Any) -> None:
        """``file_refused``: why the upload was dropped before the form saw it (too big,
        ``imports/uploads.py``); the form then says only that."""
        super().__init__(*args, **kwargs)
        self.project = project
        self.file_refused = file_refused
        self.fields["file"].help_text += f" At most {size_text(settings.IMPORT_MAX_BYTES)}."
        if file_refused:
            for field in self.fields.values():
                field.required = False

    def clean_file(self) -> Any:
        if self.file_refused:
            raise forms.ValidationError(self.file_refused, code="too_big")
        return self.cleaned_data["file"]

    def clean_model_a(self) -> str:
        return self.cleaned_data["model_a"].strip() or "model-a"

    def clean_model_b(self) -> str:
        return self.cleaned_data["model_b"].strip() or "model-b"

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.file_refused:
            return data
        number = data.get("round_number")
        data["round"] = None
        if number is not None:
            if data.get("kind") == ImportKind.PROMPTS:
                self.add_error("round_number", "Prompts belong to the project, not to a round: leave this empty.")
            else:
                data["round"] = round_get_by_number(project=self.project, number=number)
                if data["round"] is None:
                    self.add_error("round_number", f"This project has no round {number}.")
        return data
