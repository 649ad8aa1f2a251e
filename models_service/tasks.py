"""Celery tasks of the models service, routed to the ``gpu`` queue (settings:
``CELERY_TASK_ROUTES``). Thin and idempotent (docs/style.md): they take ids and call one
service. Samples are unique per (prompt, version, seed), so running a job twice only
fills in what is missing.

- A temporary database error: the task retries with backoff and resumes the job.
- A duplicate delivery while a live worker holds the job: nothing to do now; it checks
  again once a heartbeat would be stale (``SAMPLING_STALE_SECONDS``), and takes the job
  over if that worker died (acks_late re-delivers the tasks of a killed worker).
"""

from __future__ import annotations

import logging
import random

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from core.tasks import requeue_once
from models_service import sampling
from models_service.models import JobStatus, SamplingJob

logger = logging.getLogger(__name__)


@shared_task(bind=True, name="models_service.tasks.sample_job", acks_late=True, max_retries=8)
def sample_job(self, job_id: int) -> dict[str, int] | None:
    """Sample one arm of a round (one model version, one seed): every prompt missing an answer."""
    try:
        job = sampling.sampling_job_run(job_id=job_id, resume=self.request.retries > 0)
    except (OperationalError, InterfaceError) as exc:
        delay = min(300, 5 * 2**self.request.retries)
        raise self.retry(exc=exc, countdown=delay / 2 + random.uniform(0, delay / 2)) from exc
    if job is None:
        held = SamplingJob.objects.filter(pk=job_id, status=JobStatus.RUNNING).exists()
        if held and not self.request.is_eager:
            raise self.retry(countdown=settings.SAMPLING_STALE_SECONDS, max_retries=None)
        return None
    return {"job": job.pk, "total": job.total, "sampled": job.sampled, "failed": job.failed}


# Per run of the sweeper; more are picked up by the next runs.
REQUEUE_BATCH = 100


@shared_task(name="models_service.tasks.requeue_abandoned_sampling", ignore_result=True)
def requeue_abandoned_sampling() -> int:
    """Celery beat, every ``JOB_SWEEP_SECONDS``, on the ``default`` queue (its own route):
    queue again the sampling jobs no task will run - running jobs whose heartbeat is
    older than ``SAMPLING_STALE_SECONDS`` (the worker died; at most once per that
    window), jobs whose queueing failed (the broker was down; queued as soon as it
    answers) and jobs queued longer than ``JOB_PENDING_REQUEUE_SECONDS`` ago (the message
    was lost; at most once per that window). A duplicate delivery only fills in what is
    missing, so it is harmless."""

    def queue(job_id: int) -> bool:
        return bool(sampling._queue([job_id]))

    stale = requeue_once(
        queue,
        sampling.sampling_jobs_stale(limit=REQUEUE_BATCH),
        kind="sampling",
        window=settings.SAMPLING_STALE_SECONDS,
        log=logger,
    )
    waiting = requeue_once(
        queue,
        sampling.sampling_jobs_waiting(limit=REQUEUE_BATCH),
        kind="sampling-pending",
        window=settings.JOB_PENDING_REQUEUE_SECONDS,
        log=logger,
    )
    return stale + waiting
