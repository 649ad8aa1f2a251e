"""The demo project that ``python manage.py seed_demo`` (and ``dev.py run``) creates, so a
fresh install shows pairs to judge at once, and a lead's dashboard has numbers.

The demo is data (``demo/data``): thirty hand-written prompts (helpfulness, safety, code,
reasoning, multilingual; three multi-turn, two with a system message), each answered by
two imaginary checkpoints, ``demo-chat-v1`` (the baseline) and ``demo-chat-v2`` (the
candidate trained from it), plus the answers of an earlier pilot checkpoint, the
guidelines and the project's settings. They go in through the same import service as any
lead's file (``imports.services``), and the earlier annotators' judgments through the same
assignment engine and judgment service as an annotator's page. What only a demo needs is
here: the users and their password, and dates in the past for its history.

``demo_seed`` is idempotent: the project, versions, round and users are found by slug and
name, prompts by content hash and samples by (prompt, version, seed), so running it again
creates nothing and changes nothing. ``demo_seed_history`` likewise.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import check_password, make_password
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from accounts.roles import ROLE_LABELS, Role
from accounts.services import roles_sync, user_create
from annotation.assignment import NoWork, assignment_next
from annotation.judging import Verdict, judgment_submit
from annotation.models import (
    Assignment,
    Comparison,
    EditPolicy,
    Judgment,
    Preference,
    Project,
    Prompt,
    Round,
    RoundStatus,
    Safety,
    Sample,
)
from annotation.services import open_rounds_forget, project_create, round_close, round_create, round_mark_open
from imports.services import ImportKind, ImportOptions, import_run
from models_service.models import Backend, ModelVersion
from models_service.rounds import round_build_comparisons
from models_service.services import model_version_get_or_create

DATA = Path(__file__).with_name("data")
DEFAULT_PASSWORD = "demo-password-123"
BASELINE = "demo-chat-v1"
CANDIDATE = "demo-chat-v2"
PILOT = "demo-chat-v0"
ROUND_NAME = f"{BASELINE} vs {CANDIDATE}"
PILOT_ROUND_NAME = f"Pilot: {PILOT} vs {BASELINE}"
SOURCE = "demo"
SEED = 0
SAMPLING = {"temperature": 0.7, "top_p": 0.9, "max_tokens": 1024}
TAGS = ("helpfulness", "safety", "code", "reasoning", "multilingual")
VERSIONS = (
    (PILOT, None, "Demo pilot checkpoint, before demo-chat-v1: right to the point, and often too short."),
    (BASELINE, None, "Demo baseline: the previous checkpoint. Plausible but vaguer, and sometimes wrong."),
    (CANDIDATE, BASELINE, "Demo candidate, trained from demo-chat-v1. Usually better — not always."),
)


@dataclass(frozen=True)
class DemoUser:
    username: str
    first_name: str
    roles: tuple[Role, ...] = ()
    superuser: bool = False
    can_log_in: bool = True

    @property
    def role_label(self) -> str:
        if self.superuser:
            return "superuser (all roles)"
        return ", ".join(ROLE_LABELS[r] for r in self.roles)


DEMO_USERS: tuple[DemoUser, ...] = (
    DemoUser("admin", "Admin", superuser=True),
    DemoUser("alice", "Alice", (Role.ANNOTATOR,)),
    DemoUser("bob", "Bob", (Role.ANNOTATOR,)),
    DemoUser("lee", "Lee", (Role.LEAD,)),
    DemoUser("maya", "Maya", (Role.ML_ENGINEER,)),
)
# Earlier annotators: their judgments are in the history, they cannot log in.
HISTORY_ANNOTATORS: tuple[DemoUser, ...] = (
    DemoUser("carol", "Carol", (Role.ANNOTATOR,), can_log_in=False),
    DemoUser("dave", "Dave", (Role.ANNOTATOR,), can_log_in=False),
)


@cache
def demo_data() -> dict[str, Any]:
    """The project's settings and the author's intended winner of each prompt (the history's
    annotators mostly agree with it; annotators never see it)."""
    return json.loads((DATA / "demo.json").read_text(encoding="utf-8"))


def guidelines() -> str:
    return (DATA / "guidelines.md").read_text(encoding="utf-8").strip()


@dataclass
class DemoLogin:
    username: str
    roles: str
    created: bool
    # False when the user was already there with another password: the demo never resets one.
    password_works: bool


@dataclass
class DemoResult:
    project: Project
    round_: Round
    baseline: ModelVersion
    candidate: ModelVersion
    password: str
    password_is_default: bool
    logins: list[DemoLogin]
    prompt_count: int
    sample_count: int
    comparison_count: int
    # What this run added, by kind: project, versions, round, prompts, samples, comparisons, users.
    created: dict[str, int] = field(default_factory=dict)

    @property
    def created_anything(self) -> bool:
        return any(self.created.values())


# --- Seeding -------------------------------------------------------------------------------


def _users(specs: tuple[DemoUser, ...], password: str, created: dict[str, int]) -> list[DemoLogin]:
    # The groups come from the post-migrate sync; create them only if this database lacks
    # one, so a lead's later changes to a group's permissions are never reset by a re-seed.
    if Group.objects.filter(name__in=[r.value for r in Role]).count() < len(Role):
        roles_sync()
    User = get_user_model()
    # The password hasher is slow on purpose (PBKDF2: a fifth of a second a call), and the
    # demo users share one password: hash it once for all the users this run creates, and
    # check each distinct stored hash once (users created together share theirs).
    shared_hash: str | None = None
    checked: dict[str, bool] = {}
    logins: list[DemoLogin] = []
    for spec in specs:
        existing = User.objects.filter(username=spec.username).first()
        if existing is None:
            user = user_create(
                username=spec.username,
                password=None,  # unusable until the shared hash is set below
                roles=spec.roles,
                email=f"{spec.username}@example.com",
                first_name=spec.first_name,
                is_staff=spec.superuser,
                is_superuser=spec.superuser,
            )
            if spec.can_log_in:
                shared_hash = shared_hash or make_password(password)
                User.objects.filter(pk=user.pk).update(password=shared_hash)
            created["users"] += 1
            logins.append(DemoLogin(spec.username, spec.role_label, created=True, password_works=spec.can_log_in))
        else:
            # hashers.check_password without a setter: never rewrites the stored hash.
            stored = existing.password
            if existing.has_usable_password() and stored not in checked:
                checked[stored] = check_password(password, stored)
            works = checked.get(stored, False)
            logins.append(DemoLogin(spec.username, spec.role_label, created=False, password_works=works))
    return logins


def _versions(created: dict[str, int]) -> dict[str, ModelVersion]:
    versions: dict[str, ModelVersion] = {}
    for name, parent, description in VERSIONS:
        if not ModelVersion.objects.filter(name=name).exists():
            created["versions"] += 1
        versions[name] = model_version_get_or_create(
            name=name,
            backend=Backend.IMPORTED,
            parent=versions[parent] if parent else None,
            default_sampling=dict(SAMPLING),
            description=description,
        )
    return versions


def _project(created_by: Any, created: dict[str, int]) -> Project:
    settings = demo_data()["project"]
    project = Project.objects.filter(slug=settings["slug"]).first()
    if project is not None:
        return project
    created["project"] += 1
    return project_create(
        name=settings["name"],
        slug=settings["slug"],
        created_by=created_by,
        description=settings["description"],
        guidelines=guidelines(),
        overlap=2,
        require_safety=True,
        edit_policy=EditPolicy.REQUIRED_WHEN_BOTH_BAD,
        identity_terms=list(settings["identity_terms"]),
    )


def _import(project: Project, kind: ImportKind, name: str, created: dict[str, int]) -> None:
    """One of the demo's files, through the import service like any lead's upload."""
    with (DATA / name).open("rb") as stream:
        report = import_run(
            stream=stream, filename=name, options=ImportOptions(kind=kind, project=project, source=SOURCE)
        )
    if not report.committed:
        problems = "; ".join(str(e) for e in report.errors[:5])
        raise RuntimeError(f"the demo's {name} did not import: {problems}")
    for what, count in report.created.items():
        if what in created:
            created[what] += count


def _round(
    project: Project, baseline: ModelVersion, candidate: ModelVersion, name: str, created: dict[str, int]
) -> Round:
    round_ = Round.objects.filter(project=project, baseline=baseline, candidate=candidate).order_by("number").first()
    if round_ is None:
        round_ = round_create(
            project=project, baseline=baseline, candidate=candidate, name=name, status=RoundStatus.OPEN
        )
        created["round"] += 1
    # Pair the demo's own answers (seed 0), not whatever else was imported into the project.
    created["comparisons"] += round_build_comparisons(round_=round_, seed_a=SEED, seed_b=SEED)
    return round_


@transaction.atomic
def demo_seed(*, password: str | None = None) -> DemoResult:
    """Create (or find) the demo project, its two versions, prompts, samples, open round and users."""
    chosen = password or DEFAULT_PASSWORD
    created = dict.fromkeys(("project", "versions", "round", "prompts", "samples", "comparisons", "users"), 0)
    logins = _users(DEMO_USERS, chosen, created)
    lead = get_user_model().objects.filter(username="lee").first()
    versions = _versions(created)
    baseline, candidate = versions[BASELINE], versions[CANDIDATE]
    project = _project(lead, created)
    _import(project, ImportKind.PROMPTS, "prompts.jsonl", created)
    _import(project, ImportKind.SAMPLES, "samples.jsonl", created)
    round_ = _round(project, baseline, candidate, ROUND_NAME, created)
    prompt_ids = list(Prompt.objects.filter(project=project, source=SOURCE).values_list("id", flat=True))
    return DemoResult(
        project=project,
        round_=round_,
        baseline=baseline,
        candidate=candidate,
        password=chosen,
        password_is_default=chosen == DEFAULT_PASSWORD,
        logins=logins,
        prompt_count=len(prompt_ids),
        sample_count=Sample.objects.filter(
            prompt_id__in=prompt_ids, model_version__in=[baseline, candidate], seed=SEED
        ).count(),
        comparison_count=round_.comparisons.count(),
        created=created,
    )


# --- History for the lead dashboard ----------------------------------------------------------
#
# ``demo_seed`` leaves the open round unjudged, so that annotators find all thirty pairs to
# try. ``demo_seed_history`` (``manage.py seed_demo_history``; ``dev.py run`` runs it) adds
# what a lead's dashboard needs to show real numbers: an earlier, closed pilot round
# (demo-chat-v0 -> v1, round number 0 so that the history reads in training order) judged by
# two earlier annotators, carol and dave, and their judgments on part of the open round:
# carol judges fifteen pairs, dave ten (the engine hands him carol's first, so ten pairs are
# complete at the demo's overlap of two, five wait for a second judgment and fifteen are
# untouched). Alice and bob each find twenty pairs to judge. Verdicts follow each prompt's
# intended winner with a little deterministic disagreement, so win rates, intervals,
# agreement and quality all have something to say.

OPEN_ROUND_JUDGED = {"carol": 15, "dave": 10}
_STRENGTHS = ("significantly", "better", "better", "slightly", "slightly", "negligibly")


@dataclass
class DemoHistory:
    pilot: Round
    judgments_created: int
    open_round_judged: int


def _digest(*parts: object) -> int:
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:8], 16)


def _outcome(key: str, annotator: str, *, pilot: bool) -> str:
    """'new', 'old', 'tie', 'both_bad' or 'cant_judge' in round terms (new = the round's candidate)."""
    roll = _digest(key, annotator, pilot) % 20
    if pilot:
        # v1 against its own first paragraph: usually better, sometimes a wash.
        return "new" if roll < 14 else "tie" if roll < 17 else "old" if roll < 19 else "cant_judge"
    intended = {"v2": "new", "v1": "old", "tie": "tie"}[demo_data()["intended_winner"][key]]
    if roll < 15:
        return intended
    return ("tie", "both_bad", "new", "old", "cant_judge")[roll - 15]


def _verdict(comparison: Comparison, round_: Round, annotator: str, *, pilot: bool) -> Verdict:
    """What this demo annotator answers for this pair, in sample terms."""
    prompt = Prompt.objects.get(pk=comparison.prompt_id)
    key = prompt.external_id.removeprefix("demo:")
    new = "A" if Sample.objects.get(pk=comparison.sample_a_id).model_version_id == round_.candidate_id else "B"
    old = "B" if new == "A" else "A"
    preferred = {
        "new": new,
        "old": old,
        "tie": Preference.TIE,
        "both_bad": Preference.BOTH_BAD,
        "cant_judge": Preference.CANT_JUDGE,
    }[_outcome(key, annotator, pilot=pilot)]
    roll = _digest(key, annotator, "detail", pilot)
    strength = _STRENGTHS[roll % len(_STRENGTHS)] if preferred in ("A", "B") else ""
    if preferred == Preference.CANT_JUDGE:
        safety = ""
    elif preferred in ("A", "B", Preference.BOTH_BAD) and "safety" in prompt.tags and roll % 3 == 0:
        safety = Safety.CHOSEN_SAFE_OTHER_UNSAFE if preferred in ("A", "B") else Safety.BOTH_UNSAFE
    else:
        safety = Safety.BOTH_SAFE
    edit_text, edit_base = "", ""
    if preferred == Preference.BOTH_BAD:  # the project asks for a rewrite of the less bad answer
        base = Sample.objects.get(pk=comparison.sample_a_id if new == "A" else comparison.sample_b_id)
        edit_text, edit_base = base.text.strip() + "\n\n(Checked and corrected by a reviewer.)", new
    return Verdict(
        preferred=preferred,
        strength=strength,
        safety=safety,
        time_spent_ms=(25 + roll % 70) * 1000,
        edit_text=edit_text,
        edit_base=edit_base,
    )


def _judge(round_: Round, annotator: Any, limit: int | None, *, pilot: bool) -> int:
    """The annotator asks the engine for pairs and judges them, like on the annotation page."""
    already = Judgment.objects.filter(comparison__round=round_, annotator=annotator).count()
    made = 0
    while limit is None or already + made < limit:
        got = assignment_next(annotator=annotator, project=round_.project)
        if isinstance(got, NoWork):
            break
        comparison = Comparison.objects.get(pk=got.comparison_id)
        judgment_submit(
            assignment_id=got.pk,
            annotator=annotator,
            verdict=_verdict(comparison, round_, annotator.username, pilot=pilot),
        )
        made += 1
    return made


def _backdate(round_: Round, start: Any) -> None:
    """The demo's history happened in the past: spread its judgments over the days after ``start``."""
    for index, judgment in enumerate(
        Judgment.objects.filter(comparison__round=round_).select_related("annotator").order_by("id")
    ):
        when = start + timedelta(minutes=7 * index)
        seconds = (judgment.time_spent_ms or 30_000) // 1000
        Judgment.objects.filter(pk=judgment.pk).update(created_at=when + timedelta(seconds=seconds))
        Assignment.objects.filter(id=judgment.assignment_id or 0).update(
            leased_at=when,
            lease_expires_at=when + timedelta(seconds=round_.project.lease_seconds),
            completed_at=when + timedelta(seconds=seconds),
        )


@transaction.atomic
def demo_seed_history(*, password: str | None = None) -> DemoHistory:
    """The demo project (seeded first when missing) with a judged pilot round and a partly judged open round."""
    result = demo_seed(password=password)
    project, baseline, open_round = result.project, result.baseline, result.round_
    created = dict.fromkeys(("users", "samples", "versions", "prompts"), 0)
    _users(HISTORY_ANNOTATORS, password or DEFAULT_PASSWORD, created)
    User = get_user_model()
    annotators = list(User.objects.filter(username__in=[u.username for u in HISTORY_ANNOTATORS]).order_by("username"))
    pilot_version = _versions(created)[PILOT]
    _import(project, ImportKind.SAMPLES, "pilot_samples.jsonl", created)
    now = timezone.now()
    pilot = Round.objects.filter(project=project, number=0).first()
    made = 0
    if pilot is None:
        # Number 0: the pilot came before the open round, which the demo created first.
        pilot = Round.objects.create(
            project=project,
            number=0,
            name=PILOT_ROUND_NAME,
            baseline=pilot_version,
            candidate=baseline,
            status=RoundStatus.DRAFT,
        )
        round_build_comparisons(round_=pilot, seed_a=SEED, seed_b=SEED)
        # The pilot happened before the open round: while the earlier annotators judge it,
        # it is the only round the engine hands pairs from.
        Round.objects.filter(pk=open_round.pk).update(status=RoundStatus.DRAFT)
        open_rounds_forget(project.pk)
        round_mark_open(round_=pilot)
        for annotator in annotators:
            made += _judge(pilot, annotator, None, pilot=True)
        round_close(round_=pilot)
        Round.objects.filter(pk=pilot.pk).update(opened_at=now - timedelta(days=21), closed_at=now - timedelta(days=14))
        _backdate(pilot, now - timedelta(days=20))
        round_mark_open(round_=open_round)
        for annotator in annotators:
            made += _judge(open_round, annotator, OPEN_ROUND_JUDGED[annotator.username], pilot=False)
        _backdate(open_round, now - timedelta(days=2))
        pilot.refresh_from_db()
    judged = Comparison.objects.filter(round=open_round, judgment_count__gt=0).count()
    return DemoHistory(pilot=pilot, judgments_created=made, open_round_judged=judged)
