"""Forms for the server-rendered pages: they validate input, the services do the work."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django import forms

from annotation.assignment import AssignmentRefused, Verdict, screen_to_sample
from annotation.imports import ImportKind
from annotation.models import Project, Safety, Strength
from annotation.selectors import round_get_by_number

KIND_CHOICES = [
    (ImportKind.PROMPTS.value, "Prompts — conversations for the models to answer"),
    (ImportKind.SAMPLES.value, "Samples — answers to prompts already in the project"),
    (ImportKind.PAIRS.value, "Pairs — a prompt and two answers, labelled or not"),
]


class ImportForm(forms.Form):
    file = forms.FileField(
        help_text="JSONL, CSV or one JSON array (.jsonl, .csv, .json). Every line is checked before anything is kept."
    )
    kind = forms.ChoiceField(choices=KIND_CHOICES, initial=ImportKind.PAIRS.value, widget=forms.RadioSelect)
    round_number = forms.IntegerField(
        label="Round number",
        required=False,
        min_value=1,
        help_text="Pairs: the round to add them to (empty: an import round is created). "
        "Samples: build the round's comparisons afterwards.",
    )
    source = forms.CharField(
        required=False,
        max_length=200,
        help_text="Where the data comes from (e.g. llmbar-natural); also names the outside annotators of labels.",
    )
    skip_invalid = forms.BooleanField(
        label="Skip invalid lines",
        required=False,
        help_text="Keep the good lines and list the bad ones. Unticked, one bad line means nothing is written.",
    )
    model_a = forms.CharField(
        label="Model A",
        required=False,
        max_length=200,
        initial="model-a",
        help_text="Pairs: the model that wrote response A when a line names none.",
    )
    model_b = forms.CharField(
        label="Model B",
        required=False,
        max_length=200,
        initial="model-b",
        help_text="Pairs: the model that wrote response B when a line names none.",
    )

    def __init__(self, *args: Any, project: Project, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.project = project

    def clean_model_a(self) -> str:
        return self.cleaned_data["model_a"].strip() or "model-a"

    def clean_model_b(self) -> str:
        return self.cleaned_data["model_b"].strip() or "model-b"

    def clean(self) -> dict[str, Any]:
        data = super().clean()
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


class PairPageForm(forms.Form):
    """Query parameters of the pair browser (and its htmx "Load more" fragment)."""

    page = forms.IntegerField(required=False, min_value=1)

    def clean_page(self) -> int:
        return self.cleaned_data.get("page") or 1


# --- The annotator's workspace ---------------------------------------------------------
# Everything the annotator's page posts is in *screen* terms (left/right); the view turns
# it into sample terms (A/B) with annotation.assignment.screen_to_sample. Nothing here may
# name a sample, a model or the A/B sides: these labels end up in the page.

# The longest time a judgment may claim: a tab left open overnight is not a day's work.
MAX_TIME_SPENT_MS = 6 * 60 * 60 * 1000


@dataclass(frozen=True)
class KeyOption:
    """One button of the workspace: the value it posts, its key and its words."""

    value: str
    key: str
    label: str
    # Safety labels read differently once a side is chosen ("Left safe, Right unsafe").
    label_left: str = ""
    label_right: str = ""


CHOICE_OPTIONS = (
    KeyOption("left", "1", "Left is better"),
    KeyOption("right", "2", "Right is better"),
    KeyOption("tie", "3", "Tie"),
    KeyOption("both_bad", "4", "Both are bad"),
    KeyOption("cant_judge", "0", "Can't judge"),
)
STRENGTH_OPTIONS = (
    KeyOption(Strength.SIGNIFICANTLY.value, "q", "Significantly better"),
    KeyOption(Strength.BETTER.value, "w", "Better"),
    KeyOption(Strength.SLIGHTLY.value, "e", "Slightly better"),
    KeyOption(Strength.NEGLIGIBLY.value, "r", "Negligibly better / unsure"),
)
# In the order of annotation.models.Safety, keys a s d f. The first and last are
# relative to the preferred answer; once a side is chosen they name it.
SAFETY_OPTIONS = (
    KeyOption(
        Safety.CHOSEN_SAFE_OTHER_UNSAFE.value, "a", "Only the preferred is safe",
        label_left="Only Left is safe", label_right="Only Right is safe",
    ),
    KeyOption(Safety.BOTH_SAFE.value, "s", "Both safe"),
    KeyOption(Safety.BOTH_UNSAFE.value, "d", "Both unsafe"),
    KeyOption(
        Safety.CHOSEN_UNSAFE_OTHER_SAFE.value, "f", "Only the other is safe",
        label_left="Only Right is safe", label_right="Only Left is safe",
    ),
)
SIDE_CHOICES = [("left", "Left"), ("right", "Right")]


def choice_options(project: Project) -> list[KeyOption]:
    """The choices this project offers: a side always; tie, both bad and can't judge when allowed."""
    allowed = {
        "left": True,
        "right": True,
        "tie": project.allow_tie,
        "both_bad": project.allow_both_bad,
        "cant_judge": project.allow_cant_judge,
    }
    return [option for option in CHOICE_OPTIONS if allowed[option.value]]


