"""The export pages: start a job with a validated form, list jobs, follow progress (htmx), cancel, download."""

from __future__ import annotations

import pytest
from django.urls import reverse

from rlhf_export.models import ExportJob, ExportStatus
from rlhf_export.services import export_job_create, export_job_run
from tests.conftest import tags_of

FORM = {
    "kind": "dpo",
    "file_format": "parquet",
    "text_format": "standard",
    "rounds": "",
    "tags": "",
    "min_strength": "",
    "drop_cant_judge": "on",
    "drop_chosen_unsafe": "on",
    "include_gold": "on",
    "aggregation": "majority",
    "disagreements": "keep",
    "exclude_annotators": "",
    "deduplicate": "on",
    "test_fraction": "0.05",
    "split_seed": "prefdata",
    "margin": "none",
    "rows_per_shard": "500000",
}


def test_the_ml_engineer_starts_an_export_from_the_page(
    client, maya, project, judged, django_capture_on_commit_callbacks
):
    client.force_login(maya)
    page = client.get(reverse("export-list"))
    assert page.status_code == 200 and b"Start export" in page.content
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("export-list"), {**FORM, "project": project.slug, "min_strength": "better"})
    job = ExportJob.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("export-detail", args=[job.pk])
    assert job.status == ExportStatus.SUCCEEDED and job.filters["min_strength"] == "better"
    detail = client.get(response["Location"])
    assert detail.status_code == 200
    links = [
        attrs["href"]
        for tag, attrs in tags_of(detail.content.decode())
        if tag == "a" and "/files/" in (attrs.get("href") or "")
    ]
    assert reverse("export-download", args=[job.pk, "manifest.json"]) in links
    download = client.get(reverse("export-download", args=[job.pk, "manifest.json"]))
    assert download.status_code == 200 and b'"kind": "dpo"' in b"".join(download.streaming_content)
    assert job.artifacts.get(name="manifest.json").sha256 in detail.content.decode()


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"rounds": "1, x"}, "rounds", "is not a round number"),
        ({"rounds": "7"}, "rounds", "No round 7"),
        ({"margin": "small"}, "margin", "reward-model exports only"),
        ({"test_fraction": "0.9"}, "test_fraction", "less than or equal to 0.5"),
        ({"exclude_annotators": "ghost"}, "exclude_annotators", "No such user: ghost"),
    ],
)
def test_a_bad_form_shows_the_errors_on_its_fields(client, maya, project, round_, changes, field, message):
    client.force_login(maya)
    response = client.post(reverse("export-list"), {**FORM, "project": project.slug, **changes})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert field in response.context["form"].errors
    assert not ExportJob.objects.exists()


def test_the_detail_page_polls_while_running_and_stops_when_done(client, maya, project, judged):
    client.force_login(maya)
    job = export_job_create(project=project, kind="dpo", created_by=maya)
    page = client.get(reverse("export-detail", args=[job.pk])).content.decode()
    polling = [attrs for tag, attrs in tags_of(page) if attrs.get("hx-trigger") == "every 1s"]
    assert polling and polling[0]["hx-get"] == reverse("export-detail", args=[job.pk])
    assert "<progress" in page and "Cancel" in page
    ExportJob.objects.filter(pk=job.pk).update(status=ExportStatus.RUNNING, judgments_total=200, judgments_done=50)
    fragment = client.get(reverse("export-detail", args=[job.pk]), HTTP_HX_REQUEST="true")
    assert fragment.status_code == 200 and b"<html" not in fragment.content
    assert b'value="25"' in fragment.content and b"50 of 200 judgments" in fragment.content
    assert "no-cache" in fragment["Cache-Control"]
    ExportJob.objects.filter(pk=job.pk).update(status=ExportStatus.PENDING, judgments_total=0, judgments_done=0)
    export_job_run(job_id=job.pk)
    done = client.get(reverse("export-detail", args=[job.pk]), HTTP_HX_REQUEST="true").content.decode()
    assert not [attrs for tag, attrs in tags_of(done) if attrs.get("hx-trigger")]
    assert "manifest.json" in done and "Succeeded" in done


def test_the_cancel_button_cancels_a_pending_job(client, maya, project, round_):
    client.force_login(maya)
    job = export_job_create(project=project, kind="dpo", created_by=maya)
    assert client.get(reverse("export-cancel", args=[job.pk])).status_code == 405
    response = client.post(reverse("export-cancel", args=[job.pk]))
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == ExportStatus.CANCELLED
    page = client.get(reverse("export-detail", args=[job.pk])).content.decode()
    assert "Cancelled" in page


def test_annotators_get_403_on_export_pages(client, alice, project, round_, maya):
    client.force_login(alice)
    job = export_job_create(project=project, kind="dpo", created_by=maya)
    assert client.get(reverse("export-list")).status_code == 403
    assert client.get(reverse("export-detail", args=[job.pk])).status_code == 403
    assert client.post(reverse("export-cancel", args=[job.pk])).status_code == 403


def test_the_nav_links_to_exports_for_ml_engineers_only(client, maya, alice):
    client.force_login(maya)
    assert reverse("export-list").encode() in client.get(reverse("home")).content
    client.force_login(alice)
    assert reverse("export-list").encode() not in client.get(reverse("home")).content


def test_the_job_list_shows_jobs_newest_first(client, maya, project, round_):
    client.force_login(maya)
    first = export_job_create(project=project, kind="dpo", created_by=maya)
    second = export_job_create(project=project, kind="sft", created_by=maya)
    page = client.get(reverse("export-list")).content.decode()
    assert page.index(reverse("export-detail", args=[second.pk])) < page.index(
        reverse("export-detail", args=[first.pk])
    )
    assert client.get(reverse("export-list"), {"page": "x"}).status_code == 400
