"""The export page in a real browser: the progress bar follows the job through htmx
polling, and the files appear with their checksums when it is done."""

from __future__ import annotations

import pytest

from rlhf_export.models import ExportJob, ExportStatus
from rlhf_export.services import export_job_create, export_job_run
from tests.conftest import PASSWORD
from tests.e2e.conftest import CHROMIUM, browser, page, wait_until  # noqa: F401 - fixtures

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"needs Chromium at {CHROMIUM} (apt-get install chromium)"),
    pytest.mark.django_db(transaction=True),
]


def test_the_progress_bar_follows_the_job_and_the_files_appear(live_server, page, maya, project, judged, monkeypatch):
    from rlhf_export import tasks

    monkeypatch.setattr(tasks.export_job_run_task, "delay", lambda job_id: None)  # the test plays the worker
    job = export_job_create(project=project, kind="dpo", created_by=maya)
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "maya")
    page.fill("#id_password", PASSWORD)
    page.press("#id_password", "Enter")
    page.wait_for_url(f"{live_server.url}/")
    page.goto(f"{live_server.url}/exports/{job.pk}/")
    assert page.locator("#job-status progress").get_attribute("value") == "0"

    ExportJob.objects.filter(pk=job.pk).update(status=ExportStatus.RUNNING, judgments_total=40, judgments_done=30)
    wait_until(page, "document.querySelector('#job-status progress').value == 75", timeout=10_000)
    assert "30 of 40 judgments" in page.locator("#job-status").inner_text()

    ExportJob.objects.filter(pk=job.pk).update(status=ExportStatus.PENDING, judgments_total=0, judgments_done=0)
    export_job_run(job_id=job.pk)
    page.wait_for_selector("#job-status table.export-files", timeout=10_000)
    text = page.locator("#job-status").inner_text()
    assert "manifest.json" in text and job.artifacts.get(name="manifest.json").sha256 in text
    assert page.locator("#job-status[hx-trigger]").count() == 0  # polling stopped
    assert not page.js_errors
