"""The Celery app. Queues: ``default`` (exports, statistics) and ``gpu`` (sampling, later training).

Without REDIS_URL the tasks run eagerly in the calling process (the embedded default);
the code path is the same either way.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("prefdata")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def requeue_once(task, job_ids, *, kind: str, window: int, log) -> int:
    """Queue ``task`` again for each job that no task will run (the periodic sweepers of
    exports and sampling), at most once per ``window`` seconds per job: a duplicate
    delivery is harmless (the jobs' claims are conditional) but need not pile up."""
    from django.core.cache import cache

    queued = 0
    for job_id in job_ids:
        if cache.add(f"{kind}-requeued:{job_id}", 1, window):
            log.warning("%s job %s: no task is running it; queued again", kind, job_id)
            task.delay(job_id)
            queued += 1
    return queued
