"""A worker killed in the middle of an export: the job is retried and completes, no
partial file is ever visible under a final name, and the final files equal, byte for
byte, those of an uninterrupted run.

A real Celery worker (prefork, one child) runs against this test's PostgreSQL database
and a Redis broker. The test holds a row lock on the job once some batches are done, so
the worker is caught mid-export (blocked on its next progress update), SIGKILLs the
worker's child, and lets go. ``acks_late`` + ``reject_on_worker_lost`` hand the message
back; the task finds the dead attempt's heartbeat, retries until it is stale, takes
the job over and writes everything again from the pinned snapshot.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import pytest
from django.db import connection

from rlhf_export.models import ExportJob, ExportStatus
from rlhf_export.schemas import ExportFilters, ExportOptions
from rlhf_export.services import RunOutcome, export_job_run
from tests.celery_worker import REDIS_URL, celery_worker, worker_env
from tests.factories import annotators, bulk_judged

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not REDIS_URL, reason="needs Redis for a real Celery worker: set REDIS_URL=redis://... (CI does)"
    ),
]

FILTERS = {"aggregation": "none", "deduplicate": False, "test_fraction": 0.2, "drop_ties": True}
OPTIONS = {"rows_per_shard": 700}


def job_make(project, user) -> ExportJob:
    """A pending job, made without queueing its task (the worker gets it explicitly)."""
    job = ExportJob.objects.create(
        project=project,
        kind="dpo",
        file_format="parquet",
        text_format="conversational",
        created_by=user,
        filters=ExportFilters.model_validate(FILTERS).model_dump(mode="json"),
        options=ExportOptions.model_validate(OPTIONS).model_dump(mode="json"),
    )
    job.storage_prefix = f"exports/job-{job.pk}"
    job.save(update_fields=["storage_prefix"])
    return job


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes. The worker may delete a dead attempt's
    ``.partial-*`` folder while this walks it: what vanishes meanwhile is left out."""
    files: dict[str, bytes] = {}
    for folder, _dirs, names in os.walk(root):  # os.walk skips folders that vanish
        for name in names:
            path = Path(folder) / name
            try:
                files[str(path.relative_to(root))] = path.read_bytes()
            except FileNotFoundError:
                continue
    return dict(sorted(files.items()))


def children(pid: int) -> list[int]:
    import psutil

    return [child.pid for child in psutil.Process(pid).children(recursive=True)]


def test_a_worker_killed_mid_export_is_retried_and_writes_the_same_files(project, round_, maya, _media):
    bulk_judged(round_, 1500, annotators(2))
    reference = job_make(project, maya)
    assert export_job_run(job_id=reference.pk) == RunOutcome.SUCCEEDED
    expected = tree(_media / reference.storage_prefix)
    assert len([name for name in expected if name.startswith("data/")]) >= 3  # several shards, both splits

    job = job_make(project, maya)
    job_dir = _media / job.storage_prefix
    queue = f"export-test-{uuid.uuid4().hex[:8]}"  # other test runs may share the broker
    env = worker_env(drop=("EXPORT_",), MEDIA_ROOT=str(_media), EXPORT_BATCH_SIZE="10", EXPORT_STALE_SECONDS="2")
    with celery_worker(queue, env) as worker:
        from celery import Celery

        broker = Celery(broker=REDIS_URL, set_as_current=False)  # the project's app stays current
        broker.send_task("rlhf_export.tasks.export_job_run_task", args=[job.pk], queue=queue)
        seen_final: set[str] = set()

        def check_final_names() -> None:
            # Whatever sits under a final name is whole: the bytes of the finished export.
            for name, data in tree(job_dir).items() if job_dir.exists() else ():
                if not name.startswith(".partial"):
                    assert data == expected[name], f"{name} is visible but not complete"
                    seen_final.add(name)

        deadline = time.monotonic() + 90
        job.refresh_from_db()
        while not (job.status == ExportStatus.RUNNING and 0 < job.judgments_done < job.judgments_total / 2):
            assert job.status in (ExportStatus.PENDING, ExportStatus.RUNNING), job.status
            assert time.monotonic() < deadline, "the worker never started the export"
            check_final_names()
            time.sleep(0.01)
            job.refresh_from_db()

        # Hold the job's row: the worker blocks on its next progress update, mid-export.
        with connection.cursor() as lock:
            lock.execute("BEGIN")
            lock.execute(f"SELECT id FROM {ExportJob._meta.db_table} WHERE id = %s FOR UPDATE", [job.pk])
            time.sleep(0.5)
            partial = [p for p in job_dir.rglob("*.partial")]
            assert partial, "the worker had written nothing yet"
            assert not (job_dir / "data").exists() and not (job_dir / "manifest.json").exists()
            busy = children(worker.process.pid)
            assert busy, "no pool process to kill"
            for pid in busy:
                os.kill(pid, signal.SIGKILL)
            lock.execute("COMMIT")

        while True:
            job.refresh_from_db()
            check_final_names()
            if job.status not in (ExportStatus.RUNNING, ExportStatus.PENDING):
                break
            assert time.monotonic() < deadline, f"the job was not retried to the end ({job.status})"
            time.sleep(0.05)
        assert job.status == ExportStatus.SUCCEEDED, job.error
        assert job.attempt >= 2
    output = worker.output
    assert "WorkerLostError" in output or "SIGKILL" in output or "signal 9" in output, output[-3000:]

    assert tree(job_dir) == expected  # same names, same bytes; nothing partial left behind
    assert {a.sha256 for a in job.artifacts.all()} == {a.sha256 for a in reference.artifacts.all()}
