"""The sweeper queues again the sampling jobs no task will run (lost message, dead worker)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings as django_settings
from django.core.cache import cache
from django.utils import timezone

from annotation.models import Comparison, RoundStatus
from models_service.models import JobStatus, SamplingJob
from models_service.rounds import round_create, round_open
from models_service.tasks import requeue_abandoned_sampling
from tests.models_service.test_sampling import add_prompts, served_versions  # noqa: F401 (fixture)


def test_a_round_whose_queued_jobs_were_lost_is_sampled_by_the_sweeper(project, served_versions, settings):
    cache.clear()
    settings.JOB_PENDING_REQUEUE_SECONDS = 60
    add_prompts(project, 3)
    old, new = served_versions
    # Opened inside the test's transaction: the on-commit queueing never happens, as if
    # Redis had lost the messages.
    round_ = round_open(round_=round_create(project=project, baseline=old, candidate=new))
    assert round_.status == RoundStatus.SAMPLING
    assert set(SamplingJob.objects.filter(round=round_).values_list("status", flat=True)) == {JobStatus.PENDING}
    assert requeue_abandoned_sampling() == 0  # just queued: left to the queue

    SamplingJob.objects.filter(round=round_).update(created_at=timezone.now() - timedelta(seconds=120))
    assert requeue_abandoned_sampling() == 2  # eager Celery: both arms run here
    round_.refresh_from_db()
    assert round_.status == RoundStatus.OPEN
    assert set(SamplingJob.objects.filter(round=round_).values_list("status", flat=True)) == {JobStatus.DONE}
    assert Comparison.objects.filter(round=round_).count() == 3
    assert requeue_abandoned_sampling() == 0


def test_a_running_job_is_queued_again_only_when_its_heartbeat_is_stale(project, versions, settings, monkeypatch):
    from models_service import tasks

    cache.clear()
    settings.SAMPLING_STALE_SECONDS = 60
    queued: list[int] = []
    monkeypatch.setattr(tasks.sample_job, "delay", queued.append)
    old = timezone.now() - timedelta(seconds=600)
    round_ = round_create(project=project, baseline=versions[0], candidate=versions[1])
    alive = SamplingJob.objects.create(
        round=round_, arm="A", model_version=versions[0], seed=0, status=JobStatus.RUNNING, heartbeat_at=timezone.now()
    )
    dead = SamplingJob.objects.create(
        round=round_, arm="B", model_version=versions[1], seed=0, status=JobStatus.RUNNING, heartbeat_at=old
    )
    SamplingJob.objects.update(created_at=old)

    assert requeue_abandoned_sampling() == 1 and queued == [dead.pk]
    assert requeue_abandoned_sampling() == 0 and queued == [dead.pk]  # once per stale window
    assert alive.pk not in queued


def test_the_sweeper_runs_on_the_default_queue_not_on_a_gpu_worker():
    entry = django_settings.CELERY_BEAT_SCHEDULE["requeue-abandoned-sampling"]
    assert entry["task"] == requeue_abandoned_sampling.name
    assert entry["options"]["queue"] == "default"
    from config.celery import app

    def queue_of(name: str) -> str:
        return app.amqp.router.route({}, name)["queue"].name

    assert queue_of(requeue_abandoned_sampling.name) == "default"
    assert queue_of("models_service.tasks.sample_job") == "gpu"
