from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from accounts.roles import Role
from accounts.services import user_create
from annotation.assignment import (
    MAX_LIVE_LEASES,
    AssignmentRefused,
    NoWork,
    assignment_next,
    assignment_skip,
    assignments_reclaim_expired,
)
from annotation.judging import Verdict, judgment_submit, sample_to_screen, screen_to_sample
from annotation.models import (
    Assignment,
    AssignmentStatus,
    Comparison,
    Edit,
    EditPolicy,
    Judgment,
    Prompt,
    RoundStatus,
    Sample,
)
from annotation.services import round_close
from core.text import messages_hash, text_hash

GOOD = Verdict(preferred="A", strength="better", safety="both_safe")


def fill(round_, n: int, *, required: int = 1, gold: int = 0) -> list[Comparison]:
    baseline, candidate = round_.baseline, round_.candidate
    made = []
    for i in range(n):
        messages = [{"role": "user", "content": f"Prompt {i}"}]
        prompt = Prompt.objects.create(project=round_.project, messages=messages, content_hash=messages_hash(messages))
        a = Sample.objects.create(
            prompt=prompt, model_version=baseline, text=f"old {i}", text_hash=text_hash(f"old {i}")
        )
        b = Sample.objects.create(
            prompt=prompt, model_version=candidate, text=f"new {i}", text_hash=text_hash(f"new {i}")
        )
        is_gold = i < gold
        made.append(
            Comparison.objects.create(
                round=round_,
                prompt=prompt,
                sample_a=a,
                sample_b=b,
                required_judgments=required,
                is_gold=is_gold,
                gold_preferred="B" if is_gold else "",
            )
        )
    return made


_expiring = threading.Lock()


def expire(*ids: int) -> None:
    """Make leases run out, as if their annotators walked away. One caller at a time: two
    threads updating the same leases in different row orders would deadlock each other
    (the test's own doing, not the engine's)."""
    now = timezone.now()
    with _expiring:
        Assignment.objects.filter(pk__in=sorted(ids)).update(
            leased_at=now - timedelta(minutes=30), lease_expires_at=now - timedelta(seconds=1)
        )


def claim(user, project, exclude=()):
    got = assignment_next(annotator=user, project=project, exclude=exclude)
    assert isinstance(got, Assignment), got
    return got


def judge(user, assignment, verdict=GOOD):
    return judgment_submit(assignment_id=assignment.pk, annotator=user, verdict=verdict)


def test_two_annotators_never_get_the_same_pair_when_one_judgment_is_needed(project, round_, alice, bob):
    fill(round_, 2)
    first, second = claim(alice, project), claim(bob, project)
    assert first.comparison_id != second.comparison_id
    carol = user_create(username="carol", password=None, roles=[Role.ANNOTATOR])
    assert isinstance(assignment_next(annotator=carol, project=project), NoWork)


def test_an_annotator_is_never_handed_the_same_pair_twice(project, round_, alice, bob):
    [comparison] = fill(round_, 1, required=2)
    judge(alice, claim(alice, project))
    assert isinstance(assignment_next(annotator=alice, project=project), NoWork)
    second = claim(bob, project)
    assert second.comparison_id == comparison.pk
    judge(bob, second)
    comparison.refresh_from_db()
    assert (comparison.judgment_count, comparison.taken) == (2, 2)


def test_pairs_already_started_are_finished_before_new_ones(project, round_, alice, bob):
    fill(round_, 30, required=2)
    started = claim(alice, project)
    judge(alice, started)
    assert claim(bob, project).comparison_id == started.comparison_id


def test_a_reload_gives_back_the_pair_held_and_a_prefetch_gives_a_second(project, round_, alice):
    fill(round_, 5)
    first = claim(alice, project)
    assert claim(alice, project).pk == first.pk
    prefetched = claim(alice, project, exclude=(first.pk,))
    assert prefetched.comparison_id != first.comparison_id
    assert MAX_LIVE_LEASES == 2
    refused = assignment_next(annotator=alice, project=project, exclude=(first.pk, prefetched.pk))
    assert isinstance(refused, NoWork) and "Finish or skip" in refused.reason


