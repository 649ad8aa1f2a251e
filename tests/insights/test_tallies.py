"""The tallies the database keeps for the dashboards: right after every kind of write, the
same numbers as a scan of the judgments, and per project, so that one project's
judgments never make another's reports stale."""

from __future__ import annotations

import io
import json
import random

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction

from accounts.roles import Role
from accounts.services import user_create
from annotation.assignment import assignment_next
from annotation.judging import Verdict, judgment_submit
from annotation.models import Comparison, Edit, Judgment, PairingStrategy, Project, Prompt, Round, RoundStatus, Sample
from annotation.services import project_create
from imports.services import ImportKind, ImportOptions, import_run
from insights import cache as dashboard_cache
from insights import lookups, reports, sql
from insights.filters import Filters
from insights.services import tallies_differences, tallies_rebuild
from models_service.rounds import round_create
from models_service.services import model_version_get_or_create
from tests.factories import BAD, CANT, NEW, OLD, TIE, Builder

pytestmark = pytest.mark.django_db(transaction=True)


def assert_tallies_right() -> None:
    assert tallies_differences() == dict.fromkeys(
        ("insights_comparisontally", "insights_verdicttally", "insights_projectactivity"), 0
    )


def raters(n: int, prefix: str = "rater") -> list:
    return [user_create(username=f"{prefix}{i}", password=None, roles=[Role.ANNOTATOR]) for i in range(n)]


def fill(round_, people, comparisons: int, seed: int = 1) -> Builder:
    """Comparisons judged by a random subset of ``people`` with every kind of verdict."""
    rng = random.Random(seed)
    build = Builder(round_)
    build.count = 1000 * round_.number
    for _ in range(comparisons):
        comparison = build.comparison(
            tags=rng.choice([("code",), ("math", "code"), ("chat",)]), turns=rng.choice([1, 2, 3])
        )
        for person in rng.sample(people, rng.randint(1, len(people))):
            verdict = rng.choice([NEW, NEW, OLD, TIE, BAD, CANT])
            strength = rng.choice(["significantly", "better", "slightly", "negligibly", ""])
            build.judge(
                comparison,
                person,
                verdict,
                strength=strength,
                safety=rng.choice(["", "both_safe", "chosen_safe"]),
                edit=verdict in (NEW, OLD) and rng.random() < 0.2,
            )
    return build


def test_tallies_follow_every_way_a_judgment_is_written_changed_or_deleted(project, round_, lee):
    people = raters(4)
    fill(round_, people, 12)
    assert_tallies_right()  # direct inserts (and edits)

    # The annotators' engine and judgment service.
    round_.project.overlap = 5
    round_.project.save()
    Comparison.objects.filter(round=round_).update(required_judgments=5)
    for person in raters(2, prefix="engine"):
        for _ in range(3):
            got = assignment_next(annotator=person, project=round_.project)
            judgment_submit(assignment_id=got.pk, annotator=person, verdict=Verdict(preferred="tie"))
    assert_tallies_right()

    # An import with labels (COPY on PostgreSQL: one statement for many rows).
    lines = [
        json.dumps({"prompt": f"Imported {i}?", "response_a": f"a{i}", "response_b": f"b{i}", "label": 1 + i % 2})
        for i in range(30)
    ]
    report = import_run(
        stream=io.BytesIO("\n".join(lines).encode()),
        filename="pairs.jsonl",
        options=ImportOptions(kind=ImportKind.PAIRS, project=project, source="vendor", batch_size=7),
    )
    assert report.committed and report.created["judgments"] == 30
    assert_tallies_right()
    imported = Comparison.objects.filter(round__pairing="imported")
    assert sorted({(c.judgment_count, c.taken) for c in imported}) == [(1, 1)]  # written counted, not updated

    # Changed by hand (the admin), one and many at a time.
    judgment = Judgment.objects.filter(preferred="tie").first()
    judgment.preferred, judgment.strength = "A", "better"
    judgment.save()
    Judgment.objects.filter(preferred="cant_judge").update(preferred="both_bad")
    Edit.objects.filter(pk=Edit.objects.first().pk).update(text="changed again")
    assert_tallies_right()
    # A prompt's tags changed (an import that finds the prompt again adds its tags), or its turns.
    Prompt.objects.filter(comparisons__round=round_).update(tags=["retagged", "code"])
    assert_tallies_right()
    Prompt.objects.filter(comparisons__round=round_, turns=1).update(turns=4)
    assert_tallies_right()

    # Deleted: a judgment, an edit, a comparison with its judgments, a round, a project.
    Judgment.objects.filter(pk=Judgment.objects.order_by("-id").first().pk).delete()
    Edit.objects.first().delete()
    Comparison.objects.filter(round=round_).first().delete()
    assert_tallies_right()
    Round.objects.get(project=project, pairing="imported").delete()
    assert_tallies_right()
    Edit.objects.all().delete()  # an edit protects the answer it started from
    Project.objects.get(pk=project.pk).delete()
    assert_tallies_right()
    with connection.cursor() as cursor:
        for table in ("insights_comparisontally", "insights_verdicttally", "insights_projectactivity"):
            cursor.execute(f"SELECT COUNT(*) FROM {table}")
            assert cursor.fetchone()[0] == 0, table  # the deleted project's rows went with it


