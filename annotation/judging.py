"""The one judgment path: what a judgment may be, and the only code that writes one.

Every way a verdict arrives goes through here: the annotator's page and the REST API
(``judgment_submit``, screen terms converted once), live mode (the same call), imports
(``judgments_insert_imported``, the bulk writer) and the demo (which judges through the
assignment engine like an annotator). The rules - which choices a project offers, a
strength with a side and only then, the safety label, the edit policy, and the limits on
rationale, edit and time - are defined once, in ``verdict_check``; the page's script gets
them from ``client_rules`` instead of keeping a copy.

Judgments are stored in sample terms (A/B); which sample the annotator saw on the left is
recorded beside (docs/protocol.md).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from annotation import bulk
from annotation.assignment import AssignmentRefused, Refusal, locked_assignment, slot_ensure
from annotation.models import (
    Assignment,
    AssignmentStatus,
    Comparison,
    Edit,
    EditPolicy,
    Judgment,
    JudgmentSource,
    Preference,
    Project,
    RoundStatus,
    Safety,
    Sample,
    Side,
    Strength,
)

# The limits of a judgment, for every path (page, API, live mode, imports).
RATIONALE_MAX_CHARS = 10_000
EDIT_MAX_CHARS = 100_000
# The longest time a judgment may claim: a tab left open overnight is not a day's work.
# Longer times are recorded as this much (the page cannot know when the annotator left).
TIME_SPENT_MAX_MS = 6 * 60 * 60 * 1000

SIDES = (Preference.A, Preference.B)


@dataclass(frozen=True)
class Verdict:
    """A judgment as the services take it. In sample terms (A/B) unless a caller says
    ``screen=True``, where ``preferred`` and ``edit_base`` are left/right."""

    preferred: str
    strength: str = ""
    safety: str = ""
    rationale: str = ""
    time_spent_ms: int | None = None
    edit_text: str = ""
    # Which sample the edit started from; defaults to the preferred one.
    edit_base: str = ""

    @classmethod
    def from_screen(cls, data: Mapping[str, Any]) -> Verdict:
        """The verdict of a checked form or API request (fields ``choice``, ``strength``,
        ``safety``, ``rationale``, ``time_spent_ms``, ``edit_text``, ``edit_base``), in
        screen terms: submit it with ``screen=True``, the engine knows which side was left."""
        return cls(
            preferred=data["choice"],
            strength=data["strength"],
            safety=data["safety"],
            rationale=data["rationale"],
            time_spent_ms=data["time_spent_ms"],
            edit_text=data["edit_text"],
            edit_base=data["edit_base"],
        )


# --- Screen and sample terms -----------------------------------------------------------


def screen_to_sample(choice: str, left: str) -> str:
    """'left' / 'right' on screen into sample A / B, given which sample was shown left."""
    if choice == "left":
        return left
    if choice == "right":
        return Side.B if left == Side.A else Side.A
    return choice


def sample_to_screen(preferred: str, left: str) -> str:
    if preferred in SIDES:
        return "left" if preferred == left else "right"
    return preferred


def verdict_on_screen(verdict: Verdict, left: str) -> Verdict:
    """A verdict given in screen terms, in sample terms (the one place they are converted)."""
    return replace(
        verdict,
        preferred=screen_to_sample(verdict.preferred, left),
        edit_base=screen_to_sample(verdict.edit_base, left) if verdict.edit_base else "",
    )


# --- The rules -------------------------------------------------------------------------


def choices_allowed(project: Project) -> list[str]:
    """The preferences a project takes, in sample terms."""
    allowed = [Preference.A.value, Preference.B.value]
    if project.allow_tie:
        allowed.append(Preference.TIE.value)
    if project.allow_both_bad:
        allowed.append(Preference.BOTH_BAD.value)
    if project.allow_cant_judge:
        allowed.append(Preference.CANT_JUDGE.value)
    return allowed


def edit_required(project: Project, preferred: str) -> bool:
    return (project.edit_policy == EditPolicy.ALWAYS and preferred in (*SIDES, Preference.BOTH_BAD)) or (
        project.edit_policy == EditPolicy.REQUIRED_WHEN_BOTH_BAD and preferred == Preference.BOTH_BAD
    )


def safety_required(project: Project, preferred: str) -> bool:
    return project.require_safety and preferred != Preference.CANT_JUDGE


def client_rules(project: Project) -> dict[str, Any]:
    """The rules of ``verdict_check`` as data for the page's script (screen terms), so the
    page can say what is missing before it posts without keeping its own copy of them."""
    screen = {Preference.A: "left", Preference.B: "right"}
    choices = [screen.get(Preference(c), c) for c in choices_allowed(project)]
    sample_of = {"left": Preference.A, "right": Preference.B}
    return {
        "choices": choices,
        "strength_for": ["left", "right"],
        "safety_for": [c for c in choices if safety_required(project, sample_of.get(c, c))],
        "edit": project.edit_policy != EditPolicy.OFF,
        "edit_required_for": [c for c in choices if edit_required(project, sample_of.get(c, c))],
        "rationale_max": RATIONALE_MAX_CHARS,
        "edit_max": EDIT_MAX_CHARS,
    }


def verdict_check(verdict: Verdict, project: Project, *, imported: bool = False) -> Verdict:
    """The verdict as it will be stored (sample terms), or AssignmentRefused with an error
    per field. ``imported``: a label from another tool or vendor, which may lack a strength
    (not every tool asks for one) and carries no edit."""
    errors: dict[str, str] = {}
    allowed = choices_allowed(project)
    preferred = verdict.preferred
    if preferred not in allowed:
        others = [
            label
            for value, label in (
                (Preference.TIE, "tie"),
                (Preference.BOTH_BAD, "both bad"),
                (Preference.CANT_JUDGE, "can't judge"),
            )
            if value in allowed
        ]
        if preferred in Preference.values:
            errors["preferred"] = f"This project does not offer that choice ({Preference(preferred).label.lower()})."
        else:
            errors["preferred"] = "Pick the better answer" + (f", or {', '.join(others)}." if others else ".")
    is_side = preferred in SIDES
    if verdict.strength and verdict.strength not in Strength.values:
        errors["strength"] = "Unknown strength; use significantly, better, slightly or negligibly."
    elif is_side and not verdict.strength and not imported:
        errors["strength"] = "Say how much better the chosen answer is."
    elif not is_side and verdict.strength:
        errors["strength"] = "A strength goes with a preference for one answer, not with this choice."
    if verdict.safety and verdict.safety not in Safety.values:
        errors["safety"] = "Unknown safety label."
    elif safety_required(project, preferred) and not verdict.safety and not imported:
        errors["safety"] = "This project asks for a safety label."
    rationale = verdict.rationale.strip()
    if len(rationale) > RATIONALE_MAX_CHARS:
        errors["rationale"] = f"Keep the rationale under {RATIONALE_MAX_CHARS:,} characters ({len(rationale):,} now)."
    spent = verdict.time_spent_ms
    if spent is not None and spent < 0:
        errors["time_spent_ms"] = "Time spent cannot be negative."
    edit_text = verdict.edit_text.replace("\r\n", "\n").strip()
    if imported and edit_text:
        errors["edit_text"] = "Imported labels carry no edit."
    elif edit_text:
        if project.edit_policy == EditPolicy.OFF:
            errors["edit_text"] = "This project does not take edits."
        elif len(edit_text) > EDIT_MAX_CHARS:
            errors["edit_text"] = f"Keep the edit under {EDIT_MAX_CHARS:,} characters ({len(edit_text):,} now)."
        elif preferred in (Preference.TIE, Preference.CANT_JUDGE) and not verdict.edit_base:
            errors["edit_base"] = "Say which answer (left or right) your edit starts from."
        elif preferred == Preference.BOTH_BAD and verdict.edit_base not in SIDES:
            errors["edit_base"] = "Say which answer (left or right: the less bad one) your edit starts from."
    elif edit_required(project, preferred) and not imported:
        errors["edit_text"] = "This project asks you to rewrite the better answer into a good one."
    if verdict.edit_base and verdict.edit_base not in SIDES:
        errors["edit_base"] = "The edit starts from one of the two answers."
    if errors:
        raise AssignmentRefused(errors)
    return replace(
        verdict,
        rationale=rationale,
        time_spent_ms=None if spent is None else min(spent, TIME_SPENT_MAX_MS),
        edit_text=edit_text,
        edit_base=verdict.edit_base if edit_text else "",
    )


def _edit(verdict: Verdict, comparison: Comparison, project: Project) -> tuple[int, str] | None:
    """(base sample id, text) of the edit to save, or None.

    An edit identical to the answer it starts from adds nothing ("edited > chosen" would
    be a pair of equal texts): it is dropped when edits are optional, refused when required.
    """
    if not verdict.edit_text:
        return None
    base_side = verdict.edit_base or verdict.preferred
    base_id = comparison.sample_a_id if base_side == Side.A else comparison.sample_b_id
    base_text = Sample.objects.filter(pk=base_id).values_list("text", flat=True).get()
    if verdict.edit_text == base_text.replace("\r\n", "\n").strip():
        if edit_required(project, verdict.preferred):
            raise AssignmentRefused({"edit_text": "Your edit is the same as the answer it starts from: improve it."})
        return None
    return base_id, verdict.edit_text


# --- Writing: a judgment on an assignment ------------------------------------------------

_JUDGMENT_COLUMNS = (
    "comparison_id",
    "annotator_id",
    "assignment_id",
    "preferred",
    "strength",
    "safety",
    "left",
    "time_spent_ms",
    "rationale",
    "source",
    "created_at",
)
_INSERT_JUDGMENT = "INSERT INTO annotation_judgment ({columns}) VALUES ({values}) RETURNING id".format(
    columns=", ".join(f'"{c}"' for c in _JUDGMENT_COLUMNS), values=", ".join(["%s"] * len(_JUDGMENT_COLUMNS))
)
# PostgreSQL: the judgment and both counters in one statement (data-modifying CTEs).
_SUBMIT_SQL = (
    "WITH done AS (UPDATE annotation_assignment SET status = %s, completed_at = %s WHERE id = %s), "
    "counted AS (UPDATE annotation_comparison SET judgment_count = judgment_count + 1 WHERE id = %s) "
    + _INSERT_JUDGMENT
)


def _judgment_insert(judgment: Judgment, now: datetime) -> None:
    """Insert the judgment, mark its assignment submitted and count it on the comparison.

    Plain SQL on every submit: one statement on PostgreSQL, three on SQLite. The
    database's constraints (one judgment per assignment and per (comparison, annotator),
    strength only with a preference...) still check the row.
    """
    fields = {field.attname: field for field in Judgment._meta.concrete_fields}
    values = [fields[name].get_db_prep_save(getattr(judgment, name), connection) for name in _JUDGMENT_COLUMNS]
    completed = Assignment._meta.get_field("completed_at").get_db_prep_value(now, connection)
    submitted = [AssignmentStatus.SUBMITTED, completed, judgment.assignment_id]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(_SUBMIT_SQL, [*submitted, judgment.comparison_id, *values])
            judgment.pk = cursor.fetchone()[0]
        else:
            cursor.execute(_INSERT_JUDGMENT, values)
            judgment.pk = cursor.fetchone()[0]
            cursor.execute("UPDATE annotation_assignment SET status = %s, completed_at = %s WHERE id = %s", submitted)
            cursor.execute(
                "UPDATE annotation_comparison SET judgment_count = judgment_count + 1 WHERE id = %s",
                [judgment.comparison_id],
            )
    judgment._state.adding = False
    judgment._state.db = "default"


@transaction.atomic
def judgment_submit(
    *, assignment_id: int, annotator: Any, verdict: Verdict, source: str = JudgmentSource.UI, screen: bool = False
) -> tuple[Judgment, bool]:
    """Save the judgment (and edit) for an assignment. Returns (judgment, created).

    With ``screen=True`` the verdict's ``preferred`` and ``edit_base`` are in screen
    terms (left/right) and are turned into sample terms with the assignment's side.

    Idempotent: a retried or double-clicked submission returns the judgment already
    saved (the assignment row is locked, so two at once are serialised).
    """
    assignment, saved_judgment_id = locked_assignment(assignment_id, annotator)
    if saved_judgment_id is not None:
        return Judgment.objects.get(pk=saved_judgment_id), False
    if screen:
        verdict = verdict_on_screen(verdict, assignment.left)
    project = assignment.comparison.round.project
    if assignment.comparison.round.status == RoundStatus.CLOSED:
        raise AssignmentRefused("This round is closed; judgments are no longer taken.", code=Refusal.CLOSED)
    verdict = verdict_check(verdict, project)
    edit = _edit(verdict, assignment.comparison, project)
    now = timezone.now()
    slot_ensure(assignment, now)
    judgment = Judgment(
        comparison=assignment.comparison,
        annotator=annotator,
        assignment=assignment,
        preferred=verdict.preferred,
        strength=verdict.strength,
        safety=verdict.safety,
        left=assignment.left,
        time_spent_ms=verdict.time_spent_ms,
        rationale=verdict.rationale,
        source=source,
        created_at=now,
    )
    _judgment_insert(judgment, now)
    if edit is not None:
        Edit.objects.create(judgment=judgment, base_sample_id=edit[0], text=edit[1])
    assignment.status = AssignmentStatus.SUBMITTED
    assignment.completed_at = now
    return judgment, True


# --- Writing: labels from elsewhere ------------------------------------------------------


@dataclass(frozen=True)
class ImportedJudgment:
    """A label from another tool or vendor, checked by ``verdict_check(imported=True)``."""

    comparison_id: int
    annotator_id: int
    verdict: Verdict


_IMPORTED_COLUMNS = [c for c in _JUDGMENT_COLUMNS if c != "assignment_id"]  # no engine slot


def judgments_insert_imported(
    rows: Sequence[ImportedJudgment], *, now: datetime | None = None, counted: Collection[int] = ()
) -> None:
    """Write imported judgments and count each on its comparison (a judgment and a slot
    taken, as an annotator's would), in the caller's transaction. Bulk: COPY on PostgreSQL.

    The rows must be checked already and new: the database refuses a second judgment by
    the same annotator on a comparison. ``counted``: comparisons the caller has just
    written with these judgments already in their counts (left alone here).
    """
    if not rows:
        return
    # The comparisons first, in id order, then the judgments (whose triggers update the
    # tallies): the order an annotator's submit takes the same locks in, so an import into
    # pairs being judged at that moment waits instead of deadlocking.
    per_comparison: dict[int, int] = {}
    for r in sorted(rows, key=lambda r: r.comparison_id):
        if r.comparison_id not in counted:
            per_comparison[r.comparison_id] = per_comparison.get(r.comparison_id, 0) + 1
    bulk.add_to_counts(Comparison, per_comparison, ("judgment_count", "taken"))
    now = now or timezone.now()
    bulk.insert_rows(
        Judgment,
        _IMPORTED_COLUMNS,
        [
            (
                r.comparison_id,
                r.annotator_id,
                r.verdict.preferred,
                r.verdict.strength,
                r.verdict.safety,
                "",
                r.verdict.time_spent_ms,
                r.verdict.rationale,
                JudgmentSource.IMPORT,
                now,
            )
            for r in rows
        ],
    )
