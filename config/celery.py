"""The Celery app. Queues: ``default`` (exports, dashboard refreshes, sweeps) and ``gpu`` (sampling, later training).

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
