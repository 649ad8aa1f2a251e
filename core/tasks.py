"""Helpers for Celery tasks shared by the apps: queueing that survives a broker outage,
the sweepers' re-queue guard, and a job's heartbeat thread.

Recovery of a job whose worker was killed (docs/architecture.md, "Processes and
queues"): a running job beats its heartbeat every third of its stale threshold
(``EXPORT_STALE_SECONDS``, ``SAMPLING_STALE_SECONDS``) from a thread of its own, so a
long batch (a model loading, a slow generation, a big shard upload) never looks dead;
once the heartbeat is older than the threshold the periodic sweeper (every
``JOB_SWEEP_SECONDS``) queues the job again and the new delivery takes it over. The
measured time from SIGKILL to takeover is in docs/BENCHMARKS.md (bench/recovery_bench.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connections
from kombu.exceptions import OperationalError as BrokerUnreachable

logger = logging.getLogger(__name__)

# Shown on a job that could not be queued (its ``error`` while it is pending); the claim
# of the job clears it. The sweepers queue such jobs again as soon as the broker answers.
QUEUE_UNREACHABLE = "Waiting: the task queue is unreachable; the job starts when it is back."

_LOG_EVERY_SECONDS = 60.0
_last_logged = -_LOG_EVERY_SECONDS


def task_queue(task: Any, *args: Any) -> bool:
    """``task.delay(*args)``, but False (and a warning, at most once a minute) when the
    broker cannot be reached, instead of an exception in the user's request. Celery gives
    up on an unreachable Redis after its publish retries (under a second when the port is
    closed; the socket timeouts in ``CELERY_BROKER_TRANSPORT_OPTIONS`` bound the rest)."""
    global _last_logged  # noqa: PLW0603 - one process-wide rate limit for the warning
    try:
        task.delay(*args)
    except BrokerUnreachable as exc:
        now = time.monotonic()
        if now - _last_logged >= _LOG_EVERY_SECONDS:
            _last_logged = now
            logger.warning("%s%s not queued: the broker is unreachable (%s)", getattr(task, "name", task), args, exc)
        return False
    return True


def requeue_once(
    queue: Callable[[int], bool], job_ids: Iterable[int], *, kind: str, window: int, log: logging.Logger
) -> int:
    """Queue again each job that no task will run (the periodic sweepers of exports and
    sampling), at most once per ``window`` seconds per job and ``kind``: a duplicate
    delivery is harmless (the jobs' claims are conditional) but need not pile up.
    ``queue`` returns False when the broker is unreachable: the guard is dropped and the
    sweep stops, the next one tries again. With the cache down the guard holds per
    process (``core/cache.py``, ``add``)."""
    queued = 0
    for job_id in job_ids:
        guard = f"{kind}-requeued:{job_id}"
        if not cache.add(guard, 1, window):
            continue
        if not queue(job_id):
            cache.delete(guard)
            break
        log.warning("%s job %s: no task is running it; queued again", kind, job_id)
        queued += 1
    return queued


def heartbeat_every(stale_seconds: int) -> float:
    """Seconds between heartbeats of a job taken over after ``stale_seconds`` of silence:
    three beats may be missed (a slow database) before the job looks dead. 0 (no thread)
    in the embedded set-up: tasks run in the process that queued them, there is no
    worker to lose and no sweeper."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return 0.0
    return stale_seconds / 3


class Heartbeat:
    """A thread that calls ``beat`` every ``every`` seconds while the block runs.

    ``beat`` is the job's conditional heartbeat update (still running, same attempt); it
    returns False once the job is no longer ours (cancelled, taken over) and the thread
    stops - the job's own next conditional update finds out and stops the work. An error
    in ``beat`` (the database away for a moment) is logged and the next beat tries again.
    With ``every`` 0 nothing is started. The thread uses its own database connection and
    closes it when it stops."""

    def __init__(self, beat: Callable[[], bool], *, every: float, name: str) -> None:
        self.beat = beat
        self.every = every
        self.name = name
        self.beats = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Heartbeat:
        if self.every > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"heartbeat-{self.name}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            # A beat waiting on a row lock (the job's final update) ends with that update.
            self._thread.join(timeout=self.every + 10)

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.every):
                try:
                    if not self.beat():
                        return
                    self.beats += 1
                except Exception:
                    logger.warning("%s: heartbeat failed; trying again in %.0f s", self.name, self.every, exc_info=True)
        finally:
            connections.close_all()  # this thread's connections only