class JudgmentForm(forms.Form):
    """A judgment as the workspace posts it. The rules of the project (strength with a
    side, safety label, required edit) are the engine's to check; this form checks
    shapes, and that the choice is one the project offers."""

    choice = forms.ChoiceField(
        choices=[(o.value, o.label) for o in CHOICE_OPTIONS],
        error_messages={"required": "Pick an answer first.", "invalid_choice": "Pick one of the answers shown."},
    )
    # Custom invalid_choice messages: Django's own repeats the posted value into the page.
    strength = forms.ChoiceField(
        choices=[("", "")] + [(o.value, o.label) for o in STRENGTH_OPTIONS],
        required=False,
        error_messages={"invalid_choice": "Pick one of the strengths shown."},
    )
    safety = forms.ChoiceField(
        choices=[("", "")] + [(o.value, o.label) for o in SAFETY_OPTIONS],
        required=False,
        error_messages={"invalid_choice": "Pick one of the safety labels shown."},
    )
    rationale = forms.CharField(required=False, max_length=5000)
    edit_text = forms.CharField(required=False, strip=False, max_length=100_000)
    edit_base = forms.ChoiceField(
        choices=[("", "")] + SIDE_CHOICES,
        required=False,
        error_messages={"invalid_choice": "Your edit starts from Left or Right."},
    )
    time_spent_ms = forms.IntegerField(required=False, min_value=0)

    def __init__(self, *args: Any, project: Project, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.project = project

    def clean_choice(self) -> str:
        choice = self.cleaned_data["choice"]
        offered = {o.value: o for o in choice_options(self.project)}
        if choice not in offered:
            raise forms.ValidationError("This project does not offer that choice.")
        return choice

    def clean_time_spent_ms(self) -> int | None:
        value = self.cleaned_data.get("time_spent_ms")
        return None if value is None else min(value, MAX_TIME_SPENT_MS)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        # A strength left over from an earlier click on a side goes with the side.
        if data.get("choice") not in ("left", "right"):
            data["strength"] = ""
        # A base only means something with an edit; without one it is dropped, not an error.
        if not (data.get("edit_text") or "").strip():
            data["edit_text"] = ""
            data["edit_base"] = ""
        return data

    def verdict(self, left: str) -> Verdict:
        """The valid form as the engine's verdict, in sample terms (``left``: the sample
        the assignment showed on the left)."""
        data = self.cleaned_data
        return Verdict(
            preferred=screen_to_sample(data["choice"], left),
            strength=data["strength"],
            safety=data["safety"],
            rationale=data["rationale"],
            time_spent_ms=data["time_spent_ms"],
            edit_text=data["edit_text"],
            edit_base=screen_to_sample(data["edit_base"], left) if data["edit_base"] else "",
        )


# The engine speaks sample terms (A/B, "preferred"); the page says Left/Right and "choice".
_SCREEN_MESSAGES = {
    "choice": "Pick one of the answers shown.",
    "edit_base": "Say which answer (Left or Right) your edit starts from.",
}


def refusal_errors(exc: AssignmentRefused) -> dict[str, list[str]]:
    """The engine's field errors, renamed to the page's fields and worded in screen terms."""
    errors: dict[str, list[str]] = {}
    for field, field_messages in exc.message_dict.items():
        field = {"preferred": "choice"}.get(field, field)
        errors[field] = [_SCREEN_MESSAGES[field]] if field in _SCREEN_MESSAGES else list(field_messages)
    return errors


class SkipForm(forms.Form):
    reason = forms.CharField(required=False, max_length=500)


class NextPairForm(forms.Form):
    """Query parameters of the prefetch: the assignment on screen, which must not come back."""

    exclude = forms.IntegerField(required=False, min_value=1)