def test_an_expired_lease_is_reclaimed_and_handed_to_someone_else(project, round_, alice, bob):
    [comparison] = fill(round_, 1)
    lost = claim(alice, project)
    expire(lost.pk)
    rehanded = claim(bob, project)
    assert rehanded.comparison_id == comparison.pk
    lost.refresh_from_db()
    assert lost.status == AssignmentStatus.EXPIRED
    judge(bob, rehanded)
    with pytest.raises(AssignmentRefused, match="handed to someone else"):
        judge(alice, lost)
    assert comparison.judgments.count() == 1


def test_a_late_answer_is_kept_when_nobody_took_the_pair_meanwhile(project, round_, alice):
    [comparison] = fill(round_, 1)
    late = claim(alice, project)
    expire(late.pk)
    assert assignments_reclaim_expired(project=project) == 1
    judgment, created = judge(alice, late)
    assert created
    comparison.refresh_from_db()
    assert (comparison.judgment_count, comparison.taken) == (1, 1)


def test_a_skip_needs_a_reason_and_frees_the_pair_for_others(project, round_, alice, bob):
    [comparison] = fill(round_, 1)
    held = claim(alice, project)
    with pytest.raises(AssignmentRefused, match="why"):
        assignment_skip(assignment_id=held.pk, annotator=alice, reason="  ")
    assignment_skip(assignment_id=held.pk, annotator=alice, reason="I cannot read Hindi")
    assert claim(bob, project).comparison_id == comparison.pk
    assert isinstance(assignment_next(annotator=alice, project=project), NoWork)


def test_a_double_submit_saves_one_judgment(project, round_, alice):
    fill(round_, 1)
    held = claim(alice, project)
    first, created = judge(alice, held)
    again, created_again = judge(alice, held, Verdict(preferred="B", strength="slightly", safety="both_safe"))
    assert created and not created_again
    assert again.pk == first.pk and again.preferred == "A"
    assert Judgment.objects.count() == 1


def test_someone_elses_assignment_is_refused(project, round_, alice, bob):
    fill(round_, 1)
    held = claim(alice, project)
    with pytest.raises(AssignmentRefused, match="not yours"):
        judge(bob, held)


def test_a_submission_is_validated_against_the_project(project, round_, alice):
    project.allow_tie = False
    project.require_safety = True
    project.edit_policy = EditPolicy.REQUIRED_WHEN_BOTH_BAD
    project.save()
    fill(round_, 1)
    held = claim(alice, project)
    cases = [
        (Verdict(preferred="A", safety="both_safe"), "strength"),
        (Verdict(preferred="tie", safety="both_safe"), "preferred"),
        (Verdict(preferred="A", strength="better"), "safety"),
        (Verdict(preferred="both_bad", safety="both_unsafe"), "edit_text"),
        (Verdict(preferred="both_bad", safety="both_unsafe", edit_text="Better."), "edit_base"),
        (Verdict(preferred="cant_judge", strength="better"), "strength"),
    ]
    for verdict, field in cases:
        with pytest.raises(AssignmentRefused) as refused:
            judge(alice, held, verdict)
        assert field in refused.value.message_dict, (verdict, refused.value.message_dict)
    assert Judgment.objects.count() == 0


def test_a_teacher_critic_edit_is_saved_with_the_judgment_from_the_chosen_base(project, round_, alice):
    [comparison] = fill(round_, 1)
    held = claim(alice, project)
    verdict = Verdict(preferred="both_bad", safety="both_safe", edit_text="A good answer.\r\n", edit_base="B")
    judgment, _ = judge(alice, held, verdict)
    assert judgment.edit.text == "A good answer."
    assert judgment.edit.base_sample_id == comparison.sample_b_id
    assert judgment.strength == ""


def test_an_edit_identical_to_its_base_is_refused_when_required_and_dropped_when_optional(project, round_, alice, bob):
    [comparison] = fill(round_, 1, required=2)
    held = claim(alice, project)
    unchanged = Verdict(preferred="both_bad", safety="both_safe", edit_text=" old 0 ", edit_base="A")
    with pytest.raises(AssignmentRefused, match="same as the answer"):
        judge(alice, held, unchanged)
    project.edit_policy = EditPolicy.OPTIONAL
    project.save()
    judgment, _ = judge(alice, held, Verdict(preferred="A", strength="better", safety="both_safe", edit_text="old 0"))
    assert not Edit.objects.filter(judgment=judgment).exists()


