"""What /healthz reports (``core/views.py``): the database, the cache, the Celery broker
and the workers, each on its own, and whether the ones the deployment needs answer.

Each check says ``ok``, ``down`` (with the error's class name, never its message: the
page is public), ``off`` (not part of this set-up: a local-memory cache without
``REDIS_URL``, tasks run in-process) or, for the workers while the broker is down,
``unknown``. The answer is 503 when a *required* check is down or unknown, else 200;
``status`` is ``ok``, ``degraded`` (something not required is down) or ``error``.

Which checks are required: ``HEALTHZ_REQUIRE`` (settings: the database, plus the cache
when ``REDIS_URL`` is set and the broker when tasks do not run in-process), or the
``require`` query parameter, which replaces it for that request. The workers are
reported but required only when asked: the web container's own health check
(docker/healthcheck.py) asks ``?require=database``, because restarting the web
container mends neither Redis nor a worker, and annotation goes on without them.

It is polled every few seconds, so every check is cheap: one ``SELECT 1``, one Redis
PING with the cache's socket timeouts (none while the cache's breaker is open: a Redis
that just failed is reported down at no cost), one broker connection with the broker's
timeouts (``CELERY_BROKER_TRANSPORT_OPTIONS``), and a
worker broadcast (``WORKERS_TIMEOUT``) whose answer each process keeps for
``WORKERS_CACHE_SECONDS``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection
from typing import Any

from celery import current_app
from django.conf import settings
from django.core.cache import caches
from django.db import DatabaseError, connection

from core.cache import FailSoftRedisCache

logger = logging.getLogger(__name__)

CHECKS = ("database", "cache", "broker", "workers")
WORKERS_TIMEOUT = 0.5
WORKERS_CACHE_SECONDS = 10.0
BROKER_TIMEOUT = 1.0

Check = dict[str, Any]


def database_check() -> Check:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        logger.warning("healthz: the database did not answer: %s: %s", type(exc).__name__, exc)
        return {"status": "down", "error": type(exc).__name__}
    return {"status": "ok"}


def cache_check() -> Check:
    backend = caches["default"]
    if not isinstance(backend, FailSoftRedisCache):
        return {"status": "off", "note": "local-memory cache of each process (no REDIS_URL)"}
    error = backend.ping()
    return {"status": "down", "error": error} if error else {"status": "ok"}


def _eager() -> bool:
    return bool(current_app.conf.task_always_eager)


def broker_check() -> Check:
    if _eager():
        return {"status": "off", "note": "tasks run in the web process (CELERY_TASK_ALWAYS_EAGER)"}
    try:
        with current_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=BROKER_TIMEOUT)
    except Exception as exc:  # kombu wraps most, but a transport may raise its own
        return {"status": "down", "error": type(exc).__name__}
    return {"status": "ok"}


_workers_lock = threading.Lock()
_workers_seen: tuple[float, Check] | None = None


def _known_queues() -> list[str]:
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values() if "queue" in route}
    return sorted({settings.CELERY_TASK_DEFAULT_QUEUE, *routed})


def workers_check(*, broker_up: bool) -> Check:
    """Workers per queue, from one broadcast (``inspect active_queues``). ``ok`` when a
    worker consumes the default queue; the other queues (``gpu``) are counted only, as a
    deployment without a GPU has no worker there."""
    global _workers_seen  # noqa: PLW0603 - the per-process memo of the last broadcast
    if _eager():
        return {"status": "off", "note": "tasks run in the web process (CELERY_TASK_ALWAYS_EAGER)"}
    if not broker_up:
        return {"status": "unknown", "error": "the broker is unreachable"}
    with _workers_lock:
        now = time.monotonic()
        if _workers_seen is not None and now - _workers_seen[0] < WORKERS_CACHE_SECONDS:
            return dict(_workers_seen[1])
        try:
            replies = current_app.control.inspect(timeout=WORKERS_TIMEOUT).active_queues() or {}
        except Exception as exc:  # the broker went away between the two checks
            return {"status": "unknown", "error": type(exc).__name__}
        queues = dict.fromkeys(_known_queues(), 0)
        for consumed in replies.values():
            for name in {queue["name"] for queue in consumed or []}:
                if name in queues:
                    queues[name] += 1
        status = "ok" if queues[settings.CELERY_TASK_DEFAULT_QUEUE] else "down"
        check: Check = {"status": status, "workers": len(replies), "queues": queues}
        _workers_seen = (now, check)
        return dict(check)


def workers_forget() -> None:
    """Drop the memo of the last broadcast (tests that start and stop workers)."""
    global _workers_seen  # noqa: PLW0603
    with _workers_lock:
        _workers_seen = None


def health_report(*, require: Collection[str]) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) for /healthz."""
    checks: dict[str, Check] = {"database": database_check(), "cache": cache_check(), "broker": broker_check()}
    checks["workers"] = workers_check(broker_up=checks["broker"]["status"] == "ok")
    failed = False
    degraded = False
    for name, check in checks.items():
        check["required"] = name in require
        if check["status"] in ("down", "unknown"):
            failed |= check["required"]
            degraded = True
    status = "error" if failed else "degraded" if degraded else "ok"
    return (503 if failed else 200), {"status": status, "checks": checks}
