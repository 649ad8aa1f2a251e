"""A real Celery worker process for the tests that cross Redis (the rest run tasks
in-process): one prefork child on a queue of the test's own, stopped on exit, its output
kept for assertions and printed when the test fails."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Worker:
    process: subprocess.Popen
    output: str = ""  # filled in when the worker has stopped


@contextmanager
def celery_worker(queue: str, env: dict[str, str]) -> Iterator[Worker]:
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queue, "-c", "1", "--pool", "prefork",
         "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
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
