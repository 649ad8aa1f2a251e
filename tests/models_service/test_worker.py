"""A real Celery worker samples a round: the message crosses Redis, the worker process
asks a real OpenAI-compatible server (``transformers serve``), stores the answers in
this test's PostgreSQL database, builds the comparisons and opens the round - the path a
`gpu-worker` container takes. Tasks run in-process everywhere else in the suite.

The queue is one of the test's own (other runs may share the broker); that sampling
tasks are routed to ``gpu`` is checked in test_tasks.py.
"""

from __future__ import annotations

import time
import uuid

import pytest
from django.db.models import Count

from annotation.models import Comparison, RoundStatus, Sample
from models_service.models import JobStatus, SamplingJob
from models_service.rounds import round_create, round_open
from models_service.services import model_version_create
from tests.celery_worker import REDIS_URL, celery_worker, worker_env
from tests.models_service.conftest import TEST_MODEL_HOSTS, TINY_SAMPLING, openai_config
from tests.models_service.test_sampling import add_prompts

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not REDIS_URL, reason="needs Redis for a real Celery worker: set REDIS_URL=redis://... (CI does)"
    ),
]


def test_a_real_worker_samples_the_round_opens_it_and_ignores_a_duplicate_message(
    project, live_server_up, monkeypatch, settings
):
    from celery import Celery

    from models_service import sampling

    queue = f"sampling-test-{uuid.uuid4().hex[:8]}"
    broker = Celery(broker=REDIS_URL, set_as_current=False)  # the project's app stays current
    sent: list[int] = []

    def send(job_ids: list[int]) -> None:  # what _queue does, to the real broker
        for job_id in job_ids:
            broker.send_task("models_service.tasks.sample_job", args=[job_id], queue=queue)
            sent.append(job_id)

    monkeypatch.setattr(sampling, "_queue", send)
    settings.SAMPLING_BATCH_SIZE = 5
    add_prompts(project, 12)
    old = model_version_create(
        name="chat-v1", backend="openai", config=openai_config(live_server_up), default_sampling=TINY_SAMPLING
    )
    new = model_version_create(
        name="chat-v2",
        backend="openai",
        parent=old,
        config=openai_config(live_server_up),
        default_sampling=TINY_SAMPLING,
    )
    round_ = round_open(round_=round_create(project=project, baseline=old, candidate=new))
    assert round_.status == RoundStatus.SAMPLING and len(sent) == 2

    env = worker_env(
        drop=("SAMPLING_", "MODEL_HOSTS_"),
        SAMPLING_BATCH_SIZE="5",
        HF_HUB_OFFLINE="1",
        MODEL_HOSTS_ALLOWED=",".join(TEST_MODEL_HOSTS),
    )
    with celery_worker(queue, env) as worker:
        deadline = time.monotonic() + 120
        while True:
            round_.refresh_from_db()
            if round_.status == RoundStatus.OPEN:
                break
            assert worker.process.poll() is None, "the worker exited"
            assert time.monotonic() < deadline, "the worker did not finish sampling the round"
            time.sleep(0.1)
        jobs = SamplingJob.objects.filter(round=round_).order_by("arm")
        assert [(j.status, j.total, j.sampled, j.failed) for j in jobs] == [(JobStatus.DONE, 12, 12, 0)] * 2
        assert Comparison.objects.filter(round=round_).count() == 12
        samples = Sample.objects.count()

        # A duplicate delivery (a retry, a second worker) finds the jobs done: nothing new.
        import redis

        send([jobs[0].pk])
        client = redis.Redis.from_url(REDIS_URL)
        while client.llen(queue):  # taken by the worker
            assert time.monotonic() < deadline, "the worker did not take the duplicate message"
            time.sleep(0.05)
        time.sleep(1.0)  # and run
        assert SamplingJob.objects.get(pk=jobs[0].pk).status == JobStatus.DONE
        assert (Sample.objects.count(), Comparison.objects.filter(round=round_).count()) == (samples, 12)
        assert (
            not Sample.objects.values("prompt", "model_version", "seed")
            .annotate(n=Count("id"))
            .filter(n__gt=1)
            .exists()
        )
