"""Who may change what of a model version (models_service/services.py): where it sends
prompts and which key (backend, base_url, api_key_env, model, a local model's path) and
trust_remote_code are a superuser's to change; everyone else registers a new version.
Through the API, the admin's form and the services alike."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from accounts.services import user_create
from models_service.models import ModelVersion
from models_service.rounds import round_create
from models_service.services import model_version_create, model_version_update
from tests.conftest import PASSWORD, token_client


@pytest.fixture
def root(db):
    user = user_create(username="root", password=PASSWORD)
    user.is_superuser = user.is_staff = True
    user.save()
    return user


@pytest.fixture
def served(settings):
    settings.MODEL_HOSTS_ALLOWED = ["127.0.0.1", "vllm", "vllm-b"]
    return model_version_create(
        name="served",
        backend="openai",
        config={"base_url": "http://vllm:8000/v1", "model": "candidate", "api_key_env": "VLLM_API_KEY"},
    )


def detail(version):
    return reverse("models_service_api:model-version-detail", args=[version.pk])


def config_with(version, **changes):
    return {**version.config, **changes}


def test_a_version_in_use_keeps_its_endpoint_and_key_name_for_everyone_but_a_superuser(
    maya, lee, root, project, versions, served
):
    round_create(project=project, baseline=versions[0], candidate=served)
    for user in (maya, lee):
        client = token_client(user)
        for changes in (
            {"base_url": "http://vllm-b:8000/v1"},
            {"api_key_env": "OTHER_API_KEY"},
            {"model": "another"},
        ):
            response = client.patch(detail(served), {"config": config_with(served, **changes)}, format="json")
            assert response.status_code == 400, (user, changes)
            (message,) = response.json()["config"]
            (name,) = changes
            assert message == (
                f"{name}: only a superuser may change this, as it is in use (rounds, samples or live turns "
                "refer to it); register a new model version instead."
            )
        response = client.patch(detail(served), {"backend": "imported", "config": {}}, format="json")
        assert response.status_code == 400 and "The backend: only a superuser" in response.json()["backend"][0]
        # What does not decide where prompts go still changes.
        response = client.patch(
            detail(served),
            {
                "description": f"tuned by {user.username}",
                "config": config_with(served, max_concurrency=16, timeout_s=60),
                "default_sampling": {"temperature": 0.5},
            },
            format="json",
        )
        assert response.status_code == 200, response.json()
    served.refresh_from_db()
    assert served.config["base_url"] == "http://vllm:8000/v1" and served.config["max_concurrency"] == 16
    assert served.backend == "openai" and served.description == "tuned by lee"

    response = token_client(root).patch(
        detail(served), {"config": config_with(served, base_url="http://vllm-b:8000/v1/")}, format="json"
    )
    assert response.status_code == 200, response.json()
    served.refresh_from_db()
    assert served.config["base_url"] == "http://vllm-b:8000/v1/"


def test_an_unused_version_is_repointed_by_a_superuser_only_and_a_new_version_by_anyone(maya, root, served):
    client = token_client(maya)
    response = client.patch(
        detail(served), {"config": config_with(served, base_url="http://127.0.0.1:9000/v1")}, format="json"
    )
    assert response.status_code == 400
    assert "it decides where prompts and the API key go" in response.json()["config"][0]
    # The same settings under a new name are a new version, which anyone entitled registers.
    response = client.post(
        reverse("models_service_api:model-version-list"),
        {
            "name": "served-local",
            "backend": "openai",
            "config": config_with(served, base_url="http://127.0.0.1:9000/v1"),
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    # The unchanged URL written differently (a trailing slash) is no change.
    response = client.patch(
        detail(served), {"config": config_with(served, base_url="http://vllm:8000/v1/")}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert (
        token_client(root)
        .patch(detail(served), {"config": config_with(served, base_url="http://127.0.0.1:9000/v1")}, format="json")
        .status_code
        == 200
    )


def test_only_a_superuser_may_switch_on_trust_remote_code(maya, lee, root, tmp_path):
    config = {"model_dir": str(tmp_path), "trust_remote_code": True}
    for user in (maya, lee):
        response = token_client(user).post(
            reverse("models_service_api:model-version-list"),
            {"name": f"remote-{user.username}", "backend": "transformers", "config": config},
            format="json",
        )
        assert response.status_code == 400
        assert response.json()["config"] == [
            "trust_remote_code: only a superuser may switch this on (it runs Python code shipped with the model)."
        ]
    plain = model_version_create(name="plain", backend="transformers", config={"model_dir": str(tmp_path)}, by=maya)
    response = token_client(maya).patch(detail(plain), {"config": config}, format="json")
    assert response.status_code == 400 and "trust_remote_code" in response.json()["config"][0]
    response = token_client(root).patch(detail(plain), {"config": config}, format="json")
    assert response.status_code == 200
    # Once a superuser switched it on, others may change the rest (and switch it off).
    kept = model_version_update(version=plain, by=maya, config={**config, "batch_size": 4})
    assert kept.config["trust_remote_code"] is True
    model_version_update(version=plain, by=maya, config={"model_dir": str(tmp_path)})
    # Code with no person behind it (an import, the demo) has no privilege either.
    with pytest.raises(ValidationError):
        model_version_create(name="by-nobody", backend="vllm", config={"model": "m", "trust_remote_code": True})


# --- The admin ----------------------------------------------------------------------------------


def admin_form(version, **changes):
    data = {
        "name": version.name,
        "backend": version.backend,
        "parent": "",
        "config": json.dumps(version.config),
        "default_sampling": json.dumps(version.default_sampling),
        "description": version.description,
    }
    data.update(changes)
    return data


def test_the_admin_refuses_what_the_api_refuses(client, maya, root, project, versions, served, tmp_path):
    maya.is_staff = True
    maya.save()
    round_create(project=project, baseline=versions[0], candidate=served)
    change = reverse("admin:models_service_modelversion_change", args=[served.pk])
    client.force_login(maya)
    repointed = json.dumps(config_with(served, base_url="http://127.0.0.1:9000/v1"))
    response = client.post(change, admin_form(served, config=repointed))
    assert response.status_code == 200  # the form again, with its errors
    assert "base_url: only a superuser may change this, as it is in use" in response.content.decode()
    served.refresh_from_db()
    assert served.config["base_url"] == "http://vllm:8000/v1"
    # The backend is not even a field of the form for her.
    response = client.post(change, admin_form(served, backend="imported", description="renamed"))
    assert response.status_code == 302
    served.refresh_from_db()
    assert served.backend == "openai" and served.description == "renamed"
    # Nor may she add a version that runs the model's code, or one at a host not listed.
    add = reverse("admin:models_service_modelversion_add")
    response = client.post(
        add,
        admin_form(
            ModelVersion(name="remote", backend="transformers"),
            config=json.dumps({"model_dir": str(tmp_path), "trust_remote_code": True}),
        ),
    )
    assert response.status_code == 200 and "only a superuser may switch this on" in response.content.decode()
    response = client.post(
        add,
        admin_form(
            ModelVersion(name="elsewhere", backend="openai"), config=json.dumps({"base_url": "http://evil.test/v1"})
        ),
    )
    assert response.status_code == 200
    assert "the host &#x27;evil.test&#x27; is not among the model hosts" in response.content.decode()
    assert not ModelVersion.objects.filter(name__in=["remote", "elsewhere"]).exists()

    client.force_login(root)
    response = client.post(change, admin_form(served, config=repointed))
    assert response.status_code == 302
    response = client.post(
        add,
        admin_form(
            ModelVersion(name="remote", backend="transformers"),
            config=json.dumps({"model_dir": str(tmp_path), "trust_remote_code": True}),
        ),
    )
    assert response.status_code == 302
    served.refresh_from_db()
    assert served.config["base_url"] == "http://127.0.0.1:9000/v1"
    assert ModelVersion.objects.get(name="remote").config["trust_remote_code"] is True
