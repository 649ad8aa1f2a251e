"""Building exports: rows per kind, filters, aggregation, split, files, checksums, cancellation."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from django.core.exceptions import ValidationError

from rlhf_export.models import ExportJob, ExportStatus
from rlhf_export.services import (
    RunOutcome,
    export_job_cancel,
    export_job_create,
    export_job_run,
)


def run(project, user, kind, **kwargs) -> ExportJob:
    job = export_job_create(project=project, kind=kind, created_by=user, **kwargs)
    # Eager Celery runs the task on commit; the test transaction never commits, so run it here.
    assert export_job_run(job_id=job.pk) == RunOutcome.SUCCEEDED
    job.refresh_from_db()
    assert job.status == ExportStatus.SUCCEEDED, job.error
    return job


def files_of(job: ExportJob, media: Path) -> dict[str, Path]:
    return {a.name: media / a.storage_name for a in job.artifacts.all()}


def rows_of(job: ExportJob, media: Path, split: str = "train") -> list[dict]:
    rows: list[dict] = []
    for artifact in job.artifacts.filter(split=split).order_by("name"):
        path = media / artifact.storage_name
        if path.suffix == ".parquet":
            rows += pq.read_table(path).to_pylist()
        else:
            rows += [json.loads(line) for line in path.read_text().splitlines()]
    return rows


def test_reward_model_pairs_take_the_majority_with_agreement_and_llama2_margins(project, maya, judged, _media):
    job = run(
        project, maya, "reward_model", file_format="jsonl", filters={"test_fraction": 0}, options={"margin": "small"}
    )
    rows = {r["comparison_id"]: r for r in rows_of(job, _media)}
    unanimous = rows[judged["unanimous"].pk]
    assert (unanimous["prompt"], unanimous["chosen"], unanimous["rejected"]) == (
        "Name a prime number.",
        "7 is prime.",
        "8 is prime.",
    )
    assert unanimous["strength"] == "significantly" and unanimous["margin"] == 1.0
    assert unanimous["annotators"] == 3 and unanimous["agreement"] == 1.0
    majority = rows[judged["majority"].pk]
    assert (majority["chosen"], majority["rejected"]) == ("**4**", "5")
    assert majority["agreement"] == pytest.approx(2 / 3)
    assert majority["strength"] == "slightly" and majority["margin"] == pytest.approx(
        1 / 3
    )  # weaker middle of better/slightly
    # No majority, a tie, both bad and the unsafe-chosen pair give no row.
    assert judged["split"].pk not in rows and judged["tie"].pk not in rows and judged["both_bad"].pk not in rows
    assert judged["unsafe"].pk not in rows
    assert job.counts["no_majority"] == 1
    assert job.rows_total == len(rows) == 4


def test_dpo_keeps_only_strong_pairs_when_asked_like_llama3(project, maya, judged, _media):
    job = run(project, maya, "dpo", filters={"test_fraction": 0, "min_strength": "better"})
    kept = {r["comparison_id"] for r in rows_of(job, _media)}
    # unanimous: significantly; multi_turn: significantly; majority's median is "slightly"; weak is negligibly.
    assert kept == {judged["unanimous"].pk, judged["multi_turn"].pk}
    assert job.counts["below_min_strength"] == 2


def test_dpo_standard_format_renders_conversations_as_transcripts(project, maya, judged, _media):
    job = run(project, maya, "dpo", filters={"test_fraction": 0})
    row = next(r for r in rows_of(job, _media) if r["comparison_id"] == judged["multi_turn"].pk)
    assert row["prompt"] == (
        "System: You are terse.\n\nHuman: Capital of France?\n\nAssistant: Paris.\n\nHuman: And of Italy?\n\nAssistant:"
    )
    assert (row["chosen"], row["rejected"]) == ("Rome.", "Milan.")
    assert "margin" not in row


def test_dpo_conversational_format_keeps_message_lists(project, maya, judged, _media):
    job = run(project, maya, "dpo", text_format="conversational", filters={"test_fraction": 0})
    row = next(r for r in rows_of(job, _media) if r["comparison_id"] == judged["multi_turn"].pk)
    assert [m["role"] for m in row["prompt"]] == ["system", "user", "assistant", "user"]
    assert row["chosen"] == [{"role": "assistant", "content": "Rome."}]
    assert row["rejected"] == [{"role": "assistant", "content": "Milan."}]


def test_disagreements_can_be_dropped_keeping_unanimous_comparisons_only(project, maya, judged, _media):
    job = run(project, maya, "reward_model", filters={"test_fraction": 0, "disagreements": "drop"})
    kept = {r["comparison_id"] for r in rows_of(job, _media)}
    assert judged["majority"].pk not in kept and judged["unanimous"].pk in kept
    assert job.counts["disagreement_dropped"] >= 1


def test_without_aggregation_every_judgment_is_a_row_with_its_agreement(project, maya, judged, _media):
    job = run(project, maya, "reward_model", filters={"test_fraction": 0, "aggregation": "none", "deduplicate": False})
    rows = [r for r in rows_of(job, _media) if r["comparison_id"] == judged["majority"].pk]
    assert sorted((r["chosen"], r["agreement"]) for r in rows) == [
        ("**4**", pytest.approx(2 / 3)),
        ("**4**", pytest.approx(2 / 3)),
        ("5", pytest.approx(1 / 3)),
    ]


def test_deduplication_writes_identical_pairs_once(project, maya, judged, _media):
    job = run(project, maya, "reward_model", filters={"test_fraction": 0, "aggregation": "none"})
    rows = [r for r in rows_of(job, _media) if r["comparison_id"] == judged["unanimous"].pk]
    assert len(rows) == 1  # three annotators, one identical pair
    assert job.counts["duplicates"] >= 2


def test_excluded_annotators_are_left_out_before_aggregation(project, maya, judged, raters, _media):
    job = run(project, maya, "reward_model", filters={"test_fraction": 0, "exclude_annotators": [raters[2].username]})
    rows = {r["comparison_id"]: r for r in rows_of(job, _media)}
    assert rows[judged["majority"].pk]["agreement"] == 1.0 and rows[judged["majority"].pk]["annotators"] == 2
    # "split" (A, B, tie) loses its tie vote: still no majority.
    assert judged["split"].pk not in rows
    assert job.source_state["excluded_annotator_ids"] == [raters[2].pk]


def test_flagged_annotators_are_excluded_through_the_quality_checks(project, maya, judged, raters, _media, monkeypatch):
    from rlhf_export import services as export_services

    calls = []

    def flagged_annotator_ids(*, project, rounds=None):
        calls.append((project, rounds))
        return {raters[0].pk}

    monkeypatch.setattr(export_services, "flagged_annotator_ids", flagged_annotator_ids)
    job = run(project, maya, "raw", filters={"test_fraction": 0, "exclude_flagged_annotators": True})
    assert calls and calls[0][0] == project
    annotators_seen = {r["annotator_id"] for r in rows_of(job, _media)}
    assert raters[0].pk not in annotators_seen and raters[1].pk in annotators_seen
    assert job.source_state["flagged_annotator_ids"] == [raters[0].pk]


def test_tags_and_rounds_narrow_the_export(project, maya, judged, _media):
    job = run(project, maya, "raw", filters={"test_fraction": 0, "tags": ["MATH"], "rounds": [1]})
    assert {r["comparison_id"] for r in rows_of(job, _media)} == {judged["unanimous"].pk, judged["majority"].pk}


def test_ties_both_bad_and_cant_judge_can_be_dropped_from_raw_judgments(project, maya, judged, _media):
    everything = run(project, maya, "raw", filters={"test_fraction": 0, "drop_chosen_unsafe": False})
    kinds = {r["preferred"] for r in rows_of(everything, _media)}
    assert {"tie", "both_bad", "A", "B"} <= kinds
    dropped = run(project, maya, "raw", filters={"test_fraction": 0, "drop_ties": True, "drop_both_bad": True})
    assert {r["preferred"] for r in rows_of(dropped, _media)} == {"A", "B"}


def test_sft_rows_end_in_the_edited_answer(project, maya, judged, _media):
    job = run(project, maya, "sft", text_format="conversational", filters={"test_fraction": 0})
    rows = {r["comparison_id"]: r for r in rows_of(job, _media)}
    assert set(rows) == {judged["majority"].pk, judged["both_bad"].pk, judged["multi_turn"].pk}
    messages = rows[judged["multi_turn"].pk]["messages"]
    assert messages[-1] == {"role": "assistant", "content": "Rome is the capital of Italy."}
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant"]
    standard = run(project, maya, "sft", filters={"test_fraction": 0})
    row = next(r for r in rows_of(standard, _media) if r["comparison_id"] == judged["majority"].pk)
    assert (row["prompt"], row["completion"]) == ("What is 2+2?", "2 + 2 = 4.")


def test_llama3_expansion_orders_edited_over_chosen_over_rejected(project, maya, judged, _media):
    job = run(project, maya, "llama3", filters={"test_fraction": 0})
    rows = [r for r in rows_of(job, _media) if r["comparison_id"] == judged["majority"].pk]
    assert sorted((r["pair_type"], r["chosen"], r["rejected"]) for r in rows) == [
        ("chosen>rejected", "**4**", "5"),
        ("edited>chosen", "2 + 2 = 4.", "**4**"),
        ("edited>rejected", "2 + 2 = 4.", "5"),
    ]
    both_bad = [r for r in rows_of(job, _media) if r["comparison_id"] == judged["both_bad"].pk]
    assert sorted((r["pair_type"], r["chosen"], r["rejected"]) for r in both_bad) == [
        ("edited>both_bad", "cat", "dog"),
        ("edited>both_bad", "cat", "horse"),
    ]
    # What gave no pair is counted for the dataset card, as in the other kinds: the tie.
    assert job.counts.get("no_pair_tie", 0) >= 1 and "no_pair_both_bad" not in job.counts


def test_the_split_is_by_prompt_and_the_same_on_every_rerun(project, maya, round_, _media):
    from tests.factories import annotators, bulk_judged

    bulk_judged(round_, 300, annotators(2, "splitter"))
    filters = {"test_fraction": 0.3, "aggregation": "none", "deduplicate": False}
    first = run(project, maya, "raw", filters=filters, file_format="jsonl")
    train, test = rows_of(first, _media, "train"), rows_of(first, _media, "test")
    assert {r["prompt_id"] for r in train}.isdisjoint({r["prompt_id"] for r in test})
    assert 0.15 < len({r["prompt_id"] for r in test}) / 300 < 0.45
    second = run(project, maya, "raw", filters=filters, file_format="jsonl")
    assert [r["id"] for r in rows_of(second, _media, "test")] == [r["id"] for r in test]
    reseeded = run(project, maya, "raw", filters={**filters, "split_seed": "other"}, file_format="jsonl")
    assert {r["prompt_id"] for r in rows_of(reseeded, _media, "test")} != {r["prompt_id"] for r in test}


def test_the_turns_of_one_dialogue_stay_in_one_split(project, maya, round_, raters, _media):
    """A dialogue's second turn is a prompt of its own that repeats the first turn and its
    preferred answer: it must follow the first turn into the same split."""
    from tests.factories import Vote, comparison_make, prompt_make

    r1 = raters[0]
    for i in range(40):
        opening = [{"role": "user", "content": f"Dialogue {i}: tell me something."}]
        comparison_make(round_, prompt_make(round_, opening), f"fact {i}", f"story {i}", [Vote(r1, "A", "better")])
        follow_up = opening + [{"role": "assistant", "content": f"fact {i}"}, {"role": "user", "content": "And more?"}]
        comparison_make(round_, prompt_make(round_, follow_up), f"more {i}", f"less {i}", [Vote(r1, "B", "better")])
    job = run(
        project,
        maya,
        "raw",
        filters={"test_fraction": 0.5, "aggregation": "none"},
        file_format="jsonl",
        text_format="conversational",
    )

    def dialogues(split: str) -> set[str]:
        return {r["prompt"][0]["content"].split(":")[0] for r in rows_of(job, _media, split)}

    train, test = dialogues("train"), dialogues("test")
    assert len(train | test) == 40 and train and test  # both splits used
    assert train.isdisjoint(test), sorted(train & test)
    assert sum(len(rows_of(job, _media, split)) for split in ("train", "test")) == 80


@pytest.mark.parametrize("file_format", ["jsonl", "parquet"])
def test_the_same_filters_twice_give_byte_identical_files_and_checksums(
    project, maya, judged, round_, _media, file_format
):
    from tests.factories import annotators, bulk_judged

    bulk_judged(round_, 200, annotators(2, "repro"))
    options = {"rows_per_shard": 30}
    first = run(project, maya, "dpo", file_format=file_format, filters={"test_fraction": 0.2}, options=options)
    second = run(project, maya, "dpo", file_format=file_format, filters={"test_fraction": 0.2}, options=options)
    a, b = files_of(first, _media), files_of(second, _media)
    assert set(a) == set(b) and len([n for n in a if n.startswith("data/")]) >= 3
    for name in a:
        assert a[name].read_bytes() == b[name].read_bytes(), name
    assert [(x.name, x.sha256, x.size) for x in first.artifacts.all()] == [
        (x.name, x.sha256, x.size) for x in second.artifacts.all()
    ]


def test_the_manifest_lists_every_file_with_its_sha256_and_the_source_state(project, maya, judged, _media):
    job = run(project, maya, "reward_model", options={"margin": "large"}, filters={"test_fraction": 0.5})
    files = files_of(job, _media)
    manifest = json.loads(files["manifest.json"].read_text())
    listed = {f["name"]: f for f in manifest["files"]}
    assert set(listed) == set(files) - {"manifest.json"}
    for name, entry in listed.items():
        data = files[name].read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["size"] == len(data)
    assert manifest["source"]["max_judgment_id"] == max(j.pk for c in judged.values() for j in c.judgments.all())
    assert [c["name"] for c in manifest["schema"]][:5] == ["id", "prompt", "chosen", "rejected", "margin"]
    assert manifest["margin_table"] == {"significantly": 3.0, "better": 2.0, "slightly": 1.0, "negligibly": 0.0}
    assert sum(manifest["rows"].values()) == job.rows_total
    card = files["README.md"].read_text()
    assert "| `margin` | `double` |" in card
    assert all(f"| {split} | {n} |" in card for split, n in manifest["rows"].items())
    artifact = job.artifacts.get(name="manifest.json")
    assert artifact.sha256 == hashlib.sha256(files["manifest.json"].read_bytes()).hexdigest()


def test_an_export_with_no_rows_still_writes_a_schema_file(project, maya, round_, _media):
    job = run(project, maya, "dpo", filters={"test_fraction": 0})
    assert job.rows_total == 0
    data = job.artifacts.get(role="data")
    assert data.name == "data/train-00000-of-00001.parquet" and data.rows == 0
    assert pq.read_table(_media / data.storage_name).schema.names[:4] == ["id", "prompt", "chosen", "rejected"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"filters": {"min_strength": "huge"}}, "filters.min_strength"),
        ({"filters": {"rounds": [9]}}, "filters.rounds"),
        ({"filters": {"test_fraction": 0.9}}, "filters.test_fraction"),
        ({"filters": {"colour": "red"}}, "filters.colour"),
        ({"filters": {"exclude_annotators": ["nobody"]}}, "filters.exclude_annotators"),
        ({"kind": "dpo", "options": {"margin": "small"}}, "options.margin"),
        ({"options": {"rows_per_shard": 0}}, "options.rows_per_shard"),
        ({"kind": "ppo"}, "kind"),
        ({"file_format": "csv"}, "file_format"),
    ],
)
def test_bad_requests_are_refused_field_by_field(project, maya, round_, kwargs, field):
    kwargs = {"kind": "reward_model", **kwargs}
    with pytest.raises(ValidationError) as caught:
        export_job_create(project=project, created_by=maya, **kwargs)
    assert field in caught.value.message_dict
    assert not ExportJob.objects.exists()


def test_cancelling_a_running_job_stops_it_at_the_next_batch_and_leaves_no_files(
    project, maya, judged, _media, monkeypatch
):
    from rlhf_export import services

    job = export_job_create(project=project, kind="dpo", created_by=maya)
    real = services._still_ours

    def cancel_midway(job_, **fields):
        if fields.get("judgments_done"):
            export_job_cancel(job=ExportJob.objects.get(pk=job_.pk))
        return real(job_, **fields)

    monkeypatch.setattr(services, "_still_ours", cancel_midway)
    monkeypatch.setattr(services.settings, "EXPORT_BATCH_SIZE", 2, raising=False)
    assert export_job_run(job_id=job.pk) == RunOutcome.CANCELLED
    job.refresh_from_db()
    assert job.status == ExportStatus.CANCELLED and not job.artifacts.exists()
    assert not (_media / job.storage_prefix).exists()
    with pytest.raises(ValidationError):
        export_job_cancel(job=job)


def test_a_job_is_claimed_once_a_second_delivery_does_nothing(project, maya, judged):
    job = export_job_create(project=project, kind="dpo", created_by=maya)
    assert export_job_run(job_id=job.pk) == RunOutcome.SUCCEEDED
    assert export_job_run(job_id=job.pk) == RunOutcome.SKIPPED
    job.refresh_from_db()
    assert job.attempt == 1


def test_a_running_job_with_a_fresh_heartbeat_is_left_to_its_worker(project, maya, judged, settings):
    from django.utils import timezone

    job = export_job_create(project=project, kind="dpo", created_by=maya)
    ExportJob.objects.filter(pk=job.pk).update(status=ExportStatus.RUNNING, attempt=1, heartbeat_at=timezone.now())
    assert export_job_run(job_id=job.pk) == RunOutcome.BUSY
    settings.EXPORT_STALE_SECONDS = 1
    ExportJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timezone.timedelta(seconds=5))
    assert export_job_run(job_id=job.pk) == RunOutcome.SUCCEEDED
    job.refresh_from_db()
    assert job.attempt == 2


def test_an_unexpected_error_fails_the_job_with_its_message(project, maya, judged, monkeypatch, _media):
    from rlhf_export import services

    job = export_job_create(project=project, kind="dpo", created_by=maya)

    def broken(*args, **kwargs):
        raise ValueError("disk says no")

    monkeypatch.setattr(services, "sha256_of", broken)
    assert export_job_run(job_id=job.pk) == RunOutcome.FAILED
    job.refresh_from_db()
    assert job.status == ExportStatus.FAILED and "disk says no" in job.error
    assert not (_media / job.storage_prefix).exists()


def test_the_task_retries_temporary_database_errors(project, maya, judged, monkeypatch):
    from celery.exceptions import Retry
    from django.db import OperationalError

    from rlhf_export import services, tasks

    job = export_job_create(project=project, kind="dpo", created_by=maya)
    monkeypatch.setattr(services, "source_count", lambda query: (_ for _ in ()).throw(OperationalError("gone")))
    with pytest.raises(Retry):
        tasks.export_job_run_task.apply(args=[job.pk], throw=True)
    job.refresh_from_db()
    assert job.status == ExportStatus.PENDING  # handed back for the retry


def test_exports_go_to_any_django_storage_like_s3(project, maya, judged, settings, tmp_path):
    """A storage without local paths (S3 through django-storages; here Django's in-memory
    one) gets each finished file uploaded under its final name; downloads redirect."""
    from django.core.files.storage import storages

    from tests.conftest import token_client

    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"}}
    job = run(project, maya, "dpo", file_format="jsonl", filters={"test_fraction": 0})
    storage = storages["default"]
    for artifact in job.artifacts.all():
        with storage.open(artifact.storage_name, "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == artifact.sha256
    assert not list((tmp_path / "work").rglob("*.partial"))  # the local work files are gone
    response = token_client(maya).get(f"/api/v1/exports/{job.pk}/files/manifest.json")
    assert response.status_code == 302 and response["Location"].endswith(f"{job.storage_prefix}/manifest.json")


def test_annotators_the_quality_checks_flag_are_left_out(project, maya, round_, raters, _media):
    """The real quality checks (annotation.stats.quality): an annotator who misses most
    gold items is flagged, and ``exclude_flagged_annotators`` drops all of their judgments."""
    from insights.reports import flagged_annotator_ids
    from tests.factories import Vote, comparison_make

    careless, careful = raters[0], raters[1]
    for i in range(12):
        comparison_make(
            round_,
            f"Gold question {i}?",
            f"Right answer {i}.",
            f"Wrong answer {i}.",
            [Vote(careless, "B", "better"), Vote(careful, "A", "better")],
            is_gold=True,
        )
    assert flagged_annotator_ids(project=project) == {careless.pk}
    job = run(project, maya, "raw", filters={"test_fraction": 0, "exclude_flagged_annotators": True})
    assert {r["annotator_id"] for r in rows_of(job, _media)} == {careful.pk}
    assert job.source_state["flagged_annotator_ids"] == [careless.pk]


def test_judgments_stream_in_fixed_size_batches_with_progress_after_each(project, maya, round_, settings, monkeypatch):
    from rlhf_export import services
    from tests.factories import annotators, bulk_judged

    total = bulk_judged(round_, 40, annotators(2, "streamer"))
    settings.EXPORT_BATCH_SIZE = 7
    progress: list[int] = []
    real = services._still_ours

    def spy(job_, **fields):
        if "judgments_done" in fields and "judgments_total" not in fields:
            progress.append(fields["judgments_done"])
        return real(job_, **fields)

    monkeypatch.setattr(services, "_still_ours", spy)
    job = run(project, maya, "raw", filters={"drop_cant_judge": False})
    assert job.judgments_total == total == 80
    assert progress == list(range(7, 80, 7)) + [80]  # one update per batch of 7, the last one short
