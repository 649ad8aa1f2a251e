"""A real Celery worker process for the tests that cross Redis (the rest run tasks
in-process): one prefork child on a queue of the test's own, stopped on exit, its output
kept for assertions and printed when the test fails."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = os.environ.get("REDIS_URL", "")


def database_url() -> str:
    """The URL of this test's database (the worker must write where the test reads)."""
    from django.db import connection

    s = connection.settings_dict
    auth = quote(s["USER"] or "") + (":" + quote(s["PASSWORD"]) if s["PASSWORD"] else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def worker_env(*, drop: tuple[str, ...] = (), **settings: str) -> dict[str, str]:
    """This process's environment for a worker on the test's database and Redis, tasks
    not eager; variables starting with CELERY_ or a ``drop`` prefix are left out, then
    ``settings`` added."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", *drop))}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings_test",
        DATABASE_URL=database_url(),
        REDIS_URL=REDIS_URL,
        CELERY_TASK_ALWAYS_EAGER="0",
        DB_CONN_MAX_AGE="0",
        **settings,
    )
    return env


@dataclass
class Worker:
    process: subprocess.Popen
    output: str = ""  # filled in when the worker has stopped


@contextmanager
def celery_worker(queue: str, env: dict[str, str]) -> Iterator[Worker]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "-Q",
            queue,
            "-c",
            "1",
            "--pool",
            "prefork",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    worker = Worker(process)
    try:
        yield worker
    finally:
        process.terminate()
        try:
            raw = process.communicate(timeout=20)[0]
        except subprocess.TimeoutExpired:
            process.kill()
            raw = process.communicate()[0]
        worker.output = raw.decode(errors="replace")
        if sys.exc_info()[0] is not None:
            print("--- worker output ---\n" + worker.output[-5000:])  # shown by pytest with the failure
