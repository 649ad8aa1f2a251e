"""Celery task (queue ``default``): thin and idempotent (docs/style.md).

It passes the job id to ``services.export_job_run``, which claims the job with a
conditional update: a duplicate delivery finds the job taken and does nothing, a
re-delivery after a killed worker (``acks_late`` + ``reject_on_worker_lost``) finds
its heartbeat and retries until the heartbeat is stale, then takes the job over.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from core.tasks import requeue_once
from rlhf_export import services

logger = logging.getLogger(__name__)

MAX_RETRIES = 8


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=MAX_RETRIES)
def export_job_run_task(self, job_id: int) -> str:
    try:
        outcome = services.export_job_run(job_id=job_id)
    except services.TEMPORARY_ERRORS as exc:
        if self.request.retries >= self.max_retries:
            services.export_job_fail(job_id=job_id, error=f"gave up after {self.max_retries} retries: {exc}")
            return services.RunOutcome.FAILED
        logger.warning("export %s: temporary error, retrying: %s", job_id, exc)
        raise self.retry(exc=exc, countdown=min(300, 5 * 2**self.request.retries)) from exc
    if outcome == services.RunOutcome.BUSY:
        # Another worker holds the job, or one died and its heartbeat is not stale yet.
        if self.request.retries >= self.max_retries:
            return outcome
        stale = settings.EXPORT_STALE_SECONDS
        raise self.retry(countdown=max(1, stale // 2 + 1))
    return outcome


# Per run of the sweeper; more are picked up by the next runs.
REQUEUE_BATCH = 100


@shared_task(name="rlhf_export.tasks.requeue_abandoned_exports", ignore_result=True)
def requeue_abandoned_exports() -> int:
    """Celery beat, every ``JOB_SWEEP_SECONDS``: queue again the jobs that no task will run.

    - Running jobs whose heartbeat is older than ``EXPORT_STALE_SECONDS``: the worker
      died (a SIGKILL, a lost machine). The re-delivery of a killed pool process's task
      (acks_late) may get there first; a worker killed as a whole leaves its message
      unacknowledged until the broker's visibility timeout (hours), so this is what
      takes such a job over. At most once per ``EXPORT_STALE_SECONDS`` per job.
    - Pending jobs whose queueing failed (the broker was down when they were created):
      queued as soon as the broker answers, which it does when this task runs.
    - Pending jobs queued longer than ``JOB_PENDING_REQUEUE_SECONDS`` ago: the message
      may be lost (Redis restarted without persistence). At most once per that window.

    A duplicate delivery is harmless (the claim is conditional).
    """

    def queue(job_id: int) -> bool:
        return services.export_job_queue(job_id=job_id)

    stale = requeue_once(
        queue,
        services.export_jobs_stale(limit=REQUEUE_BATCH),
        kind="export",
        window=settings.EXPORT_STALE_SECONDS,
        log=logger,
    )
    waiting = requeue_once(
        queue,
        services.export_jobs_waiting(limit=REQUEUE_BATCH),
        kind="export-pending",
        window=settings.JOB_PENDING_REQUEUE_SECONDS,
        log=logger,
    )
    return stale + waiting
