"""The sweeper queues again the export jobs no task will run (lost message, dead worker)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings as django_settings
from django.core.cache import cache
from django.utils import timezone

from rlhf_export.models import ExportJob, ExportStatus
from rlhf_export.services import export_job_create
from rlhf_export.tasks import requeue_abandoned_exports


def test_a_job_whose_worker_died_for_good_is_queued_again_and_completes(project, maya, judged, settings):
    cache.clear()
    settings.EXPORT_STALE_SECONDS = 60
    job = export_job_create(project=project, kind="dpo", created_by=maya)
    # A worker claimed it and died; its message is gone, so nothing would ever run it.
    long_ago = timezone.now() - timedelta(seconds=120)
    ExportJob.objects.filter(pk=job.pk).update(status=ExportStatus.RUNNING, attempt=1, heartbeat_at=long_ago)

    assert requeue_abandoned_exports() == 1  # eager Celery: the re-queued task runs here
    job.refresh_from_db()
    assert job.status == ExportStatus.SUCCEEDED, job.error
    assert job.attempt == 2 and job.rows_total > 0
    assert requeue_abandoned_exports() == 0


def test_a_pending_job_whose_message_was_lost_is_queued_again_once_per_requeue_window(
    project, maya, judged, settings, monkeypatch
):
    from rlhf_export import tasks

    cache.clear()
    settings.JOB_PENDING_REQUEUE_SECONDS = 60
    queued: list[int] = []
    monkeypatch.setattr(tasks.export_job_run_task, "delay", queued.append)
    job = export_job_create(project=project, kind="dpo", created_by=maya)
    fresh = export_job_create(project=project, kind="sft", created_by=maya)
    ExportJob.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(seconds=120))

    assert requeue_abandoned_exports() == 1
    assert queued == [job.pk]  # the fresh one is still in the queue: left alone
    assert requeue_abandoned_exports() == 0  # not again until the window passes
    assert queued == [job.pk] and fresh.pk not in queued


def test_jobs_with_a_live_worker_or_finished_are_left_alone(project, maya, judged, settings, monkeypatch):
    from rlhf_export import tasks

    cache.clear()
    settings.EXPORT_STALE_SECONDS = 60
    queued: list[int] = []
    monkeypatch.setattr(tasks.export_job_run_task, "delay", queued.append)
    old = timezone.now() - timedelta(seconds=600)
    running = export_job_create(project=project, kind="dpo", created_by=maya)
    ExportJob.objects.filter(pk=running.pk).update(
        status=ExportStatus.RUNNING, created_at=old, heartbeat_at=timezone.now()
    )
    for status in (ExportStatus.SUCCEEDED, ExportStatus.FAILED, ExportStatus.CANCELLED):
        done = export_job_create(project=project, kind="dpo", created_by=maya)
        ExportJob.objects.filter(pk=done.pk).update(status=status, created_at=old, heartbeat_at=old)

    assert requeue_abandoned_exports() == 0 and queued == []


def test_the_sweeper_is_scheduled_every_few_seconds_on_the_default_queue():
    entry = django_settings.CELERY_BEAT_SCHEDULE["requeue-abandoned-exports"]
    assert entry["task"] == requeue_abandoned_exports.name
    assert entry["schedule"] == django_settings.JOB_SWEEP_SECONDS < django_settings.EXPORT_STALE_SECONDS
    assert entry["options"]["queue"] == "default"
