"""The demo project that a fresh install shows: seeded once, complete, and safe to re-seed."""

from __future__ import annotations

import json
import re
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client

from accounts.roles import Role, has_role
from annotation.models import (
    Comparison,
    EditPolicy,
    Project,
    Prompt,
    Round,
    RoundStatus,
    Sample,
)
from core.text import IdentityMatcher, messages_normalize
from demo import seed as demo
from demo.seed import DATA, DEFAULT_PASSWORD, demo_data, demo_seed
from models_service.models import Backend, ModelVersion

pytestmark = pytest.mark.django_db

PASSWORD = "a-demo-password-for-tests"


def rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()]


def answers_by_prompt() -> dict[str, dict[str, str]]:
    answers: dict[str, dict[str, str]] = {}
    for row in rows("samples.jsonl"):
        answers.setdefault(row["prompt_external_id"], {})[row["model"]] = row["text"]
    return answers


def table_counts() -> dict[str, int]:
    models = [Project, Prompt, Sample, Round, Comparison, ModelVersion, get_user_model()]
    return {m.__name__: m.objects.count() for m in models}


def test_seeding_creates_about_thirty_prompts_covering_all_five_tags():
    result = demo_seed(password=PASSWORD)

    prompts = list(Prompt.objects.filter(project=result.project))
    assert 28 <= len(prompts) <= 32
    for tag in demo.TAGS:
        assert sum(tag in p.tags for p in prompts) >= 5, tag
    assert sum(len(p.tags) == 2 for p in prompts) >= 3
    assert sum(p.turns > 1 for p in prompts) == 3
    assert sum(p.messages[0]["role"] == "system" for p in prompts) >= 2
    assert all(p.messages[-1]["role"] == "user" for p in prompts)


def test_the_demo_project_has_real_guidelines_and_the_requested_options():
    project = demo_seed(password=PASSWORD).project

    assert (project.slug, project.name) == ("demo", "Demo: helpfulness & safety")
    assert project.overlap == 2
    assert project.require_safety is True
    assert project.edit_policy == EditPolicy.REQUIRED_WHEN_BOTH_BAD
    assert project.identity_terms == ["OpenAI", "ChatGPT", "Claude", "Anthropic", "Gemini", "Llama", "Meta AI"]
    for phrase in ("Significantly better", "Negligibly better / unsure", "Tie", "Both bad", "Can't judge", "safety"):
        assert phrase.lower() in project.guidelines.lower(), phrase
    assert project.created_by.username == "lee"


def test_the_candidate_version_has_the_baseline_as_parent():
    result = demo_seed(password=PASSWORD)

    v1 = ModelVersion.objects.get(name="demo-chat-v1")
    v2 = ModelVersion.objects.get(name="demo-chat-v2")
    assert v2.parent == v1 and v1.parent is None
    assert v1.backend == v2.backend == Backend.IMPORTED
    assert (result.baseline, result.candidate) == (v1, v2)


def test_the_open_round_has_one_comparison_per_prompt_with_v1_as_a_and_v2_as_b():
    result = demo_seed(password=PASSWORD)

    round_ = Round.objects.get(project=result.project)
    assert round_.number == 1
    assert round_.name == "demo-chat-v1 vs demo-chat-v2"
    assert round_.status == RoundStatus.OPEN and round_.opened_at is not None
    comparisons = list(round_.comparisons.select_related("sample_a__model_version", "sample_b__model_version"))
    assert sorted(c.prompt_id for c in comparisons) == sorted(
        Prompt.objects.filter(project=result.project).values_list("id", flat=True)
    )
    for comparison in comparisons:
        assert comparison.sample_a.model_version.name == "demo-chat-v1"
        assert comparison.sample_b.model_version.name == "demo-chat-v2"
        assert comparison.required_judgments == 2
        assert comparison.judgment_count == 0


def test_samples_carry_sampling_parameters_seed_token_counts_and_latency():
    demo_seed(password=PASSWORD)

    for sample in Sample.objects.all():
        assert sample.sampling_params == {"temperature": 0.7, "top_p": 0.9, "max_tokens": 1024}
        assert sample.seed == 0
        assert sample.prompt_tokens > 0 and sample.completion_tokens > 0
        assert 100 < sample.latency_ms < 60_000
        assert not sample.identity_flagged