def test_the_tallied_and_the_scanned_queries_give_the_same_rows(project, round_, lee):
    people = raters(5)
    fill(round_, people, 25, seed=7)
    v3 = model_version_get_or_create(name="chat-v3")
    second = round_create(project=project, baseline=round_.candidate, candidate=v3, status=RoundStatus.OPEN)
    fill(second, people, 15, seed=8)
    # A round of one version against itself (seeds or temperatures): no win rate of its own.
    same_version = round_create(
        project=project, baseline=v3, candidate=v3, pairing=PairingStrategy.SEEDS, status=RoundStatus.OPEN
    )
    fill(same_version, people, 10, seed=9)
    both = [round_.pk, second.pk, same_version.pk]
    assert sql._pattern_rows_tallied(project_id=project.pk, round_ids=[same_version.pk], dimensions=True) == []
    assert (
        sql._pattern_rows_scanned(
            project_id=project.pk, round_ids=[same_version.pk], filters=Filters(), dimensions=True
        )
        == []
    )
    assert sql._cube_rows_tallied(project_id=project.pk, round_ids=[same_version.pk]) == []
    assert sql._cube_rows_scanned(project_id=project.pk, round_ids=[same_version.pk], filters=Filters()) == []

    def same(tallied, scanned):
        assert len(tallied) > 3  # something to compare
        assert sorted(map(tuple, tallied)) == sorted(map(tuple, scanned))

    for round_ids in (None, both, [round_.pk]):
        same(
            sql._pattern_rows_tallied(project_id=project.pk, round_ids=round_ids, dimensions=True),
            sql._pattern_rows_scanned(project_id=project.pk, round_ids=round_ids, filters=Filters(), dimensions=True),
        )
        same(
            sql._agreement_patterns_tallied(project_id=project.pk, round_ids=round_ids),
            sql._agreement_patterns_scanned(project_id=project.pk, round_ids=round_ids, filters=Filters()),
        )
    same(
        sql._cube_rows_tallied(project_id=project.pk, round_ids=both),
        sql._cube_rows_scanned(project_id=project.pk, round_ids=both, filters=Filters()),
    )
    same(
        sql._battle_rows_tallied(project_id=project.pk),
        sql._battle_rows_scanned(project_id=project.pk, filters=Filters()),
    )


def test_a_judgment_in_another_project_leaves_this_projects_reports_cached(project, round_, lee, alice, bob):
    build = Builder(round_)
    build.judge(build.comparison(), alice, NEW)
    first = reports.round_report(round_=round_, filters=Filters())
    fingerprint = dashboard_cache.project_fingerprint(project.pk)

    other = project_create(name="Another team", created_by=lee)
    v3 = model_version_get_or_create(name="chat-v3")
    elsewhere = Builder(round_create(project=other, baseline=round_.baseline, candidate=v3, status=RoundStatus.OPEN))
    elsewhere.count = 500
    elsewhere.judge(elsewhere.comparison(), bob, OLD)

    assert dashboard_cache.project_fingerprint(project.pk) == fingerprint
    computed = []
    original = dashboard_cache.RECIPES["round"]
    dashboard_cache.RECIPES["round"] = lambda **kwargs: computed.append(kwargs) or original(**kwargs)
    try:
        again = reports.round_report(round_=round_, filters=Filters())
        assert computed == []  # served from the cache: nothing here changed
        build.judge(build.comparison(), bob, OLD)  # ...until this project gets a judgment
        fresh = reports.round_report(round_=round_, filters=Filters())
    finally:
        dashboard_cache.RECIPES["round"] = original
    assert again.overall.counts == first.overall.counts
    assert len(computed) == 1 and fresh.overall.counts.as_tuple() == (1, 1, 0, 0, 0)


