"""Celery tasks of the insights app (queue ``default``)."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from insights import reports  # noqa: F401  (registers the report recipes)
from insights.cache import Recipe, refresh


@shared_task(name="insights.tasks.dashboard_refresh", ignore_result=True)
def dashboard_refresh(key: str, kind: str, args: dict[str, Any], fingerprint: int) -> None:
    """Recompute one stale dashboard report of a big project (``insights.cache.cached``) on
    a worker, so that the web processes serve the cached numbers and keep their CPU."""
    refresh(key, Recipe(kind, args), fingerprint)
