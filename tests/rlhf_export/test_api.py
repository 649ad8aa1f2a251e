"""The export API: start, list, follow, cancel and download by API token; leads and ML engineers only."""

from __future__ import annotations

import hashlib

import pytest
from django.urls import reverse

from rlhf_export.models import ExportJob
from tests.conftest import token_client

LIST = "/api/v1/exports/"


def test_an_ml_engineer_starts_an_export_and_downloads_its_files_by_token(
    project, maya, judged, django_capture_on_commit_callbacks
):
    client = token_client(maya)
    with django_capture_on_commit_callbacks(execute=True):  # eager Celery: the task runs on commit
        response = client.post(
            LIST,
            {
                "project": project.slug,
                "kind": "reward_model",
                "file_format": "jsonl",
                "filters": {"min_strength": "slightly", "test_fraction": 0},
                "options": {"margin": "small"},
            },
            format="json",
        )
    assert response.status_code == 201, response.json()
    job_id = response.json()["id"]
    detail = client.get(f"{LIST}{job_id}/").json()
    assert detail["status"] == "succeeded" and detail["percent"] == 100
    assert detail["filters"]["min_strength"] == "slightly" and detail["options"]["margin"] == "small"
    files = {f["name"]: f for f in detail["files"]}
    assert {"manifest.json", "README.md", "data/train-00000-of-00001.jsonl"} <= set(files)
    data = files["data/train-00000-of-00001.jsonl"]
    download = client.get(data["url"])
    assert download.status_code == 200
    body = b"".join(download.streaming_content)
    assert hashlib.sha256(body).hexdigest() == data["sha256"] == download["X-Content-SHA256"]
    assert len(body) == data["size"] and body.count(b"\n") == data["rows"] == detail["rows_total"]
    listed = client.get(LIST, {"project": project.slug}).json()
    assert [job["id"] for job in listed["results"]] == [job_id]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"kind": "dpo", "filters": {"min_strength": "huge"}}, "filters.min_strength"),
        ({"kind": "dpo", "options": {"margin": "large"}}, "options.margin"),
        ({"kind": "dpo", "filters": {"rounds": [42]}}, "filters.rounds"),
        ({"kind": "ppo"}, "kind"),
        ({"kind": "dpo", "project": "nope"}, "project"),
        ({"kind": "dpo", "filters": "everything"}, "filters"),
    ],
)
def test_bad_export_requests_get_400_with_the_field_named(project, maya, round_, payload, field):
    response = token_client(maya).post(LIST, {"project": project.slug, **payload}, format="json")
    assert response.status_code == 400
    assert field in response.json(), response.json()
    assert not ExportJob.objects.exists()


def test_a_pilot_round_numbered_0_can_be_exported_on_its_own(project, maya, round_):
    round_.number = 0  # the demo's pilot round, and any round a lead numbers so
    round_.save(update_fields=["number"])
    response = token_client(maya).post(
        LIST, {"project": project.slug, "kind": "dpo", "filters": {"rounds": [0]}}, format="json"
    )
    assert response.status_code == 201, response.json()
    assert ExportJob.objects.get().filters["rounds"] == [0]


def test_annotators_cannot_see_or_start_exports(project, alice):
    client = token_client(alice)
    assert client.get(LIST).status_code == 403
    assert client.post(LIST, {"project": project.slug, "kind": "dpo"}, format="json").status_code == 403


def test_exports_need_credentials(db, client):
    assert client.get(LIST).status_code in (401, 403)


def test_a_lead_cancels_a_pending_export_and_cannot_cancel_it_twice(project, lee, round_):
    client = token_client(lee)
    response = client.post(LIST, {"project": project.slug, "kind": "dpo"}, format="json")  # task waits for commit
    job_id = response.json()["id"]
    cancelled = client.post(f"{LIST}{job_id}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = client.post(f"{LIST}{job_id}/cancel/")
    assert again.status_code == 400 and "status" in again.json()


def test_files_of_unfinished_jobs_and_unknown_files_are_404(project, maya, judged, django_capture_on_commit_callbacks):
    client = token_client(maya)
    response = client.post(LIST, {"project": project.slug, "kind": "dpo"}, format="json")
    job_id = response.json()["id"]
    assert client.get(f"{LIST}{job_id}/files/manifest.json").status_code == 404  # still pending
    from rlhf_export.services import export_job_run

    export_job_run(job_id=job_id)
    assert client.get(f"{LIST}{job_id}/files/manifest.json").status_code == 200
    assert client.get(f"{LIST}{job_id}/files/../../settings.py").status_code == 404
    assert client.get(f"{LIST}999999/").status_code == 404


def test_the_schema_documents_the_export_endpoints(maya, db):
    response = token_client(maya).get(reverse("api-schema"))
    assert response.status_code == 200
    text = response.content.decode()
    assert "/api/v1/exports/{id}/files/{name}" in text and "ExportJob" in text