def test_the_tallies_command_checks_and_rebuilds_what_bypassed_the_triggers(project, round_):
    fill(round_, raters(3), 8)
    with connection.cursor() as cursor:  # what a TRUNCATE or a partial restore leaves behind
        cursor.execute(
            "DELETE FROM insights_comparisontally WHERE comparison_id IN (SELECT MIN(id) FROM annotation_comparison)"
        )
        cursor.execute("UPDATE insights_verdicttally SET n = n + 7")
    assert tallies_differences()["insights_comparisontally"] == 1
    out = io.StringIO()
    with pytest.raises(CommandError, match="tallies --rebuild"):
        call_command("tallies", stdout=out)
    assert "insights_verdicttally" in out.getvalue()

    call_command("tallies", "--rebuild", stdout=io.StringIO())

    assert_tallies_right()
    call_command("tallies", stdout=out)
    assert "The tallies match the judgments." in out.getvalue()


def test_rebuilding_counts_the_same_as_the_triggers_did(project, round_):
    fill(round_, raters(4), 10, seed=3)
    report = reports.round_report(round_=round_, filters=Filters(annotator_id=None))
    tallies_rebuild()
    assert_tallies_right()
    assert reports.round_report(round_=round_, filters=Filters()).overall.counts == report.overall.counts


def test_a_rebuild_moves_every_fingerprint_forward_so_no_old_report_passes_for_fresh(project, round_):
    fill(round_, raters(3), 6, seed=4)
    before = dashboard_cache.project_fingerprint(project.pk)
    # A recount gives judgments + edits, which may equal a fingerprint some entry was
    # stored under before (here: before the judgments were deleted and written again).
    tallies_rebuild()
    after = dashboard_cache.project_fingerprint(project.pk)
    assert after > before
    tallies_rebuild()
    assert dashboard_cache.project_fingerprint(project.pk) > after


def tag_labels(report) -> list[str]:
    return sorted(label for b in report.breakdowns if b.name == "tag" for label, _rate in b.rows)


def test_a_retagged_prompt_refreshes_the_tag_breakdown_and_the_tag_list(project, round_, lee):
    build = Builder(round_)
    judged = build.comparison(tags=("code",))
    build.judge(judged, lee, NEW)
    assert lookups.project_tags(project=project) == ["code"]
    first = reports.round_report(round_=round_, filters=Filters())
    assert tag_labels(first) == ["code"]
    fingerprint = dashboard_cache.project_fingerprint(project.pk)

    Prompt.objects.filter(pk=judged.prompt_id).update(tags=["code", "security"])  # an import added a tag

    assert dashboard_cache.project_fingerprint(project.pk) > fingerprint
    assert lookups.project_tags(project=project) == ["code", "security"]
    again = reports.round_report(round_=round_, filters=Filters())
    assert tag_labels(again) == ["code", "security"]
    other = project_create(name="Quiet project", created_by=lee)
    assert dashboard_cache.project_fingerprint(other.pk) == 0


def test_a_judged_comparison_answer_or_round_cannot_be_moved_under_its_judgments(project, round_, lee):
    build = Builder(round_)
    judged, fresh = build.comparison(), build.comparison()
    build.judge(judged, lee, NEW)
    other_round = round_create(
        project=project, baseline=round_.baseline, candidate=model_version_get_or_create(name="chat-v9")
    )
    other_project = project_create(name="Elsewhere", created_by=lee)

    for move in (
        lambda: Comparison.objects.filter(pk=judged.pk).update(round=other_round),
        lambda: Comparison.objects.filter(pk=judged.pk).update(sample_a=fresh.sample_a_id),
        lambda: Sample.objects.filter(pk=judged.sample_b_id).update(model_version=other_round.candidate),
        lambda: Round.objects.filter(pk=round_.pk).update(project=other_project),
    ):
        with pytest.raises(IntegrityError, match="judgments were made on it"), transaction.atomic():
            move()
    assert_tallies_right()

    # Nothing judged yet: free to change; and a save that rewrites the same values is no move.
    Comparison.objects.filter(pk=fresh.pk).update(round=other_round)
    judged.refresh_from_db()
    judged.save()
    Sample.objects.get(pk=judged.sample_a_id).save()
    assert Comparison.objects.get(pk=fresh.pk).round_id == other_round.pk


def test_every_trigger_the_migrations_install_is_still_there_after_all_of_them(db):
    """A later migration that rebuilds a table (Django does so on SQLite for many column
    changes) drops the triggers on it without a word; this notices."""
    import re

    from insights import triggers

    if connection.vendor == "postgresql":
        created = triggers._postgresql() + triggers._postgresql_guards()
        query = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
    else:
        created = triggers._sqlite() + triggers._sqlite_guards()
        query = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
    expected = {m for s in created for m in re.findall(r"CREATE TRIGGER (\w+)", s)}
    if connection.vendor == "sqlite":  # annotation's 0002 (composite keys on PostgreSQL)
        expected |= {"comparison_samples_answer_prompt_insert", "sample_prompt_keeps_comparisons"}
    with connection.cursor() as cursor:
        cursor.execute(query)
        present = {row[0] for row in cursor.fetchall()}
    assert expected - present == set()
