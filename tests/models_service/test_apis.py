"""The models service's REST API: sampling progress and reruns, the failures list, the
round's sampling settings, flagged samples and their release; model version configs
checked by their backend's schema."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.models import PairingStrategy, Prompt, RoundStatus, Sample
from core.text import messages_hash
from models_service.rounds import round_create
from models_service.services import model_version_create
from tests.conftest import token_client
from tests.models_service.conftest import TINY_SAMPLING, openai_config


def add_prompts(project, n):
    for i in range(n):
        messages = [{"role": "user", "content": f"API prompt {i}"}]
        Prompt.objects.create(project=project, messages=messages, content_hash=messages_hash(messages))


@pytest.fixture
def sampled_round(project, live_server_up, django_capture_on_commit_callbacks):
    add_prompts(project, 3)
    old = model_version_create(
        name="api-v1", backend="openai", config=openai_config(live_server_up), default_sampling=TINY_SAMPLING
    )
    new = model_version_create(
        name="api-v2", backend="openai", config=openai_config(live_server_up), default_sampling=TINY_SAMPLING
    )
    return round_create(project=project, baseline=old, candidate=new)


def test_a_lead_starts_sampling_and_everyone_entitled_reads_the_progress(
    lee, maya, alice, sampled_round, django_capture_on_commit_callbacks
):
    url = reverse("models_service_api:round-sampling", args=[sampled_round.pk])
    before = token_client(maya).get(url).json()
    assert (before["status"], before["jobs"]) == ("not_started", [])
    with django_capture_on_commit_callbacks(execute=True):
        response = token_client(lee).post(url)
    assert response.status_code == 202
    body = token_client(maya).get(url).json()
    assert (body["status"], body["total"], body["sampled"], body["failed"], body["comparisons"], body["percent"]) == (
        "done",
        6,
        6,
        0,
        3,
        100,
    )
    assert body["round_status"] == RoundStatus.OPEN
    assert [(j["arm"], j["model_version"]["name"], j["status"]) for j in body["jobs"]] == [
        ("A", "api-v1", "done"),
        ("B", "api-v2", "done"),
    ]
    assert token_client(alice).get(url).status_code == 403  # progress names the models
    assert token_client(maya).post(url).status_code == 403  # leads start sampling


def test_failures_are_listed_with_their_errors(lee, project, versions, tmp_path, django_capture_on_commit_callbacks):
    add_prompts(project, 2)
    broken = model_version_create(name="gone", backend="transformers", config={"model_dir": str(tmp_path / "none")})
    round_ = round_create(project=project, baseline=versions[0], candidate=broken)
    with django_capture_on_commit_callbacks(execute=True):
        token_client(lee).post(reverse("models_service_api:round-sampling", args=[round_.pk]))
    body = token_client(lee).get(reverse("models_service_api:round-sampling-failures", args=[round_.pk])).json()
    assert body["count"] == 4
    by_arm = {}
    for failure in body["results"]:
        by_arm.setdefault(failure["arm"], []).append(failure)
    assert all("does not exist" in f["error"] and f["model_version"] == "gone" for f in by_arm["B"])
    assert all(not f["retryable"] and "kind=samples" in f["error"] for f in by_arm["A"])
    assert {f["prompt_text"] for f in by_arm["B"]} == {"API prompt 0", "API prompt 1"}


def test_sampling_settings_are_set_before_sampling_and_refused_after(
    lee, project, versions, live_server_up, django_capture_on_commit_callbacks
):
    third = model_version_create(
        name="api-v3", backend="openai", config=openai_config(live_server_up), default_sampling=TINY_SAMPLING
    )
    round_ = round_create(project=project, baseline=versions[0], candidate=third, pairing=PairingStrategy.ARENA)
    url = reverse("models_service_api:round-sampling-config", args=[round_.pk])
    client = token_client(lee)
    bad = client.put(url, {"sampling": {"seeds": [2, 2], "colour": "red"}}, format="json")
    assert bad.status_code == 400
    assert any("seeds" in m for m in bad.json()["sampling"]) and any("colour" in m for m in bad.json()["sampling"])
    assert client.put(url, {"arena_versions": [99999]}, format="json").status_code == 400
    fourth = model_version_create(name="api-v4", backend="imported")
    good = client.put(url, {"sampling": {"seed": 5, "max_tokens": 4}, "arena_versions": [fourth.pk]}, format="json")
    assert good.status_code == 200, good.json()
    body = good.json()
    assert body["arena_versions"] == [fourth.pk]
    assert sorted((a["model_version_name"], a["params"]["max_tokens"]) for a in body["arms"]) == [
        ("api-v3", 4),
        ("api-v4", 4),
        ("chat-v1", 4),
    ]
    # max_tokens differs from the versions' own: the arms sample at seeds derived from 5
    # and those settings (services._arm), never at a plain seed another round may use.
    assert all(2**52 <= a["seed"] < 2**53 and a["params"]["seed"] == a["seed"] for a in body["arms"])
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("models_service_api:round-sampling", args=[round_.pk]))
    late = client.put(url, {"sampling": {"seed": 6}}, format="json")
    assert late.status_code == 400 and "started" in str(late.json())


def test_a_lead_lists_and_releases_flagged_samples(lee, maya, project, versions, django_capture_on_commit_callbacks):
    add_prompts(project, 1)
    prompt = Prompt.objects.get()
    flagged = Sample.objects.create(
        prompt=prompt, model_version=versions[0], text="Claude here", text_hash="h", identity_flagged=True
    )
    listing = token_client(lee).get(reverse("models_service_api:flagged-samples", args=[project.slug])).json()
    assert [s["id"] for s in listing["results"]] == [flagged.pk]
    assert token_client(maya).post(reverse("models_service_api:sample-release", args=[flagged.pk])).status_code == 403
    response = token_client(lee).post(reverse("models_service_api:sample-release", args=[flagged.pk]))
    assert response.status_code == 200 and response.json()["sample"]["identity_released"] is True
    again = token_client(lee).post(reverse("models_service_api:sample-release", args=[flagged.pk]))
    assert again.status_code == 200  # releasing a released sample is harmless
    assert (
        token_client(lee).get(reverse("models_service_api:flagged-samples", args=[project.slug])).json()["count"] == 0
    )
    unflagged = Sample.objects.create(prompt=prompt, model_version=versions[1], text="fine", text_hash="i")
    refused = token_client(lee).post(reverse("models_service_api:sample-release", args=[unflagged.pk]))
    assert refused.status_code == 400 and "not flagged" in str(refused.json())


def test_model_versions_api_checks_the_backend_config_field_by_field(maya, settings):
    settings.MODEL_HOSTS_ALLOWED = ["vllm"]
    client = token_client(maya)
    response = client.post(
        reverse("models_service_api:model-version-list"),
        {"name": "served", "backend": "openai", "config": {"base_url": "ftp://x", "api_key": "sk-1"}},
        format="json",
    )
    assert response.status_code == 400
    messages = response.json()["config"]
    assert any(m.startswith("base_url:") for m in messages) and any(
        m.startswith("api_key: unknown setting") for m in messages
    )
    ok = client.post(
        reverse("models_service_api:model-version-list"),
        {
            "name": "served",
            "backend": "openai",
            "config": {"base_url": "http://vllm:8000/v1", "api_key_env": "VLLM_API_KEY"},
            "default_sampling": {"temperature": 0.7, "max_tokens": 256},
        },
        format="json",
    )
    assert ok.status_code == 201, ok.json()
    bad_sampling = client.patch(
        reverse("models_service_api:model-version-detail", args=[ok.json()["id"]]),
        {"default_sampling": {"temperature": 5}},
        format="json",
    )
    assert bad_sampling.status_code == 400 and "temperature" in str(bad_sampling.json()["default_sampling"])


def test_a_version_cannot_name_another_secret_of_the_process_as_its_api_key(maya):
    client = token_client(maya)
    for name in ("SECRET_KEY", "DATABASE_URL", "S3_SECRET_ACCESS_KEY", "vllm_api_key"):
        response = client.post(
            reverse("models_service_api:model-version-list"),
            {
                "name": f"leaky-{name}",
                "backend": "openai",
                "config": {"base_url": "http://attacker/v1", "api_key_env": name},
            },
            format="json",
        )
        assert response.status_code == 400, name
        assert any(m.startswith("api_key_env:") for m in response.json()["config"])
