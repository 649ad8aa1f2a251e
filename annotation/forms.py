"""Forms for the server-rendered pages: they validate input, the services do the work."""

from __future__ import annotations

from dataclasses import dataclass

from django import forms

from annotation.assignment import AssignmentRefused
from annotation.judging import Verdict, choices_allowed
from annotation.models import EditPolicy, Project, Safety, Strength
from core.limits import MAX_ID


class PairPageForm(forms.Form):
    """Query parameters of the pair browser (and its htmx "Load more" fragment)."""

    page = forms.IntegerField(required=False, min_value=1, max_value=MAX_ID)

    def clean_page(self) -> int:
        return self.cleaned_data.get("page") or 1


# --- The annotator's workspace ---------------------------------------------------------
# Everything the annotator's page posts is in *screen* terms (left/right); the judgment
# service turns it into sample terms (A/B). Nothing here may name a sample, a model or the
# A/B sides: these labels end up in the page.


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
        Safety.CHOSEN_SAFE_OTHER_UNSAFE.value,
        "a",
        "Only the preferred is safe",
        label_left="Only Left is safe",
        label_right="Only Right is safe",
    ),
    KeyOption(Safety.BOTH_SAFE.value, "s", "Both safe"),
    KeyOption(Safety.BOTH_UNSAFE.value, "d", "Both unsafe"),
    KeyOption(
        Safety.CHOSEN_UNSAFE_OTHER_SAFE.value,
        "f",
        "Only the other is safe",
        label_left="Only Right is safe",
        label_right="Only Left is safe",
    ),
)
SIDE_CHOICES = [("left", "Left"), ("right", "Right")]


def choice_options(project: Project) -> list[KeyOption]:
    """The choices this project offers (``annotation.judging.choices_allowed``), as buttons."""
    allowed = {"A": "left", "B": "right"}
    offered = {allowed.get(c, c) for c in choices_allowed(project)}
    return [option for option in CHOICE_OPTIONS if option.value in offered]


class JudgmentForm(forms.Form):
    """A judgment as the workspace posts it, in screen terms. This form only reads the
    post: every rule (which choices the project offers, a strength with a side and only
    then, the safety label, the edit policy, the limits) is the judgment service's
    (``annotation.judging.verdict_check``), so the page and the API refuse alike."""

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
    rationale = forms.CharField(required=False)
    edit_text = forms.CharField(required=False, strip=False)
    edit_base = forms.ChoiceField(
        choices=[("", "")] + SIDE_CHOICES,
        required=False,
        error_messages={"invalid_choice": "Your edit starts from Left or Right."},
    )
    time_spent_ms = forms.IntegerField(required=False)

    def verdict(self) -> Verdict:
        """The valid form as the judgment service's verdict, in screen terms (submit it
        with ``screen=True``)."""
        return Verdict.from_screen(self.cleaned_data)


def form_errors(form: forms.Form) -> dict[str, list[str]]:
    """A bound form's errors, field by field, as plain strings."""
    return {field: [str(message) for message in messages] for field, messages in form.errors.items()}


def refusal_errors(exc: AssignmentRefused) -> dict[str, list[str]]:
    """The judgment service's field errors under the page's field names (its words are the
    API's too: they never name a side in sample terms)."""
    return {
        {"preferred": "choice"}.get(field, field): [str(m) for m in messages]
        for field, messages in exc.message_dict.items()
    }


def errors_placed(errors: dict[str, list[str]], project: Project) -> tuple[dict[str, list[str]], list[str]]:
    """(errors by field, errors for the top of the form): an error about a field the page
    does not show - safety where the project asks for none, an edit where it takes none, a
    bad time - goes on top, so that nothing refused is left unexplained."""
    shown = {"choice", "strength", "rationale", "reason"}
    if project.require_safety:
        shown.add("safety")
    if project.edit_policy != EditPolicy.OFF:
        shown |= {"edit_text", "edit_base"}
    by_field = {field: messages for field, messages in errors.items() if field in shown}
    general = [message for field, messages in errors.items() if field not in shown for message in messages]
    return by_field, general


class SkipForm(forms.Form):
    # Required and limited by the engine (annotation.assignment.assignment_skip).
    reason = forms.CharField(required=False)


class NextPairForm(forms.Form):
    """Query parameters of the prefetch: the assignment on screen, which must not come back."""

    exclude = forms.IntegerField(required=False, min_value=1, max_value=MAX_ID)