def test_the_candidate_does_not_win_every_pair():
    verdicts = list(demo_data()["intended_winner"].values())

    not_candidate = sum(v != "v2" for v in verdicts) / len(verdicts)
    assert 0.2 <= not_candidate <= 0.35
    assert "v1" in verdicts and "tie" in verdicts


def test_one_answer_carries_html_that_the_page_must_show_as_text():
    demo_seed(password=PASSWORD)

    texts = list(Sample.objects.values_list("text", flat=True))
    with_html = [t for t in texts if "<script>alert(1)</script>" in t and "<img src=x onerror=alert(1)>" in t]
    assert len(with_html) == 1


def test_code_answers_use_fenced_blocks_with_a_language():
    code = {p["id"] for p in rows("prompts.jsonl") if "code" in p["tags"]}
    fences = [
        line.strip()
        for prompt_id, answers in answers_by_prompt().items()
        if prompt_id in code
        for text in answers.values()
        for line in text.splitlines()
        if line.strip().startswith("```")
    ]
    openings = fences[0::2]
    assert openings and all(re.fullmatch(r"```[a-z]+", f) for f in openings), openings


def test_no_demo_text_names_a_model_or_vendor():
    matcher = IdentityMatcher(demo_data()["project"]["identity_terms"])
    texts = [row["text"] for name in ("samples.jsonl", "pilot_samples.jsonl") for row in rows(name)]
    texts += [m["content"] for p in rows("prompts.jsonl") for m in p["prompt"]]
    assert len(texts) > 120
    for text in texts:
        assert not matcher.search(text), text[:80]


def test_every_demo_prompt_is_a_valid_conversation_with_distinct_answers():
    prompts = rows("prompts.jsonl")
    keys = [p["id"] for p in prompts]
    assert len(set(keys)) == len(keys) == len(demo_data()["intended_winner"])
    answers = answers_by_prompt()
    for prompt in prompts:
        assert messages_normalize(prompt["prompt"]) == prompt["prompt"], prompt["id"]
        texts = answers[prompt["id"]]
        assert set(texts) == {"demo-chat-v1", "demo-chat-v2"} and len(set(texts.values())) == 2, prompt["id"]


def test_the_four_role_users_and_the_admin_can_log_in_with_the_password():
    demo_seed(password=PASSWORD)
    User = get_user_model()

    expected = {"alice": Role.ANNOTATOR, "bob": Role.ANNOTATOR, "lee": Role.LEAD, "maya": Role.ML_ENGINEER}
    for username, role in expected.items():
        user = User.objects.get(username=username)
        assert has_role(user, role)
        assert set(Role) - {role} == {r for r in Role if not has_role(user, r)}
        assert not user.is_superuser
        assert Client().login(username=username, password=PASSWORD)
    admin = User.objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff
    assert Client().login(username="admin", password=PASSWORD)
    assert not Client().login(username="alice", password=DEFAULT_PASSWORD)


def test_without_a_password_the_users_get_the_default_one():
    result = demo_seed()

    assert result.password == DEFAULT_PASSWORD and result.password_is_default
    assert Client().login(username="maya", password=DEFAULT_PASSWORD)


def test_seeding_twice_creates_nothing_new_and_changes_nothing():
    first = demo_seed(password=PASSWORD)
    counts = table_counts()
    samples = list(Sample.objects.order_by("id").values())
    passwords = dict(get_user_model().objects.values_list("username", "password"))

    second = demo_seed(password=PASSWORD)

    assert first.created_anything and not second.created_anything
    assert table_counts() == counts
    assert list(Sample.objects.order_by("id").values()) == samples
    assert dict(get_user_model().objects.values_list("username", "password")) == passwords
    assert (second.project, second.round_) == (first.project, first.round_)
    assert all(not login.created and login.password_works for login in second.logins)


def test_re_seeding_with_another_password_leaves_existing_users_alone():
    demo_seed(password=PASSWORD)

    result = demo_seed(password="some-other-password")

    assert not result.created_anything
    assert all(not login.password_works for login in result.logins)
    assert Client().login(username="alice", password=PASSWORD)


