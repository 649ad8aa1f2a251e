"""Lead dashboard on a big round: 1,000,000 judgments on PostgreSQL.

Fills one round of a fresh bench project through COPY (``annotation.bulk``): 500,000
prompts with tags and 1–3 turns, their 1,000,000 answers (baseline and candidate), one
comparison per prompt (2% gold), two judgments per comparison by 200 annotators (verdict
mix 45/30/12/8/5% win/loss/tie/both-bad/can't-judge, strengths, safety labels, sides,
times, dates over two weeks) and an edit on each both-bad verdict. Then it times, through
Django's test client (the whole request: session, middleware, selectors, template):

- the full dashboard page of the round with an empty cache (on a big database the page
  answers at once with placeholders while background threads compute the numbers; the
  time until they are all in is printed too), and warm (cached);
- the page right after a new judgment (stale numbers served while background threads
  recompute), how long that refresh takes, and the page once refreshed;
- each report computed from scratch (where the time goes);
- the statistics API for the round, which computes in the request;
- the Bradley-Terry fit over 20 versions with 100 bootstrap rounds (FastChat's method,
  vectorised), on 1,000,000 simulated battles.

Goals (issue #5): page under 1 s, Bradley-Terry under 2 s on this 2-core machine.

    flock /tmp/bench.lock env DATABASE_URL=postgres://postgres@127.0.0.1:5432/prefdata_bench_dashboard \\
        .venv/bin/python bench/dashboard_bench.py --judgments 1000000

The database named in DATABASE_URL is created when missing and belongs to the bench: a
fill empties its annotation tables first. The bench project is reused when it already
has the requested number of judgments (``--refill`` builds it again).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_test")

SLUG = "bench-dashboard"
ANNOTATORS = 200
TAGS = ("helpfulness", "safety", "code", "reasoning", "multilingual", "math")
OUTCOMES = ("win", "loss", "tie", "both_bad", "cant_judge")
OUTCOME_P = (0.45, 0.30, 0.12, 0.08, 0.05)
STRENGTHS = ("significantly", "better", "slightly", "negligibly")
SAFETY = ("both_safe", "both_safe", "both_safe", "chosen_safe", "both_unsafe")
BATCH = 100_000


def ensure_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1].split("?", maxsplit=1)[0]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def fill(judgments: int) -> None:
    import numpy as np
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.utils import timezone

    from accounts.roles import Role
    from accounts.services import user_create
    from annotation import bulk
    from annotation.models import Comparison, Edit, Judgment, Prompt, RoundStatus, Sample
    from annotation.services import project_create
    from models_service.rounds import round_create
    from models_service.services import model_version_get_or_create

    rng = np.random.default_rng(5)
    comparisons = judgments // 2
    User = get_user_model()
    # The bench database is the bench's own (see the docstring): start from empty tables.
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE annotation_edit, annotation_judgment, annotation_assignment, annotation_comparison, "
            "annotation_sample, annotation_prompt, annotation_round, annotation_project, "
            # TRUNCATE fires no delete triggers: the tallies go too.
            "insights_comparisontally, insights_verdicttally, insights_projectactivity CASCADE"
        )
    lead = User.objects.filter(username="bench-lead").first() or user_create(
        username="bench-lead", password="bench-password-123", roles=[Role.LEAD]
    )
    project = project_create(name="Bench dashboard", slug=SLUG, created_by=lead, overlap=2)
    baseline = model_version_get_or_create(name="bench-dash-v1")
    candidate = model_version_get_or_create(name="bench-dash-v2")
    round_ = round_create(project=project, baseline=baseline, candidate=candidate, status=RoundStatus.OPEN)
    existing = set(User.objects.filter(username__startswith="bench-annotator-").values_list("username", flat=True))
    User.objects.bulk_create(
        [
            User(username=f"bench-annotator-{i:03d}")
            for i in range(ANNOTATORS)
            if f"bench-annotator-{i:03d}" not in existing
        ]
    )
    annotator_ids = np.array(
        sorted(User.objects.filter(username__startswith="bench-annotator-").values_list("pk", flat=True))[:ANNOTATORS]
    )
    now = timezone.now()
    started = time.perf_counter()
    with transaction.atomic():
        bulk.constraints_immediate()
        for start in range(0, comparisons, BATCH):
            n = min(BATCH, comparisons - start)
            prompt_ids = bulk.allocate_ids(Prompt, n)
            turns = rng.integers(1, 4, n)
            tag_rows = [
                [TAGS[k] for k in sorted(set(rng.integers(0, len(TAGS), 1 + (i % 3 == 0)).tolist()))] for i in range(n)
            ]
            bulk.insert_rows(
                Prompt,
                [
                    "id",
                    "project_id",
                    "messages",
                    "tags",
                    "source",
                    "external_id",
                    "content_hash",
                    "turns",
                    "created_at",
                ],
                [
                    (
                        pid,
                        project.pk,
                        [{"role": "user", "content": f"Bench question {start + i}"}],
                        tag_rows[i],
                        "bench",
                        f"b{start + i}",
                        f"{start + i:064x}",
                        int(turns[i]),
                        now,
                    )
                    for i, pid in enumerate(prompt_ids)
                ],
            )
            sample_ids = bulk.allocate_ids(Sample, 2 * n)
            bulk.insert_rows(
                Sample,
                [
                    "id",
                    "prompt_id",
                    "model_version_id",
                    "text",
                    "text_hash",
                    "sampling_params",
                    "seed",
                    "finish_reason",
                    "identity_flagged",
                    "identity_released",
                    "created_at",
                ],
                [
                    (
                        sample_ids[2 * i + side],
                        pid,
                        (baseline.pk, candidate.pk)[side],
                        f"answer {side} to {start + i}",
                        f"{2 * (start + i) + side:064x}",
                        {},
                        0,
                        "stop",
                        False,
                        False,
                        now,
                    )
                    for i, pid in enumerate(prompt_ids)
                    for side in (0, 1)
                ],
            )
            comparison_ids = bulk.allocate_ids(Comparison, n)
            swap = rng.integers(0, 2, n)  # the candidate is sample A on about half of the pairs
            gold = rng.random(n) < 0.02
            gold_answer = rng.choice(["A", "B", "tie"], n)
            bulk.insert_rows(
                Comparison,
                [
                    "id",
                    "round_id",
                    "prompt_id",
                    "sample_a_id",
                    "sample_b_id",
                    "required_judgments",
                    "judgment_count",
                    "taken",
                    "is_gold",
                    "gold_preferred",
                    "created_at",
                ],
                [
                    (
                        cid,
                        round_.pk,
                        prompt_ids[i],
                        sample_ids[2 * i + swap[i]],
                        sample_ids[2 * i + 1 - swap[i]],
                        2,
                        2,
                        2,
                        bool(gold[i]),
                        str(gold_answer[i]) if gold[i] else "",
                        now,
                    )
                    for i, cid in enumerate(comparison_ids)
                ],
            )
            judgment_ids = bulk.allocate_ids(Judgment, 2 * n)
            outcome = rng.choice(len(OUTCOMES), 2 * n, p=OUTCOME_P)
            first = rng.integers(0, ANNOTATORS, n)
            second = (first + rng.integers(1, ANNOTATORS, n)) % ANNOTATORS
            who = np.stack([first, second], axis=1).reshape(-1)
            strength = rng.integers(0, len(STRENGTHS), 2 * n)
            safety = rng.integers(0, len(SAFETY), 2 * n)
            left = rng.integers(0, 2, 2 * n)
            ms = np.exp(rng.normal(np.log(40_000), 0.6, 2 * n)).astype(int)
            when = rng.integers(0, 14 * 24 * 3600, 2 * n)
            rows = []
            edits = []
            for j, jid in enumerate(judgment_ids):
                i = j // 2
                candidate_side = "A" if swap[i] == 1 else "B"
                o = OUTCOMES[outcome[j]]
                preferred = {"win": candidate_side, "loss": "B" if candidate_side == "A" else "A"}.get(o, o)
                rows.append(
                    (
                        jid,
                        comparison_ids[i],
                        int(annotator_ids[who[j]]),
                        None,
                        preferred,
                        STRENGTHS[strength[j]] if preferred in ("A", "B") else "",
                        SAFETY[safety[j]],
                        "AB"[left[j]],
                        int(ms[j]),
                        "",
                        "import",
                        now - timedelta(seconds=int(when[j])),
                    )
                )
                if o == "both_bad":
                    edits.append((jid, sample_ids[2 * i + 1], f"edited answer {jid}", now))
            bulk.insert_rows(
                Judgment,
                [
                    "id",
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
                ],
                rows,
            )
            edit_ids = bulk.allocate_ids(Edit, len(edits))
            bulk.insert_rows(
                Edit,
                ["id", "judgment_id", "base_sample_id", "text", "created_at"],
                [(eid, *row) for eid, row in zip(edit_ids, edits, strict=True)],
            )
            print(
                f"  filled {start + n:,} comparisons, {2 * (start + n):,} judgments ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    bulk.analyze([Prompt, Sample, Comparison, Judgment, Edit])


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--judgments", type=int, default=1_000_000)
    parser.add_argument("--refill", action="store_true", help="build the bench project again")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--fill-only", action="store_true", help="fill the bench project and stop")
    args = parser.parse_args()

    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        raise SystemExit("Set DATABASE_URL=postgres://… (a database of its own: it is filled with bench data)")
    ensure_database(url)

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    settings.ALLOWED_HOSTS = ["*"]
    call_command("migrate", verbosity=0)

    import numpy as np

    from annotation.models import Judgment, Project
    from insights.stats import bradley_terry as bt

    project = Project.objects.filter(slug=SLUG).first()
    have = Judgment.objects.filter(comparison__round__project=project).count() if project else 0
    if args.refill or have != args.judgments:
        print(f"Filling a round with {args.judgments:,} judgments (COPY)…", flush=True)
        started = time.perf_counter()
        fill(args.judgments)
        print(f"  done in {time.perf_counter() - started:.1f} s", flush=True)
        project = Project.objects.get(slug=SLUG)
    if args.fill_only:
        return

    from django.contrib.auth import get_user_model

    client = Client()
    client.force_login(get_user_model().objects.get(username="bench-lead"))
    base = f"/projects/{SLUG}/dashboard/"
    counter = iter(range(10**6))

    from insights import cache as dashboard_cache
    from insights import lookups
    from insights import reports as dashboards

    def cold():
        # A new key version is an empty cache for every thread (the background refreshes
        # included), without flushing anyone else's keys.
        dashboard_cache.CACHE_VERSION = f"bench-{os.getpid()}-{next(counter)}"

    def get(url: str, *, numbers: bool = False) -> None:
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code, response.content[:500])
        if numbers:  # a warm page must show the numbers, not placeholders
            assert b"Computing these numbers" not in response.content, url

    rows: list[tuple[str, list[float]]] = []

    def cold_get(url: str):
        def run():
            cold()
            get(url)

        return run

    from annotation.models import Comparison, JudgmentSource, Round, RoundStatus
    from insights.filters import Filters

    def wait_for_background() -> None:
        dashboard_cache.background_settle()

    print("Timing…", flush=True)
    # Cold: the round's numbers come from the tallies in the request; agreement between
    # pairs of annotators and annotator quality read judgments, in background threads while
    # the page shows placeholders that poll (insights.cache.Pending); "all numbers in" is
    # when those threads end.
    round_1 = Round.objects.get(project=project, number=1)

    def round_numbers_in() -> bool:
        try:
            dashboards.round_report(round_=round_1, filters=Filters(), wait=False)
        except dashboard_cache.Pending:
            return False
        return True

    page_cold, round_in, ready = [], [], []
    for _ in range(args.repeat):
        cold()
        started = time.perf_counter()
        get(base)
        page_cold.append(time.perf_counter() - started)
        while not round_numbers_in():
            time.sleep(0.02)
        round_in.append(time.perf_counter() - started)
        wait_for_background()
        ready.append(time.perf_counter() - started)
    rows.append(("dashboard page, cold cache (placeholders)", page_cold))
    rows.append(("  round numbers in (background, wall)", round_in))
    rows.append(("  all numbers in (background, wall)", ready))
    rows.append(("dashboard page, warm cache", timed(lambda: get(base, numbers=True), 5 * args.repeat)))

    # A judgment in another project: this project's fingerprint stands still, so every
    # report stays cached and nothing is recomputed.
    from annotation.services import project_create
    from models_service.rounds import round_create
    from tests.factories import Builder

    late = get_user_model().objects.get_or_create(username="bench-late")[0]
    other = Project.objects.filter(slug="bench-dashboard-other").first() or project_create(
        name="Bench dashboard, another team", slug="bench-dashboard-other"
    )
    other_round = Round.objects.filter(project=other).first() or round_create(
        project=other,
        baseline=Round.objects.get(project=project, number=1).baseline,
        candidate=Round.objects.get(project=project, number=1).candidate,
        status=RoundStatus.OPEN,
    )
    elsewhere = Builder(other_round)
    elsewhere.count = Comparison.objects.filter(round=other_round).count() + 10_000_000
    before = dashboard_cache.project_fingerprint(project.pk)
    elsewhere.judge(elsewhere.comparison(), late, "new")
    assert dashboard_cache.project_fingerprint(project.pk) == before
    rows.append(("dashboard page, after a judgment in another project", timed(lambda: get(base, numbers=True), 1)))
    rows.append(("  background refreshes started", [float(len(dashboard_cache._running))]))

    # A judgment arrives here: the cached numbers are stale. Quick reports are recomputed in
    # the request; slow ones are served at once and recomputed in the background.
    Judgment.objects.filter(annotator=late, comparison__round__project=project).delete()
    comparison = Comparison.objects.filter(round__project=project).order_by("id").first()
    Judgment.objects.create(
        comparison=comparison, annotator=late, preferred="A", strength="better", left="A", source=JudgmentSource.IMPORT
    )
    rows.append(("dashboard page, just after a new judgment", timed(lambda: get(base, numbers=True), 1)))
    started = time.perf_counter()
    wait_for_background()
    rows.append(("  background refresh (wall)", [time.perf_counter() - started]))
    rows.append(("dashboard page, refreshed", timed(lambda: get(base, numbers=True), 3 * args.repeat)))
    Judgment.objects.filter(annotator=late, comparison__round__project=project).delete()

    # Where the time goes: each report computed from scratch in the request (wait=True).
    round_ = Round.objects.get(project=project, number=1)
    filters = Filters()
    reports = {
        "history": lambda: dashboards.history(project=project, filters=filters),
        "round (win rate + breakdowns)": lambda: dashboards.round_report(round_=round_, filters=filters),
        "ratings (Bradley-Terry, 100 bootstraps)": lambda: dashboards.ratings_report(project=project, filters=filters),
        "agreement": lambda: dashboards.agreement_report(project=project, round_ids=[round_.pk], filters=filters),
        "quality": lambda: dashboards.quality_for(project=project, round_ids=[round_.pk], filters=filters),
    }
    for name, compute in reports.items():

        def run(compute=compute):
            cold()
            compute()

        rows.append((f"  compute {name}", timed(run, args.repeat)))
    # The filter form's look-ups, which every cold page waits for.
    for name, lookup in (
        ("tags", lambda: lookups.project_tags(project=project)),
        ("annotators", lambda: lookups.project_annotators(project=project)),
        ("fingerprint", lambda: dashboard_cache.project_fingerprint(project.pk)),
    ):

        def run(lookup=lookup):
            cold()
            lookup()

        rows.append((f"  filter look-up: {name}, cold", timed(run, args.repeat)))
    rows.append(
        (
            "API /stats/round/, cold (computes in the request)",
            timed(cold_get(f"/api/v1/projects/{SLUG}/stats/round/"), args.repeat),
        )
    )
    rows.append(("CSV by-annotator, warm", timed(lambda: get(f"{base}annotator.csv?round=1"), args.repeat)))

    rng = np.random.default_rng(0)
    k, n = 20, 1_000_000
    strength = rng.normal(0, 0.5, k)
    a = rng.integers(0, k, n)
    b = (a + rng.integers(1, k, n)) % k
    p = 1 / (1 + 10 ** (strength[b] - strength[a]))
    u = rng.random(n)
    outcome = np.where(u < 0.85 * p, 1.0, np.where(u < 0.85 * p + 0.15, 0.5, 0.0))
    battles = bt.Battles.from_rows(
        (f"v{x}", f"v{y}", o, 1) for x, y, o in zip(a.tolist(), b.tolist(), outcome.tolist(), strict=True)
    )
    rows.append(
        ("Bradley-Terry, 20 versions, 100 bootstraps", timed(lambda: bt.rate(battles, rounds=100), args.repeat))
    )

    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        version = cursor.fetchone()[0].split(",")[0]
    print()
    print(
        f"{args.judgments:,} judgments in one round · {version} · cache {settings.CACHES['default']['BACKEND'].rsplit('.', 1)[-1]} · {os.cpu_count()} CPUs"
    )
    print(f"{'what':<52} {'median':>9} {'min':>9} {'max':>9}  goal")
    goals = {
        "dashboard page, cold cache (placeholders)": 1.0,
        "dashboard page, warm cache": 1.0,
        "dashboard page, just after a new judgment": 1.0,
        "dashboard page, refreshed": 1.0,
        "dashboard page, after a judgment in another project": 1.0,
        "  compute round (win rate + breakdowns)": 2.0,
        "  round numbers in (background, wall)": 2.0,
        "  compute history": 2.0,
        "Bradley-Terry, 20 versions, 100 bootstraps": 2.0,
    }
    for name, values in rows:
        goal = goals.get(name)
        verdict = "" if goal is None else (f"< {goal:g} s " + ("ok" if statistics.median(values) < goal else "MISSED"))
        print(
            f"{name:<52} {statistics.median(values) * 1000:>7.0f}ms {min(values) * 1000:>7.0f}ms {max(values) * 1000:>7.0f}ms  {verdict}"
        )


if __name__ == "__main__":
    main()
