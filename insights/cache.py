"""The dashboards' cache: every report is stored under what was asked, with the
fingerprint of its project's data at the time.

The fingerprint of a project is the sum of the change counters of its annotators
(``ProjectActivity``, kept by the database's triggers) plus its prompts' change counter
(``PromptActivity``): any judgment or edit written, changed or deleted in the project
moves it, as does a prompt retagged, and nothing that happens in another project does. So nothing has to remember to invalidate an entry, and a busy project never makes a
quiet one recompute. Changes that touch no judgment - a changed gold answer - show when
the next judgment arrives or the entry expires (``CACHE_SECONDS``).

A stale entry that was quick to compute is recomputed at once; one that was slow is
served while it is recomputed off the request path: by a Celery task on the ``default``
queue when a broker is configured (the web processes keep their CPU for annotators), by a
small pool of threads in the embedded set-up.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time as clock
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from celery import current_app
from django.conf import settings
from django.core.cache import cache
from django.db import connection

from core.cache import cache_is_down

logger = logging.getLogger(__name__)

CACHE_SECONDS = 3600  # entries are also checked against the data on every read
CACHE_VERSION = 3
SLOW_SECONDS = 0.5
REFRESH_LOCK_SECONDS = 600
# A project with this many judgments may take seconds to compute from scratch (with
# filters, which read judgments rather than tallies): a page shows placeholders meanwhile.
BIG_PROJECT_JUDGMENTS = 200_000

# kind -> the function that computes a report of that kind from plain (JSON) arguments.
RECIPES: dict[str, Callable[..., Any]] = {}


def recipe(kind: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a report's computation under ``kind`` (for ``Recipe`` and the Celery task)."""

    def register(function: Callable[..., Any]) -> Callable[..., Any]:
        RECIPES[kind] = function
        return function

    return register


@dataclass(frozen=True)
class Recipe:
    """A report's computation as plain values (kind and JSON arguments), so that a Celery
    worker can run it; calling it computes the report here."""

    kind: str
    args: dict[str, Any]

    def __call__(self) -> Any:
        return RECIPES[self.kind](**self.args)


@dataclass
class _Entry:
    fingerprint: int
    value: Any
    seconds: float  # how long computing it took
    computed_at: float


def project_fingerprint(project_id: int) -> int:
    """A number that changes whenever a judgment or edit of the project is written,
    changed or deleted, or one of its prompts changes its tags or turns (one index range
    of ``insights_projectactivity``, one row of ``insights_promptactivity``)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COALESCE((SELECT SUM(changes) FROM insights_projectactivity WHERE project_id = %s), 0) "
            "+ COALESCE((SELECT changes FROM insights_promptactivity WHERE project_id = %s), 0)",
            [project_id, project_id],
        )
        return int(cursor.fetchone()[0])


def prompt_changes(project_id: int) -> int:
    """How many times the project's prompts changed their tags or turns."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT changes FROM insights_promptactivity WHERE project_id = %s", [project_id])
        row = cursor.fetchone()
        return int(row[0]) if row else 0


def big_project(project_id: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COALESCE(SUM(judgments), 0) FROM insights_projectactivity WHERE project_id = %s", [project_id]
        )
        return int(cursor.fetchone()[0]) >= BIG_PROJECT_JUDGMENTS


class Pending(Exception):
    """The report is being computed in the background: ask again in a moment."""


# In the embedded set-up (no broker) refreshes run on a small pool of this process's
# threads, first come first served: a page asks for its sections top to bottom, so the
# quick numbers (win rates from the tallies) are not kept waiting behind slow ones.
BACKGROUND_THREADS = 2
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_running: set[Future[None]] = set()


def _refresh_in_background(key: str, compute: Recipe, fingerprint: int) -> None:
    """Recompute a stale entry off the request path (one refresh per key at a time): a
    Celery task where there is a real broker, else on this process's refresh threads."""
    global _pool  # noqa: PLW0603 - the pool is made on first use, in the process that needs it
    if not settings.CELERY_TASK_ALWAYS_EAGER:
        try:
            current_app.send_task(
                "insights.tasks.dashboard_refresh", args=[key, compute.kind, compute.args, fingerprint], queue="default"
            )
            return
        except Exception as exc:  # any failure to publish: the broker is unreachable
            # The page still gets its numbers: this process computes them, as without a broker.
            logger.warning("dashboard refresh: the broker is unreachable (%s); computing in the web process", exc)

    def run() -> None:
        try:
            refresh(key, compute, fingerprint)
        finally:
            connection.close()  # this thread's own connection

    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=BACKGROUND_THREADS, thread_name_prefix="dashboard-refresh")
        future = _pool.submit(run)
        _running.add(future)
    future.add_done_callback(_running.discard)


def background_settle(timeout: float | None = None) -> None:
    """Wait until this process's background refreshes are done (benchmarks and tests)."""
    wait(list(_running), timeout=timeout)


def refresh(key: str, compute: Callable[[], Any], fingerprint: int) -> None:
    """Compute and store one entry, then let the next stale read start another refresh."""
    try:
        _store(key, compute, fingerprint)
    finally:
        cache.delete(key + ":refreshing")


def _store(key: str, compute: Callable[[], Any], fingerprint: int) -> Any:
    started = clock.perf_counter()
    value = compute()
    cache.set(key, _Entry(fingerprint, value, clock.perf_counter() - started, clock.time()), CACHE_SECONDS)
    return value


def cached(
    kind: str,
    project_id: int,
    parts: Sequence[Any],
    compute: Recipe,
    *,
    wait: bool = True,
    fingerprint: int | None = None,
) -> Any:
    """``compute()``, cached under (kind, project, parts) and checked against the project's
    fingerprint (or the one given).

    A fresh entry (same fingerprint) is served as it is. A stale one is recomputed on the
    spot when that was quick (under ``SLOW_SECONDS`` last time), so small projects always
    show the latest judgment. When it was slow, the stale numbers are served at once and
    recomputed in the background; the next request gets the new ones. A key never
    computed before makes the request wait - or, with ``wait=False`` on a big project,
    starts the computation in the background and raises ``Pending`` so that a page can
    show a placeholder that polls.
    """
    raw = json.dumps([CACHE_VERSION, kind, project_id, *parts], default=str, separators=(",", ":"))
    key = "dash:" + hashlib.sha256(raw.encode()).hexdigest()[:40]
    current = project_fingerprint(project_id) if fingerprint is None else fingerprint
    entry = cache.get(key)
    if entry is None and cache_is_down():
        # Redis is away (core/cache.py): a background refresh could store nothing and a
        # page would poll for ever, so the numbers are computed for this request.
        return compute()
    if isinstance(entry, _Entry):
        if entry.fingerprint == current:
            return entry.value
        if entry.seconds >= SLOW_SECONDS:
            if cache.add(key + ":refreshing", 1, REFRESH_LOCK_SECONDS):
                _refresh_in_background(key, compute, current)
            return entry.value
    elif not wait and big_project(project_id):
        if cache.add(key + ":refreshing", 1, REFRESH_LOCK_SECONDS):
            _refresh_in_background(key, compute, current)
        raise Pending(kind)
    return _store(key, compute, current)
