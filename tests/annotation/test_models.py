"""The database itself refuses bad states, whatever code path tries to write them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotation.models import (
    Assignment,
    Comparison,
    Judgment,
    JudgmentSource,
    PairingStrategy,
    Project,
    Prompt,
    Round,
    Sample,
)
from core.text import messages_hash, text_hash


def make_prompt(project, text="What is 2+2?"):
    messages = [{"role": "user", "content": text}]
    return Prompt.objects.create(project=project, messages=messages, content_hash=messages_hash(messages))


def make_sample(prompt, version, text):
    return Sample.objects.create(prompt=prompt, model_version=version, text=text, text_hash=text_hash(text))


@pytest.fixture
def comparison(round_, versions):
    prompt = make_prompt(round_.project)
    a = make_sample(prompt, versions[0], "4")
    b = make_sample(prompt, versions[1], "Four.")
    return Comparison.objects.create(round=round_, prompt=prompt, sample_a=a, sample_b=b)


def refused(**kwargs):
    return pytest.raises(IntegrityError)


def test_a_comparison_cannot_pair_an_answer_to_another_prompt(round_, versions):
    p1, p2 = make_prompt(round_.project, "one"), make_prompt(round_.project, "two")
    a = make_sample(p1, versions[0], "answer to one")
    b = make_sample(p2, versions[1], "answer to two")
    with pytest.raises(IntegrityError), transaction.atomic():
        Comparison.objects.create(round=round_, prompt=p1, sample_a=a, sample_b=b)


def test_a_comparison_cannot_show_the_same_sample_twice(round_, versions):
    prompt = make_prompt(round_.project)
    a = make_sample(prompt, versions[0], "4")
    with pytest.raises(IntegrityError), transaction.atomic():
        Comparison.objects.create(round=round_, prompt=prompt, sample_a=a, sample_b=a)


def test_the_same_answer_is_stored_once_per_prompt_and_model(round_, versions):
    prompt = make_prompt(round_.project)
    make_sample(prompt, versions[0], "4")
    with pytest.raises(IntegrityError), transaction.atomic():
        make_sample(prompt, versions[0], "4")


def test_a_prompt_is_stored_once_per_project(project):
    make_prompt(project)
    with pytest.raises(IntegrityError), transaction.atomic():
        make_prompt(project)


def test_an_annotator_judges_a_comparison_once(comparison, alice):
    Judgment.objects.create(comparison=comparison, annotator=alice, preferred="tie", source=JudgmentSource.IMPORT)
    with pytest.raises(IntegrityError), transaction.atomic():
        Judgment.objects.create(comparison=comparison, annotator=alice, preferred="A", source=JudgmentSource.IMPORT)


def test_a_preference_from_the_page_needs_a_strength_and_a_tie_has_none(comparison, alice, bob):
    now = timezone.now()
    assignment = Assignment.objects.create(
        comparison=comparison, annotator=alice, left="B", leased_at=now, lease_expires_at=now + timedelta(minutes=5)
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        Judgment.objects.create(comparison=comparison, annotator=alice, assignment=assignment, left="B", preferred="A")
    with pytest.raises(IntegrityError), transaction.atomic():
        Judgment.objects.create(
            comparison=comparison, annotator=alice, assignment=assignment, left="B", preferred="tie", strength="better"
        )
    Judgment.objects.create(
        comparison=comparison, annotator=alice, assignment=assignment, left="B", preferred="A", strength="slightly"
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        # a judgment made in the page always has its assignment
        Judgment.objects.create(comparison=comparison, annotator=bob, preferred="tie", source=JudgmentSource.UI)


def test_an_annotator_is_assigned_a_comparison_once(comparison, alice):
    now = timezone.now()
    lease = {"leased_at": now, "lease_expires_at": now + timedelta(minutes=5)}
    Assignment.objects.create(comparison=comparison, annotator=alice, left="A", **lease)
    with pytest.raises(IntegrityError), transaction.atomic():
        Assignment.objects.create(comparison=comparison, annotator=alice, left="B", **lease)


def test_a_skip_needs_a_reason(comparison, alice):
    now = timezone.now()
    with pytest.raises(IntegrityError), transaction.atomic():
        Assignment.objects.create(
            comparison=comparison,
            annotator=alice,
            left="A",
            status="skipped",
            leased_at=now,
            lease_expires_at=now + timedelta(minutes=5),
        )


def test_an_old_vs_new_round_needs_two_versions(project, versions):
    with pytest.raises(IntegrityError), transaction.atomic():
        Round.objects.create(project=project, number=9, baseline=versions[0], candidate=versions[0])
    Round.objects.create(
        project=project, number=9, baseline=versions[0], candidate=versions[0], pairing=PairingStrategy.SEEDS
    )


@pytest.mark.parametrize("field,value", [("overlap", 0), ("lease_seconds", 5), ("gold_rate", 1.5)])
def test_project_settings_out_of_range_are_refused(db, field, value):
    with pytest.raises(IntegrityError), transaction.atomic():
        Project.objects.create(name="x", slug="x", **{field: value})


def test_a_gold_item_carries_its_answer(comparison):
    with pytest.raises(IntegrityError), transaction.atomic():
        Comparison.objects.filter(pk=comparison.pk).update(is_gold=True)
