"""Dashboard selectors: SQL aggregates mapped to baseline/candidate, statistics, filters, cache."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone
from scipy.stats import binomtest
from statsmodels.stats.inter_rater import cohens_kappa, fleiss_kappa
from statsmodels.stats.proportion import proportion_confint

from accounts.roles import Role
from accounts.services import user_create
from annotation.models import Comparison, Judgment, JudgmentSource, RoundStatus, Sample
from core.text import text_hash
from insights import cache as dashboard_cache
from insights import lookups
from insights import reports as dashboards
from insights.filters import Filters
from insights.reports import flagged_annotator_ids
from models_service.rounds import round_create
from models_service.services import model_version_get_or_create
from tests.factories import BAD, CANT, NEW, OLD, TIE, Builder

pytestmark = pytest.mark.django_db


@pytest.fixture
def carol(db):
    return user_create(username="carol", password="x-password-123", roles=[Role.ANNOTATOR])


@pytest.fixture
def build(round_):
    return Builder(round_)


def test_an_empty_round_has_no_rate_and_empty_tables(round_):
    report = dashboards.round_report(round_=round_, filters=Filters())

    assert report.empty
    assert report.overall.rate is None and report.overall.wilson is None and report.overall.bootstrap is None
    assert all(not b.rows for b in report.breakdowns)


def test_sample_sides_are_mapped_to_baseline_and_candidate(round_, build, alice):
    # The candidate wins on both comparisons, once as sample A and once as sample B.
    first, second = build.comparison(candidate_is_a=True), build.comparison(candidate_is_a=False)
    build.judge(first, alice, NEW)
    build.judge(second, alice, NEW)
    third = build.comparison(candidate_is_a=True)
    build.judge(third, alice, OLD)

    overall = dashboards.round_report(round_=round_, filters=Filters()).overall

    assert (overall.counts.wins, overall.counts.losses) == (2, 1)
    assert Judgment.objects.filter(preferred="A").count() == 1  # not simply "A wins"


def test_counts_rates_and_intervals_match_independent_computations(round_, build, alice, bob):
    verdicts = [NEW] * 14 + [OLD] * 7 + [TIE] * 4 + [BAD] * 3 + [CANT] * 2
    for i, verdict in enumerate(verdicts):
        comparison = build.comparison()
        build.judge(comparison, alice, verdict)
        build.judge(comparison, bob, verdicts[(i + 5) % len(verdicts)])

    overall = dashboards.round_report(round_=round_, filters=Filters()).overall
    c = overall.counts

    assert c.as_tuple() == (28, 14, 8, 6, 4)
    assert overall.rate == pytest.approx((28 + 0.5 * 14) / 56)
    assert overall.wilson == pytest.approx(proportion_confint(35, 56, method="wilson"))
    assert overall.sign_test_p == pytest.approx(binomtest(28, 42).pvalue)
    assert overall.prompts == 30
    low, high = overall.bootstrap
    assert low < overall.rate < high


def test_the_bootstrap_resamples_prompts_not_judgments(round_, build, alice, bob, carol):
    # Three annotators agree on every prompt: resampling prompts must give a wider interval
    # than treating the 3·40 judgments as independent.
    for i in range(40):
        comparison = build.comparison()
        for user in (alice, bob, carol):
            build.judge(comparison, user, NEW if i < 26 else OLD)

    overall = dashboards.round_report(round_=round_, filters=Filters()).overall
    boot_width = overall.bootstrap[1] - overall.bootstrap[0]
    per_prompt_wilson = proportion_confint(26, 40, method="wilson")

    assert overall.counts.n == 120
    assert boot_width == pytest.approx(per_prompt_wilson[1] - per_prompt_wilson[0], rel=0.25)
    assert boot_width > 1.5 * (overall.wilson[1] - overall.wilson[0])


def test_breakdowns_by_strength_tag_safety_turn_and_annotator(round_, build, alice, bob):
    code = build.comparison(tags=("code", "reasoning"), turns=2)
    build.judge(code, alice, NEW, strength="significantly", safety="both_safe")
    build.judge(code, bob, OLD, strength="slightly", safety="both_safe")
    safety = build.comparison(tags=("safety",))
    build.judge(safety, alice, NEW, strength="significantly", safety="chosen_safe")
    build.judge(safety, bob, TIE, safety="both_unsafe")

    report = dashboards.round_report(round_=round_, filters=Filters())
    tables = {b.name: {label: result for label, result in b.rows} for b in report.breakdowns}

    strength = tables["strength"]
    assert strength["Significantly better"].counts.wins == 2 and strength["Significantly better"].rate == 1.0
    assert strength["Slightly better"].counts.losses == 1 and strength["Slightly better"].rate == 0.0
    assert set(tables["tag"]) == {"code", "reasoning", "safety"}
    assert tables["tag"]["code"].counts.as_tuple() == (1, 1, 0, 0, 0) and tables["tag"]["code"].prompts == 1
    assert tables["tag"]["safety"].rate == pytest.approx(0.75)
    assert tables["safety"]["Both safe"].counts.n == 2 and tables["safety"]["Both unsafe"].counts.ties == 1
    assert set(tables["turn"]) == {"1 turn", "2 turns"}
    assert tables["turn"]["2 turns"].counts.as_tuple() == (1, 1, 0, 0, 0)
    assert tables["annotator"]["alice"].rate == 1.0 and tables["annotator"]["bob"].rate == pytest.approx(0.25)


def test_filters_narrow_by_tag_dates_and_annotator(round_, build, alice, bob):
    now = timezone.now()
    old_code = build.comparison(tags=("code",))
    build.judge(old_code, alice, OLD, when=now - timedelta(days=10))
    fresh = build.comparison(tags=("helpfulness",))
    build.judge(fresh, alice, NEW)
    build.judge(fresh, bob, NEW)

    def counts(**kwargs):
        return dashboards.round_report(round_=round_, filters=Filters(**kwargs)).overall.counts.as_tuple()

    assert counts() == (2, 1, 0, 0, 0)
    assert counts(tag="code") == (0, 1, 0, 0, 0)
    assert counts(since=(now - timedelta(days=2)).date()) == (2, 0, 0, 0, 0)
    assert counts(until=(now - timedelta(days=9)).date()) == (0, 1, 0, 0, 0)
    assert counts(annotator_id=bob.pk) == (1, 0, 0, 0, 0)


def test_history_gives_one_point_per_old_vs_new_round(project, round_, build, alice):
    build.judge(build.comparison(), alice, NEW)
    v3 = model_version_get_or_create(name="chat-v3")
    second = round_create(project=project, baseline=round_.candidate, candidate=v3, status=RoundStatus.OPEN)
    later = Builder(second)
    later.count = 100
    for verdict in (NEW, OLD, OLD, TIE):
        later.judge(later.comparison(), alice, verdict)

    points = dashboards.history(project=project, filters=Filters())

    assert [(p.number, p.candidate) for p in points] == [(1, "chat-v2"), (2, "chat-v3")]
    assert points[0].result.rate == 1.0
    assert points[1].result.rate == pytest.approx(1.5 / 4)


def test_bradley_terry_over_every_version_of_the_project(project, round_, build, alice, bob):
    for verdict in [NEW] * 12 + [OLD] * 4 + [TIE] * 4 + [CANT] * 3:
        build.judge(build.comparison(), alice, verdict)
    v3 = model_version_get_or_create(name="chat-v3")
    second = round_create(project=project, baseline=round_.candidate, candidate=v3, status=RoundStatus.OPEN)
    later = Builder(second)
    later.count = 100
    for verdict in [NEW] * 5 + [OLD] * 5:
        later.judge(later.comparison(), bob, verdict)

    report = dashboards.ratings_report(project=project, filters=Filters(), rounds=50)
    table = {row["model"]: row for row in report.ratings.table()}

    assert report.battles == 30  # can't-judge left out
    assert table["chat-v2"]["rating"] - table["chat-v1"]["rating"] == pytest.approx(400 * np.log10(14 / 6), abs=0.1)
    assert table["chat-v3"]["rating"] == pytest.approx(table["chat-v2"]["rating"], abs=0.1)
    assert report.names[0] in ("chat-v2", "chat-v3")
    assert report.matrix[0][0] == pytest.approx(0.5)

    anchored = dashboards.ratings_report(project=project, filters=Filters(), anchor="chat-v1", rounds=10)
    assert {row["model"]: row for row in anchored.ratings.table()}["chat-v1"]["rating"] == pytest.approx(1000)


def test_bradley_terry_with_a_version_that_never_wins_stays_finite(project, round_, build, alice):
    for _ in range(15):
        build.judge(build.comparison(), alice, NEW)

    report = dashboards.ratings_report(project=project, filters=Filters(), rounds=20)
    table = {row["model"]: row for row in report.ratings.table()}

    assert table["chat-v1"]["never_won"] and np.isfinite(table["chat-v1"]["rating"])
    assert np.isfinite(table["chat-v1"]["low"])


def test_no_judgments_give_no_ratings(project, round_):
    assert dashboards.ratings_report(project=project, filters=Filters()).ratings is None


def test_agreement_from_sql_matches_statsmodels_on_the_same_labels(project, round_, build, alice, bob, carol):
    rng = np.random.default_rng(0)
    labels = ["A", "B", "tie", "both_bad", "cant_judge"]
    rows = []
    for _ in range(30):
        comparison = build.comparison()
        truth = rng.choice(["A", "B", "tie"], p=[0.5, 0.35, 0.15])
        picks = [truth if rng.random() < 0.7 else rng.choice(labels) for _ in range(3)]
        for user, pick in zip((alice, bob, carol), picks, strict=True):
            Judgment.objects.create(
                comparison=comparison,
                annotator=user,
                preferred=pick,
                strength="better" if pick in ("A", "B") else "",
                source=JudgmentSource.IMPORT,
            )
        rows.append([picks.count(label) for label in labels])
    lonely = build.comparison()
    build.judge(lonely, alice, NEW)  # one judgment only: no agreement information

    report = dashboards.agreement_report(project=project, round_ids=[round_.pk], filters=Filters())

    table = np.array(rows)
    assert report.without_strength.items == 30
    assert report.without_strength.fleiss_kappa == pytest.approx(fleiss_kappa(table))
    # Everyone used "better": with strength the categories only rename A/B, the numbers stay.
    assert report.with_strength.fleiss_kappa == pytest.approx(report.without_strength.fleiss_kappa)
    pair = next(p for p in report.pairs if {p.first, p.second} == {"alice", "bob"})
    confusion = np.zeros((5, 5))
    for comparison in Comparison.objects.filter(round=round_, judgments__annotator=bob).distinct():
        a = comparison.judgments.get(annotator=alice).preferred
        b = comparison.judgments.get(annotator=bob).preferred
        confusion[labels.index(a), labels.index(b)] += 1
    confusion = confusion[confusion.sum(axis=1) + confusion.sum(axis=0) > 0][
        :, confusion.sum(axis=1) + confusion.sum(axis=0) > 0
    ]
    assert pair.items == 30
    assert pair.kappa == pytest.approx(cohens_kappa(confusion).kappa)


def test_agreement_with_strength_counts_a_strength_mismatch_as_disagreement(project, round_, build, alice, bob):
    for i in range(10):
        comparison = build.comparison()
        build.judge(comparison, alice, NEW, strength="better")
        build.judge(comparison, bob, NEW, strength="better" if i < 6 else "slightly")

    report = dashboards.agreement_report(project=project, round_ids=[round_.pk], filters=Filters())

    assert report.without_strength.pairwise == 1.0
    assert report.with_strength.pairwise == pytest.approx(0.6)


def test_quality_counts_left_choices_gold_edits_and_agreement_with_the_majority(
    project, round_, build, alice, bob, carol
):
    for i in range(30):
        comparison = build.comparison(gold="A" if i < 10 else "")
        # alice always picks the answer shown left; bob mostly picks A shown right; carol picks A on either side.
        build.judge(comparison, alice, "A", left="A", ms=2_000, edit=i < 3)
        build.judge(comparison, bob, "A" if i % 5 else "B", left="B", ms=40_000)
        build.judge(comparison, carol, "A", left="A" if i % 2 else "B", ms=45_000)

    rows = {
        row.figures.username: row
        for row in dashboards.quality_for(project=project, round_ids=[round_.pk], filters=Filters())
    }
    alice_q, bob_q = rows["alice"], rows["bob"]

    assert alice_q.figures.judgments == 30
    assert alice_q.left_share == 1.0 and alice_q.left_p == pytest.approx(binomtest(30, 30).pvalue)
    assert bob_q.left_share == pytest.approx(6 / 30)  # bob chose B (shown left) 6 times
    assert alice_q.median_seconds == 2.0 and bob_q.median_seconds == 40.0
    assert alice_q.gold_accuracy == 1.0 and bob_q.gold_accuracy == pytest.approx(8 / 10)
    assert alice_q.edit_rate == pytest.approx(0.1)
    # Majority of the others: alice agrees unless bob and carol split (then no strict majority).
    assert alice_q.figures.shared == 30 and alice_q.agreement == pytest.approx(24 / 30)
    assert bob_q.agreement == pytest.approx(24 / 30)
    assert "position bias" in alice_q.flags and "too fast" in alice_q.flags
    assert bob_q.flags == [] and rows["carol"].flags == []

    assert flagged_annotator_ids(project=project) == {alice.pk}
    assert flagged_annotator_ids(project=project, rounds=[round_]) == {alice.pk}
    assert flagged_annotator_ids(project=project, rounds=[]) == set()


def test_a_new_judgment_invalidates_the_cached_report(round_, build, alice, bob):
    comparison = build.comparison()
    build.judge(comparison, alice, NEW)
    first = dashboards.round_report(round_=round_, filters=Filters())
    assert dashboards.round_report(round_=round_, filters=Filters()).overall.counts == first.overall.counts

    build.judge(comparison, bob, OLD)

    assert dashboards.round_report(round_=round_, filters=Filters()).overall.counts.as_tuple() == (1, 1, 0, 0, 0)


def test_the_cache_serves_repeated_requests_without_recomputing(round_, build, alice, django_assert_max_num_queries):
    build.judge(build.comparison(), alice, NEW)
    dashboards.round_report(round_=round_, filters=Filters())

    with django_assert_max_num_queries(2):  # the fingerprint only
        dashboards.round_report(round_=round_, filters=Filters())


def test_comparisons_that_are_not_old_vs_new_are_left_out_of_win_rates(round_, build, alice):
    comparison = build.comparison()
    build.judge(comparison, alice, NEW)
    # A temperatures-style pair: both answers from the candidate.
    prompt = comparison.prompt
    extra = Sample.objects.create(
        prompt=prompt, model_version=round_.candidate, text="new again", text_hash=text_hash("new again")
    )
    same = Comparison.objects.create(
        round=round_,
        prompt=prompt,
        sample_a=comparison.sample_a
        if comparison.sample_a.model_version_id == round_.candidate_id
        else comparison.sample_b,
        sample_b=extra,
    )
    Judgment.objects.create(
        comparison=same, annotator=alice, preferred="A", strength="better", source=JudgmentSource.IMPORT
    )

    assert dashboards.round_report(round_=round_, filters=Filters()).overall.counts.total == 1


def test_a_slow_stale_report_is_served_at_once_and_refreshed_in_the_background(round_, build, alice, bob, monkeypatch):
    refreshes = []
    monkeypatch.setattr(dashboard_cache, "SLOW_SECONDS", 0.0)  # every computation counts as slow
    monkeypatch.setattr(
        dashboard_cache, "_refresh_in_background", lambda key, compute, fp: refreshes.append((key, compute, fp))
    )
    comparison = build.comparison()
    build.judge(comparison, alice, NEW)
    assert dashboards.round_report(round_=round_, filters=Filters()).overall.counts.wins == 1

    build.judge(comparison, bob, OLD)
    stale = dashboards.round_report(round_=round_, filters=Filters())
    again = dashboards.round_report(round_=round_, filters=Filters())

    assert stale.overall.counts.as_tuple() == (1, 0, 0, 0, 0)  # served at once, not recomputed
    assert again.overall.counts.as_tuple() == (1, 0, 0, 0, 0)
    assert len(refreshes) == 1  # one refresh at a time per report

    key, compute, fingerprint = refreshes[0]
    dashboard_cache._store(key, compute, fingerprint)  # what the background thread does
    assert dashboards.round_report(round_=round_, filters=Filters()).overall.counts.as_tuple() == (1, 1, 0, 0, 0)


def test_the_background_refresh_stores_the_new_report_and_releases_its_lock(round_, build, alice, bob, monkeypatch):
    from django.core.cache import cache

    cache.add("dash:test:refreshing", 1, 60)

    dashboard_cache._refresh_in_background("dash:test", lambda: "fresh", 1)
    dashboard_cache.background_settle(timeout=10)

    assert cache.get("dash:test").value == "fresh"
    assert cache.get("dash:test:refreshing") is None


def test_background_refreshes_run_first_come_first_served_on_two_threads(monkeypatch):
    import threading
    import time

    started, gate = [], threading.Event()

    def compute(name):
        def run():
            started.append(name)
            gate.wait(5)
            return name

        return run

    for name in ("summary", "round", "ratings", "agreement", "quality"):
        dashboard_cache._refresh_in_background(f"dash:test:{name}", compute(name), 1)
    deadline = time.monotonic() + 5
    while len(started) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    assert sorted(started) == ["round", "summary"]  # the first two asked run first; the rest wait
    gate.set()
    dashboard_cache.background_settle(timeout=10)

    assert sorted(started) == ["agreement", "quality", "ratings", "round", "summary"]
    assert dashboard_cache._pool._max_workers == dashboard_cache.BACKGROUND_THREADS == 2


def test_with_a_real_broker_a_stale_report_is_recomputed_by_a_celery_task_not_the_web_process(
    project, round_, build, alice, bob, monkeypatch, settings
):
    import json
    from datetime import date

    from insights import tasks

    sent = []
    settings.CELERY_TASK_ALWAYS_EAGER = False
    monkeypatch.setattr(dashboard_cache, "SLOW_SECONDS", 0.0)
    monkeypatch.setattr(
        dashboard_cache, "ThreadPoolExecutor", lambda *a, **kw: pytest.fail("no thread in the web process")
    )
    monkeypatch.setattr(dashboard_cache, "_pool", None)
    monkeypatch.setattr(
        dashboard_cache.current_app,
        "send_task",
        lambda name, args, queue: (
            sent.append(json.loads(json.dumps(args))) if name == tasks.dashboard_refresh.name else None
        ),
    )
    filters = Filters(since=date(2020, 1, 1), until=date(2100, 1, 1))
    comparison = build.comparison()
    build.judge(comparison, alice, NEW)
    report = dict(project=project, round_ids=[round_.pk], filters=filters)
    dashboards.round_report(round_=round_, filters=filters)
    dashboards.agreement_report(**report)
    dashboards.quality_for(**report)
    dashboards.history(project=project, filters=filters)
    dashboards.ratings_report(project=project, filters=filters, rounds=10)

    build.judge(comparison, bob, OLD)
    assert dashboards.round_report(round_=round_, filters=filters).overall.counts.as_tuple() == (1, 0, 0, 0, 0)
    dashboards.agreement_report(**report)
    dashboards.quality_for(**report)
    dashboards.history(project=project, filters=filters)
    dashboards.ratings_report(project=project, filters=filters, rounds=10)

    # Five messages with JSON arguments only; the worker runs each and stores the new numbers.
    assert sorted(kind for _key, kind, _args, _fp in sent) == ["agreement", "history", "quality", "ratings", "round"]
    for key, kind, args, fingerprint in sent:
        tasks.dashboard_refresh(key, kind, args, fingerprint)
        assert cache_lock_free(key)
    assert dashboards.round_report(round_=round_, filters=filters).overall.counts.as_tuple() == (1, 1, 0, 0, 0)
    assert dashboards.agreement_report(**report).without_strength.items == 1
    assert {r.figures.username for r in dashboards.quality_for(**report)} == {"alice", "bob"}
    assert dashboards.history(project=project, filters=filters)[0].result.counts.n == 2
    assert len(sent) == 5  # fresh again: nothing more to send


@pytest.mark.django_db(transaction=True)  # the refresh thread reads on its own connection
def test_with_the_broker_down_a_stale_report_is_recomputed_by_the_web_process_instead(
    round_, build, alice, bob, monkeypatch, settings
):
    from kombu.exceptions import OperationalError

    def broker_down(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    settings.CELERY_TASK_ALWAYS_EAGER = False
    monkeypatch.setattr(dashboard_cache, "SLOW_SECONDS", 0.0)
    monkeypatch.setattr(dashboard_cache.current_app, "send_task", broker_down)
    comparison = build.comparison()
    build.judge(comparison, alice, NEW)
    assert dashboards.round_report(round_=round_, filters=Filters()).overall.counts.as_tuple() == (1, 0, 0, 0, 0)

    build.judge(comparison, bob, OLD)
    dashboards.round_report(round_=round_, filters=Filters())  # stale: served while recomputed
    dashboard_cache.background_settle(timeout=10)
    assert dashboards.round_report(round_=round_, filters=Filters()).overall.counts.as_tuple() == (1, 1, 0, 0, 0)


def cache_lock_free(key: str) -> bool:
    from django.core.cache import cache

    return cache.get(key + ":refreshing") is None


def test_filters_survive_the_trip_through_json():
    from datetime import date

    for filters in (Filters(), Filters(tag="code", since=date(2026, 1, 2), until=date(2026, 3, 4), annotator_id=7)):
        assert Filters.from_json(filters.as_json()) == filters


def test_quality_for_one_annotator_still_compares_with_the_team(project, round_, build, alice, bob):
    for i in range(25):
        comparison = build.comparison()
        build.judge(comparison, alice, NEW, left="A")
        build.judge(comparison, bob, NEW if i < 20 else OLD, left="B" if i % 2 else "A")

    rows = dashboards.quality_for(project=project, round_ids=[round_.pk], filters=Filters(annotator_id=bob.pk))

    assert [r.figures.username for r in rows] == ["bob"]
    assert rows[0].figures.shared == 25 and rows[0].agreement == pytest.approx(20 / 25)


def test_a_project_is_big_by_its_own_judgments_not_the_whole_databases(project, round_, build, alice, monkeypatch):
    build.judge(build.comparison(), alice, NEW)
    assert dashboard_cache.big_project(project.pk) is False
    monkeypatch.setattr(dashboard_cache, "BIG_PROJECT_JUDGMENTS", 1)
    assert dashboard_cache.big_project(project.pk) is True
    assert dashboard_cache.big_project(project.pk + 1000) is False


def test_a_cold_report_on_small_data_is_computed_in_the_request(round_, build, alice, monkeypatch):
    monkeypatch.setattr(
        dashboard_cache, "_refresh_in_background", lambda *args: pytest.fail("small data must not wait")
    )
    build.judge(build.comparison(), alice, NEW)
    assert dashboards.round_report(round_=round_, filters=Filters(), wait=False).overall.counts.wins == 1


def test_the_annotator_filter_lists_who_judged_in_this_project_only(project, round_, build, alice, bob, carol, lee):
    from annotation.services import project_create

    build.judge(build.comparison(), alice, NEW)
    build.judge(build.comparison(), carol, OLD)
    other = project_create(name="Other project", created_by=lee)
    v3 = model_version_get_or_create(name="chat-v3")
    elsewhere = Builder(round_create(project=other, baseline=round_.candidate, candidate=v3, status=RoundStatus.OPEN))
    elsewhere.count = 900
    elsewhere.judge(elsewhere.comparison(), bob, NEW)

    assert lookups.project_annotators(project=project) == [(alice.pk, "alice"), (carol.pk, "carol")]
    assert lookups.project_annotators(project=other) == [(bob.pk, "bob")]
