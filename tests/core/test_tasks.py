"""Queueing that survives a broker outage, the sweepers' re-queue guard and the
heartbeat thread (core/tasks.py), with a real redis-server as the broker."""

from __future__ import annotations

import logging
import threading
import time

from celery import shared_task
from django.core.cache import cache

from core.tasks import Heartbeat, heartbeat_every, requeue_once, task_queue
from tests.redis_server import on_private_redis, private_redis  # noqa: F401 (fixtures)


@shared_task(name="tests.core.test_tasks.nothing", ignore_result=True)
def nothing(job_id: int) -> None:
    """Never runs: the tests only look at what reaches the broker."""


def queued(server, queue: str = "default") -> int:
    return int(server.client().llen(queue))


def test_a_task_reaches_the_broker_and_a_stopped_broker_is_a_false_not_an_error(on_private_redis):
    assert task_queue(nothing, 1) is True
    assert queued(on_private_redis) == 1

    on_private_redis.stop()
    assert task_queue(nothing, 2) is False  # the user's request goes on

    on_private_redis.start()
    assert task_queue(nothing, 3) is True
    assert queued(on_private_redis) == 2  # the first message survived the restart (append-only file)


def test_a_requeue_that_found_the_broker_down_is_tried_again_by_the_next_sweep(on_private_redis, db):
    log = logging.getLogger("test")
    cache.clear()

    def queue(job_id: int) -> bool:
        return task_queue(nothing, job_id)

    on_private_redis.stop()
    assert requeue_once(queue, [7, 8], kind="test", window=300, log=log) == 0  # stops at the first failure
    on_private_redis.start()
    assert requeue_once(queue, [7, 8], kind="test", window=300, log=log) == 2  # no guard was left behind
    assert requeue_once(queue, [7, 8], kind="test", window=300, log=log) == 0  # once per window
    assert queued(on_private_redis) == 2


def test_the_heartbeat_beats_from_its_own_thread_until_the_block_ends():
    beats: list[str] = []
    beating = threading.Event()

    def beat() -> bool:
        beats.append(threading.current_thread().name)
        if len(beats) >= 3:
            beating.set()
        return True

    with Heartbeat(beat, every=0.01, name="job 1") as heartbeat:
        assert beating.wait(10), "no heartbeat"
    seen = len(beats)
    time.sleep(0.05)
    assert len(beats) == seen  # stopped with the block
    assert heartbeat.beats == seen >= 3
    assert set(beats) == {"heartbeat-job 1"}


def test_the_heartbeat_stops_when_the_job_is_no_longer_ours_and_survives_an_error():
    calls: list[int] = []
    done = threading.Event()

    def beat() -> bool:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("the database went away for a moment")
        if len(calls) == 3:
            done.set()
            return False  # cancelled, or taken over
        return True

    with Heartbeat(beat, every=0.01, name="job 2"):
        assert done.wait(10)
        time.sleep(0.05)
        assert len(calls) == 3  # no beat after the job stopped being ours


def test_in_process_tasks_have_no_heartbeat_thread(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    assert heartbeat_every(30) == 0
    with Heartbeat(lambda: True, every=heartbeat_every(30), name="eager") as heartbeat:
        assert heartbeat._thread is None
    settings.CELERY_TASK_ALWAYS_EAGER = False
    assert heartbeat_every(30) == 10
