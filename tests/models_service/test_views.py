"""The lead's sampling panel (its own page, and the htmx fragment the project page
loads and polls) and the project page's links into sampling and live mode."""

from __future__ import annotations

from django.urls import reverse

from annotation.models import Prompt, Sample
from core.text import messages_hash
from models_service.models import JobStatus, SamplingJob
from models_service.rounds import round_create
from models_service.services import model_version_create
from tests.conftest import tags_of


def a_prompt(project, text="Panel prompt"):
    messages = [{"role": "user", "content": text}]
    return Prompt.objects.create(project=project, messages=messages, content_hash=messages_hash(messages))


def test_the_panel_shows_progress_failures_and_held_back_samples(
    client, lee, project, versions, tmp_path, django_capture_on_commit_callbacks
):
    prompt = a_prompt(project)
    broken = model_version_create(
        name="broken-local", backend="transformers", config={"model_dir": str(tmp_path / "x")}
    )
    round_ = round_create(project=project, baseline=versions[0], candidate=broken)
    Sample.objects.create(
        prompt=prompt, model_version=versions[0], text="I am ChatGPT", text_hash="h", identity_flagged=True
    )
    with django_capture_on_commit_callbacks(execute=True):
        client.force_login(lee)
        client.post(reverse("sampling-start", args=[project.slug, round_.number]))
    page = client.get(reverse("sampling-panel", args=[project.slug]))
    html = page.content.decode()
    assert page.status_code == 200 and "<html" in html
    assert "broken-local" in html and "does not exist" in html and "Panel prompt" in html
    assert "Retry the 1 failed" in html  # the imported arm has its answer; the local one failed
    assert "I am ChatGPT" in html and "Release into annotation" in html
    assert 'hx-trigger="every 2s"' not in html  # nothing runs: no polling


def test_the_fragment_polls_while_a_job_runs_and_stops_after(
    client, lee, project, versions, django_capture_on_commit_callbacks
):
    round_ = round_create(project=project, baseline=versions[0], candidate=versions[1])
    SamplingJob.objects.create(
        round=round_, arm="A", model_version=versions[0], seed=0, status=JobStatus.RUNNING, total=10, sampled=4
    )
    client.force_login(lee)
    fragment = client.get(reverse("sampling-panel", args=[project.slug]), HTTP_HX_REQUEST="true")
    html = fragment.content.decode()
    assert "<html" not in html and 'hx-trigger="every 2s"' in html
    assert "<strong data-sampled>4</strong> of <span data-total>10</span>" in html
    SamplingJob.objects.update(status=JobStatus.DONE, sampled=10)
    html = client.get(reverse("sampling-panel", args=[project.slug]), HTTP_HX_REQUEST="true").content.decode()
    assert 'hx-trigger="every 2s"' not in html and "<strong data-sampled>10</strong>" in html


def test_a_lead_releases_a_sample_from_the_panel(client, lee, project, versions):
    prompt = a_prompt(project)
    sample = Sample.objects.create(
        prompt=prompt, model_version=versions[0], text="Gemini says hi", text_hash="g", identity_flagged=True
    )
    client.force_login(lee)
    response = client.post(reverse("sample-release", args=[project.slug, sample.pk]), HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and "Nothing held back." in response.content.decode()
    sample.refresh_from_db()
    assert sample.identity_released


def test_a_lead_switches_live_prompts_on_and_off(client, lee, project):
    client.force_login(lee)
    client.post(reverse("live-mode-set", args=[project.slug]), {"enabled": "on"})
    project.refresh_from_db()
    assert project.live_mode
    client.post(reverse("live-mode-set", args=[project.slug]), {})
    project.refresh_from_db()
    assert not project.live_mode


def test_annotators_and_engineers_cannot_act_on_sampling(client, alice, maya, project, versions):
    round_ = round_create(project=project, baseline=versions[0], candidate=versions[1])
    sample = Sample.objects.create(
        prompt=a_prompt(project), model_version=versions[0], text="t", text_hash="t", identity_flagged=True
    )
    client.force_login(alice)
    assert client.get(reverse("sampling-panel", args=[project.slug])).status_code == 403
    client.force_login(maya)
    page = client.get(reverse("sampling-panel", args=[project.slug]))
    assert page.status_code == 200 and b"Release into annotation" not in page.content
    assert client.post(reverse("sample-release", args=[project.slug, sample.pk])).status_code == 403
    assert client.post(reverse("sampling-start", args=[project.slug, round_.number])).status_code == 403
    assert client.post(reverse("live-mode-set", args=[project.slug]), {"enabled": "on"}).status_code == 403


def test_the_project_page_loads_the_panel_for_leads_and_links_live_mode_for_annotators(client, lee, alice, project):
    client.force_login(lee)
    tags = tags_of(client.get(reverse("project-detail", args=[project.slug])).content.decode())
    assert any(attrs.get("hx-get") == reverse("sampling-panel", args=[project.slug]) for _, attrs in tags)
    project.live_mode = True
    project.save()
    client.force_login(alice)
    html = client.get(reverse("project-detail", args=[project.slug])).content.decode()
    assert reverse("sampling-panel", args=[project.slug]) not in html