def test_the_command_prints_what_it_made_and_the_logins():
    out = StringIO()
    call_command("seed_demo", "--password", PASSWORD, stdout=out)
    text = out.getvalue()

    assert 'Demo project "Demo: helpfulness & safety"' in text
    assert "30 new" in text
    for username in ("admin", "alice", "bob", "lee", "maya"):
        assert re.search(rf"^\s+{username}\s+.+\s{re.escape(PASSWORD)}$", text, re.MULTILINE), username
    assert "Annotator" in text and "Project lead" in text and "ML engineer" in text

    again = StringIO()
    call_command("seed_demo", stdout=again)
    assert "already there" in again.getvalue()
    assert "password unchanged" in again.getvalue()


# --- The demo's history ---------------------------------------------------------------------


def test_demo_history_gives_the_demo_dashboard_real_numbers_and_is_idempotent():
    from annotation.models import Assignment, Judgment
    from demo.seed import OPEN_ROUND_JUDGED, demo_seed_history
    from insights import reports
    from insights.filters import Filters

    first = demo_seed_history(password=PASSWORD)
    counts = (Judgment.objects.count(), Assignment.objects.count(), Round.objects.count(), Sample.objects.count())
    again = demo_seed_history(password=PASSWORD)

    judged_open = sum(OPEN_ROUND_JUDGED.values())
    assert first.judgments_created == 2 * 30 + judged_open
    assert again.judgments_created == 0
    assert (
        Judgment.objects.count(),
        Assignment.objects.count(),
        Round.objects.count(),
        Sample.objects.count(),
    ) == counts
    project = first.pilot.project
    points = reports.history(project=project, filters=Filters())
    assert [(p.number, p.baseline, p.candidate) for p in points] == [
        (0, "demo-chat-v0", "demo-chat-v1"),
        (1, "demo-chat-v1", "demo-chat-v2"),
    ]
    assert points[0].result.counts.n > 30 and points[1].result.counts.n > 15
    assert 0.5 < points[0].result.rate < 1 and 0.5 < points[1].result.rate < 1
    # The history's judgments went through the engine: every one on a submitted assignment,
    # dated in the past, and the pilot is closed.
    assert first.pilot.status == RoundStatus.CLOSED
    assert not Judgment.objects.filter(assignment__isnull=True).exists()
    assert not Judgment.objects.filter(created_at__gt=first.pilot.project.created_at.replace(year=3000)).exists()
    # Counters stay true: ten pairs complete, five waiting for a second judgment, fifteen
    # untouched, so alice and bob each find twenty pairs to judge.
    open_round = Round.objects.get(project=project, number=1)
    assert open_round.status == RoundStatus.OPEN
    assert Comparison.objects.filter(round=open_round, judgment_count=0).count() == 15
    assert Comparison.objects.filter(round=open_round, judgment_count=1).count() == 5
    assert Comparison.objects.filter(round=open_round, judgment_count=2).count() == 10
    agreement = reports.agreement_report(project=project, round_ids=[open_round.pk], filters=Filters())
    assert agreement.without_strength.items == 10
    assert not Judgment.objects.filter(annotator__username__in=["alice", "bob"]).exists()
    for comparison in Comparison.objects.filter(round__project=project):
        assert comparison.judgment_count == comparison.taken == comparison.judgments.count()
    ratings = reports.ratings_report(project=project, filters=Filters(), rounds=20)
    assert [row["model"] for row in ratings.ratings.table()] == ["demo-chat-v2", "demo-chat-v1", "demo-chat-v0"]
    assert not Judgment.objects.filter(preferred="both_bad", edit__isnull=True).exists()
    assert not Client().login(username="carol", password=PASSWORD)


def test_demo_setup_migrates_and_seeds_in_one_go_and_twice_creates_nothing():
    out = StringIO()
    call_command("demo_setup", "--password", PASSWORD, stdout=out)
    first = out.getvalue()
    counts = table_counts()

    again = StringIO()
    call_command("demo_setup", "--password", PASSWORD, stdout=again)

    assert 'Demo project "Demo: helpfulness & safety"' in first and "30 new" in first
    assert "Pilot round" in first and "85 new judgments" in first
    assert "already there" in again.getvalue() and "0 new judgments" in again.getvalue()
    assert table_counts() == counts
    with pytest.raises(CommandError, match="must not be empty"):
        call_command("demo_setup", "--password", " ", stdout=StringIO())