def test_sides_are_randomised_and_recorded_and_judgments_stay_in_sample_terms(project, round_, alice):
    fill(round_, 1, required=1)
    lefts = Counter()
    for i in range(60):
        user = user_create(username=f"a{i}", password=None, roles=[Role.ANNOTATOR])
        Comparison.objects.update(taken=0, judgment_count=0)
        held = claim(user, project)
        lefts[held.left] += 1
        assignment_skip(assignment_id=held.pk, annotator=user, reason="test")
    assert lefts["A"] > 10 and lefts["B"] > 10
    assert screen_to_sample("left", "B") == "B" and screen_to_sample("right", "B") == "A"
    assert sample_to_screen("A", "B") == "right" and screen_to_sample("tie", "A") == "tie"


def test_gold_items_are_mixed_in_at_the_projects_rate(project, round_, alice, bob):
    project.gold_rate = 1.0
    project.save()
    gold, *_ = fill(round_, 3, gold=1)
    assert claim(alice, project).comparison_id == gold.pk
    assert claim(bob, project).comparison_id == gold.pk  # gold is judged by everyone


def test_nothing_is_handed_out_from_a_closed_round(project, round_, alice):
    fill(round_, 1)
    held = claim(alice, project)
    round_close(round_=round_)
    refused = assignment_next(annotator=alice, project=project)
    assert isinstance(refused, NoWork) and "No round" in refused.reason
    with pytest.raises(AssignmentRefused, match="closed"):
        judge(alice, held)


def test_the_no_work_message_says_why(project, round_, alice, bob):
    fill(round_, 1)
    held = claim(bob, project)
    busy = assignment_next(annotator=alice, project=project)
    assert isinstance(busy, NoWork) and "judged by others" in busy.reason and busy.retry_after_seconds
    judge(bob, held)
    done = assignment_next(annotator=alice, project=project)
    assert "all the judgments it needs" in done.reason


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_annotators_fill_every_pair_exactly_k_times(lee, versions):
    from annotation.services import project_create
    from models_service.rounds import round_create

    project = project_create(name="Concurrency", overlap=3, require_safety=False)
    round_ = round_create(project=project, baseline=versions[0], candidate=versions[1], status=RoundStatus.OPEN)
    fill(round_, 500, required=3)
    annotators = [user_create(username=f"ann{i}", password=None, roles=[Role.ANNOTATOR]) for i in range(20)]
    errors: list[BaseException] = []
    abandoned: list[int] = []
    start = threading.Barrier(len(annotators))

    def work(index: int, user) -> None:
        try:
            start.wait()
            done = 0
            while True:
                got = assignment_next(annotator=user, project=project)
                if isinstance(got, NoWork):
                    if got.retry_after_seconds is None:
                        return
                    # Others hold the last pairs; expire the abandoned leases and retry.
                    expire(*abandoned)
                    continue
                if index % 5 == 0 and done % 10 == 3 and got.pk not in abandoned:
                    # Every fifth annotator walks away from some pairs without a word.
                    abandoned.append(got.pk)
                    expire(got.pk)
                    done += 1
                    continue
                judgment_submit(assignment_id=got.pk, annotator=user, verdict=Verdict(preferred="B", strength="better"))
                done += 1
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(i, u)) for i, u in enumerate(annotators)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert not any(t.is_alive() for t in threads), "annotators still working after 240 s"
    assert not errors, errors
    per_comparison = Counter(Judgment.objects.values_list("comparison_id", flat=True))
    assert len(per_comparison) == 500
    assert set(per_comparison.values()) == {3}
    pairs = list(Judgment.objects.values_list("comparison_id", "annotator_id"))
    assert len(pairs) == len(set(pairs)) == 1500
    assert Comparison.objects.exclude(judgment_count=3).count() == 0
    assert Comparison.objects.exclude(taken=3).count() == 0
    assert abandoned, "the test walked away from no pair"
    expired = Assignment.objects.filter(pk__in=abandoned, status=AssignmentStatus.EXPIRED).count()
    assert expired == len(abandoned), "every abandoned lease was reclaimed and re-handed"
    assert connection.vendor == "postgresql"
