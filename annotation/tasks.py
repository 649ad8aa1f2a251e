"""Celery tasks of the annotation app (queue ``default``).

- ``reclaim_expired_leases`` (beat): claims reclaim expired leases lazily
  (``assignment_next``), which is enough while annotators keep asking for work. This task
  also frees the slots of annotators who closed their tab when nobody else is asking, so
  progress counts and the "being judged right now" message stay true on a quiet project.
"""

from __future__ import annotations

from celery import shared_task

from annotation.assignment import assignments_reclaim_expired

# Per run; a backlog bigger than this is drained over the next runs (every 30 s).
RECLAIM_BATCH = 1000


@shared_task(name="annotation.tasks.reclaim_expired_leases", ignore_result=True)
def reclaim_expired_leases() -> int:
    return assignments_reclaim_expired(limit=RECLAIM_BATCH)
