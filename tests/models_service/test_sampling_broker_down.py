"""A round opened while the Celery broker (a real, private redis-server) is stopped: the
lead's request succeeds, the sampling jobs wait with the reason on the sampling page, and
the sweeper queues them on ``gpu`` once the broker is back (models_service/sampling.py,
``_queue``; models_service/tasks.py, ``requeue_abandoned_sampling``)."""

from __future__ import annotations

from django.urls import reverse

from annotation.models import RoundStatus
from core.tasks import QUEUE_UNREACHABLE
from models_service.models import JobStatus, ModelVersion, SamplingJob
from models_service.rounds import round_create
from models_service.services import model_version_get_or_create
from models_service.tasks import requeue_abandoned_sampling
from tests.conftest import token_client
from tests.models_service.test_sampling import add_prompts
from tests.redis_server import on_private_redis, private_redis  # noqa: F401 (fixtures)


def test_a_round_opened_while_the_broker_is_down_waits_with_the_reason_and_is_queued_when_it_is_back(
    client, lee, project, on_private_redis, django_capture_on_commit_callbacks
):
    add_prompts(project, 3)
    old, new = model_version_get_or_create(name="chat-v1"), model_version_get_or_create(name="chat-v2")
    # Versions that generate (no server is asked: nothing runs while the broker is away).
    ModelVersion.objects.filter(pk__in=[old.pk, new.pk]).update(backend="openai")
    round_ = round_create(project=project, baseline=old, candidate=new)

    on_private_redis.stop()
    with django_capture_on_commit_callbacks(execute=True):
        response = token_client(lee).post(f"/api/v1/rounds/{round_.pk}/open/", format="json")
    assert response.status_code == 200, response.content
    round_.refresh_from_db()
    assert round_.status == RoundStatus.SAMPLING
    jobs = SamplingJob.objects.filter(round=round_)
    assert set(jobs.values_list("status", "error")) == {(JobStatus.PENDING, QUEUE_UNREACHABLE)}
    client.force_login(lee)
    panel = client.get(reverse("sampling-panel", args=[project.slug]))
    assert panel.status_code == 200 and QUEUE_UNREACHABLE in panel.content.decode()

    assert requeue_abandoned_sampling() == 0  # the broker is still away
    on_private_redis.start()
    assert requeue_abandoned_sampling() == 2
    assert set(jobs.values_list("status", "error")) == {(JobStatus.PENDING, "")}
    assert on_private_redis.client().llen("gpu") == 2  # the GPU worker's queue
    assert requeue_abandoned_sampling() == 0
