"""Helpers for Celery tasks shared by the apps."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.core.cache import cache


def requeue_once(task: Any, job_ids: Iterable[int], *, kind: str, window: int, log: logging.Logger) -> int:
    """Queue ``task`` again for each job that no task will run (the periodic sweepers of
    exports and sampling), at most once per ``window`` seconds per job: a duplicate
    delivery is harmless (the jobs' claims are conditional) but need not pile up."""
    queued = 0
    for job_id in job_ids:
        if cache.add(f"{kind}-requeued:{job_id}", 1, window):
            log.warning("%s job %s: no task is running it; queued again", kind, job_id)
            task.delay(job_id)
            queued += 1
    return queued
