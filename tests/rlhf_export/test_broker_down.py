"""An export started while the Celery broker (a real, private redis-server) is stopped:
the request succeeds, the job is stored and shown as waiting with the reason, and the
sweeper queues it once the broker is back - where a real worker runs it."""

from __future__ import annotations

import time

import pytest
from django.urls import reverse

from core.tasks import QUEUE_UNREACHABLE
from rlhf_export.models import ExportJob, ExportStatus
from rlhf_export.services import export_job_create
from rlhf_export.tasks import requeue_abandoned_exports
from tests.celery_worker import celery_worker, worker_env
from tests.conftest import token_client
from tests.redis_server import on_private_redis, private_redis  # noqa: F401 (fixtures)
from tests.rlhf_export.test_views import FORM


def test_an_export_started_while_the_broker_is_down_waits_with_the_reason_and_is_queued_when_it_is_back(
    client, maya, project, judged, on_private_redis, django_capture_on_commit_callbacks
):
    on_private_redis.stop()
    client.force_login(maya)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("export-list"), {**FORM, "project": project.slug})
    assert response.status_code == 302
    job = ExportJob.objects.get()
    assert (job.status, job.error) == (ExportStatus.PENDING, QUEUE_UNREACHABLE)

    detail = client.get(response["Location"])
    assert detail.status_code == 200
    assert QUEUE_UNREACHABLE in detail.content.decode() and "alert-notice" in detail.content.decode()
    assert QUEUE_UNREACHABLE in client.get(reverse("export-list")).content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        created = token_client(maya).post("/api/v1/exports/", {"project": project.slug, "kind": "sft"}, format="json")
    assert created.status_code == 201, created.content
    assert ExportJob.objects.get(pk=created.json()["id"]).error == QUEUE_UNREACHABLE

    assert requeue_abandoned_exports() == 0  # what a sweep does while the broker is still away
    on_private_redis.start()
    assert requeue_abandoned_exports() == 2
    assert set(ExportJob.objects.values_list("status", "error")) == {(ExportStatus.PENDING, "")}
    assert on_private_redis.client().llen("default") == 2  # the worker's queue
    assert requeue_abandoned_exports() == 0  # queued: left to the queue now


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_export_that_could_not_be_queued_runs_on_a_worker_once_the_broker_is_back(
    maya, project, judged, on_private_redis, _media
):
    on_private_redis.stop()
    job = export_job_create(project=project, kind="dpo", created_by=maya)  # commits: queueing fails
    job.refresh_from_db()
    assert (job.status, job.error) == (ExportStatus.PENDING, QUEUE_UNREACHABLE)

    on_private_redis.start()
    env = worker_env(drop=("EXPORT_",), MEDIA_ROOT=str(_media))
    env["REDIS_URL"] = on_private_redis.url
    with celery_worker("default", env) as worker:
        assert requeue_abandoned_exports() == 1  # beat runs this every JOB_SWEEP_SECONDS
        deadline = time.monotonic() + 90
        while job.status in (ExportStatus.PENDING, ExportStatus.RUNNING):
            assert worker.process.poll() is None, "the worker exited"
            assert time.monotonic() < deadline, f"the export did not run ({job.status})"
            time.sleep(0.1)
            job.refresh_from_db()
    assert job.status == ExportStatus.SUCCEEDED, job.error
    assert job.error == "" and job.attempt == 1 and job.artifacts.filter(name="manifest.json").exists()
