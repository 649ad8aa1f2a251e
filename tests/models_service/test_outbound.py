"""The outbound policy (models_service/outbound.py) against real local HTTP servers: which
hosts a model version may point at, checked when it is saved and again, address by
address, when the backend connects; redirects not followed; and error texts that say what
failed without repeating what the server answered."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from django.urls import reverse

from annotation.models import Prompt
from core.text import messages_hash
from models_service import outbound
from models_service.backends import (
    Generation,
    GenerationError,
    GenerationRequest,
    OpenAIConfig,
    SamplingParams,
)
from models_service.backends.openai_compat import OpenAICompatBackend, RequestFailed
from models_service.models import SamplingFailure
from models_service.outbound import HostPolicy, HostRefused, url_refusal
from models_service.rounds import round_create
from models_service.services import model_version_create
from models_service.testing import Script, ScriptedServer, free_port
from tests.conftest import token_client
from tests.models_service.conftest import openai_config

ROOT = Path(__file__).resolve().parents[2]
SECRET = "INTERNAL-ONLY-7f3a"  # what an internal address answers; it must never be shown
HELLO = [{"role": "user", "content": "Say hello."}]


def request(seed=1):
    return GenerationRequest(messages=HELLO, params=SamplingParams(max_tokens=8, seed=seed))


def backend(base_url, *, allowed, **overrides):
    config = OpenAIConfig(
        **{"base_url": base_url, "model": "m", "max_retries": 0, "connect_timeout_s": 2, "timeout_s": 5, **overrides}
    )
    return OpenAICompatBackend(config, policy=HostPolicy.parse(allowed))


@pytest.fixture
def scripted():
    with ScriptedServer() as server:
        yield server


# --- The list --------------------------------------------------------------------------------


def test_private_loopback_and_link_local_addresses_are_refused_unless_listed():
    nothing = HostPolicy.parse([])
    for url in (
        "http://127.0.0.1:8000/v1",
        "http://10.0.0.5/v1",
        "http://169.254.169.254/latest",
        "http://[::1]:8000/v1",
        "http://[fe80::1]/v1",
        "http://[::ffff:127.0.0.1]/v1",
        "http://0.0.0.0:8000/v1",
    ):
        assert "not among the model hosts" in url_refusal(url, nothing), url
    listed = HostPolicy.parse(["127.0.0.1", "10.0.0.0/8", "::1"])
    for url in ("http://127.0.0.1:8000/v1", "http://10.20.30.40/v1", "http://[::1]:8000/v1"):
        assert url_refusal(url, listed) == "", url
    assert url_refusal("http://169.254.169.254/latest", listed)
    assert url_refusal("http://[::ffff:127.0.0.1]/v1", listed) == ""  # the same address, written as IPv6
    # IPv6 ways to an IPv4 address count as that address (NAT64, 6to4).
    wildcard = HostPolicy.parse(["*.models.example.com"])
    for disguised in ("64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::1"):
        assert "link-local" in wildcard.address_refusal("a.models.example.com", outbound._address(disguised))


def test_a_name_is_allowed_exactly_or_under_a_wildcard_and_its_addresses_are_checked_again():
    policy = HostPolicy.parse(["vllm", "*.models.example.com", "192.0.2.0/24"])
    assert url_refusal("http://vllm:8000/v1", policy) == ""
    assert url_refusal("https://a.models.example.com/v1", policy) == ""
    assert "not among" in url_refusal("https://models.example.com.evil.test/v1", policy)
    assert "not among" in url_refusal("https://evilmodels.example.com/v1", policy)
    assert "not among" in url_refusal("http://vllm.evil.test/v1", policy)
    ip = outbound._address
    # A name listed exactly may live on the operator's private network (docker-compose's vllm) ...
    assert policy.address_refusal("vllm", ip("172.18.0.5")) == ""
    # ... but not on loopback or link-local (a cloud's metadata service) unless those are listed.
    assert "loopback" in policy.address_refusal("vllm", ip("127.0.0.1"))
    assert "link-local" in policy.address_refusal("vllm", ip("169.254.169.254"))
    # A wildcard allows public addresses only, and a listed range whatever resolves into it.
    assert policy.address_refusal("a.models.example.com", ip("8.8.8.8")) == ""
    assert "private" in policy.address_refusal("a.models.example.com", ip("10.1.2.3"))
    assert policy.address_refusal("a.models.example.com", ip("192.0.2.7")) == ""


def test_the_setting_is_checked_at_start_up_with_loopback_allowed_by_default_only_in_debug():
    def settings_of(**env):
        code = "import config.settings as s; print('hosts=' + ','.join(s.MODEL_HOSTS_ALLOWED))"
        clean = {k: v for k, v in os.environ.items() if k not in ("MODEL_HOSTS_ALLOWED", "DEBUG", "SECRET_KEY")}
        return subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env={**clean, "SECRET_KEY": "s" * 60, "ALLOWED_HOSTS": "x", **env},
            capture_output=True,
            text=True,
        )

    debug = settings_of(DEBUG="1")
    assert debug.returncode == 0, debug.stderr
    assert "hosts=localhost,127.0.0.1,::1\n" in debug.stdout
    production = settings_of(DEBUG="0")
    assert production.returncode == 0, production.stderr
    assert "hosts=\n" in production.stdout
    listed = settings_of(DEBUG="0", MODEL_HOSTS_ALLOWED="vllm, *.example.com, 10.0.0.0/8")
    assert "hosts=vllm,*.example.com,10.0.0.0/8\n" in listed.stdout, listed.stderr
    for bad in ("*", "http://vllm:8000", "10.0.0.0/33", "*.com"):
        refused = settings_of(DEBUG="0", MODEL_HOSTS_ALLOWED=bad)
        assert refused.returncode != 0 and "ImproperlyConfigured: MODEL_HOSTS_ALLOWED" in refused.stderr, bad


def test_a_url_with_a_query_string_a_fragment_or_credentials_is_refused(maya):
    client = token_client(maya)
    for url, words in (
        ("http://127.0.0.1:8000/api/v1/projects/?x=", "query string"),
        ("http://127.0.0.1:8000/v1#x", "fragment"),
        ("http://user:pw@127.0.0.1:8000/v1", "credentials"),
        ("ftp://127.0.0.1/v1", "http://"),
    ):
        response = client.post(
            reverse("models_service_api:model-version-list"),
            {"name": "odd", "backend": "openai", "config": {"base_url": url}},
            format="json",
        )
        assert response.status_code == 400, url
        assert any(m.startswith("base_url:") and words in m for m in response.json()["config"]), response.json()


# --- Save time and connect time --------------------------------------------------------------


def test_a_host_not_listed_is_refused_when_the_version_is_saved_and_when_the_backend_connects(
    maya, scripted, settings, monkeypatch
):
    settings.MODEL_HOSTS_ALLOWED = ["vllm"]
    response = token_client(maya).post(
        reverse("models_service_api:model-version-list"),
        {"name": "mine", "backend": "openai", "config": {"base_url": scripted.base_url}},
        format="json",
    )
    assert response.status_code == 400
    (message,) = response.json()["config"]
    assert (
        message
        == "base_url: the address 127.0.0.1 is not among the model hosts this platform allows (MODEL_HOSTS_ALLOWED)"
    )
    # A version saved before the host was taken off the list cannot reach it either.
    monkeypatch.setenv("LEAKED_API_KEY", "sk-server-secret")
    with pytest.raises(HostRefused, match="refused by the outbound policy"):
        backend(scripted.base_url, allowed=["vllm"], api_key_env="LEAKED_API_KEY")
    assert scripted.seen == []


def test_a_listed_host_gets_the_prompt_and_the_key(scripted, monkeypatch):
    monkeypatch.setenv("SCRIPTED_API_KEY", "sk-for-this-server")
    adapter = backend(scripted.base_url, allowed=["127.0.0.1"], api_key_env="SCRIPTED_API_KEY")
    try:
        (result,) = adapter.generate([request()])
        events = list(adapter.stream(request()))
    finally:
        adapter.close()
    assert isinstance(result, Generation) and result.text == "Hello from the scripted server."
    assert events[-1].done and events[-1].generation.text == result.text
    assert [s.headers["Authorization"] for s in scripted.completions()] == ["Bearer sk-for-this-server"] * 2


def test_a_name_that_resolves_to_a_refused_address_at_connect_time_is_not_connected_to(scripted, monkeypatch):
    # The name is listed, so the version saves; at connect time it resolves to loopback
    # (DNS rebinding, or a record changed after the check), which the list does not allow.
    resolved: list[str] = []

    def resolve(host, port):
        resolved.append(host)
        return ["127.0.0.1"] if host == "models.internal.test" else socket.gethostbyname_ex(host)[2]

    monkeypatch.setattr(outbound, "resolve", resolve)
    url = f"http://models.internal.test:{scripted.port}/v1"
    assert url_refusal(url, HostPolicy.parse(["models.internal.test"])) == ""
    adapter = backend(url, allowed=["models.internal.test"], max_retries=3)
    (result,) = adapter.generate([request()])
    with pytest.raises(RequestFailed, match=r"refused by the outbound policy: .* loopback address"):
        list(adapter.stream(request()))
    adapter.close()
    assert isinstance(result, GenerationError) and not result.retryable  # refused, so never retried
    assert result.message == (
        "refused by the outbound policy: 'models.internal.test' resolves to 127.0.0.1, a loopback address, "
        "which MODEL_HOSTS_ALLOWED does not list"
    )
    assert scripted.seen == [] and resolved == ["models.internal.test"] * 2

    # With the address listed too, the connection goes to the address that was checked,
    # while the request still names the host.
    adapter = backend(url, allowed=["models.internal.test", "127.0.0.1"])
    (result,) = adapter.generate([request()])
    adapter.close()
    assert isinstance(result, Generation)
    assert scripted.completions()[0].headers["Host"] == f"models.internal.test:{scripted.port}"


def test_a_name_under_a_wildcard_may_not_resolve_to_a_private_address(scripted, monkeypatch):
    monkeypatch.setattr(outbound, "resolve", lambda host, port: ["10.9.8.7"])
    adapter = backend("http://gpu.models.example.com:8000/v1", allowed=["*.models.example.com"])
    (result,) = adapter.generate([request()])
    adapter.close()
    assert isinstance(result, GenerationError) and "a wildcard entry allows public addresses only" in result.message


def test_a_redirect_off_the_list_is_not_followed(scripted):
    with ScriptedServer() as elsewhere:
        scripted.script = Script(
            status=307, headers={"Location": f"http://localhost:{elsewhere.port}/v1/chat/completions"}
        )
        adapter = backend(scripted.base_url, allowed=["127.0.0.1"])
        (result,) = adapter.generate([request()])
        adapter.close()
        assert elsewhere.seen == []
    assert isinstance(result, GenerationError) and not result.retryable
    assert "HTTP 307 Temporary Redirect" in result.message and "redirects are not followed" in result.message
    assert "localhost" not in result.message  # where it pointed is the server's answer too


# --- What users read when it fails -----------------------------------------------------------


def test_a_failed_request_says_its_status_but_not_the_body_which_goes_to_the_log_cut_short(scripted, caplog):
    scripted.script = Script(status=400, body=((SECRET + " ") * 200).encode())
    adapter = backend(scripted.base_url, allowed=["127.0.0.1"])
    with caplog.at_level(logging.WARNING, logger="models_service.backends.openai_compat"):
        (result,) = adapter.generate([request()])
    assert isinstance(result, GenerationError)
    assert result.message == f"HTTP 400 Bad Request from {scripted.base_url}/chat/completions"
    logged = [r.getMessage() for r in caplog.records if SECRET in r.getMessage()]
    assert logged and all(len(m) < 800 for m in logged)

    scripted.script = Script(raw=f"<html>{SECRET}</html>".encode())  # 200, but no model server
    (result,) = adapter.generate([request()])
    with pytest.raises(RequestFailed) as streamed:
        list(adapter.stream(request()))
    assert result.message.startswith("the server's answer is not a chat completion")
    assert "not an event stream" in str(streamed.value)

    scripted.script = Script(stream_error=SECRET)
    with pytest.raises(RequestFailed) as mid_answer:
        list(adapter.stream(request()))
    adapter.close()
    assert "mid-answer" in str(mid_answer.value)
    assert SECRET not in result.message + str(streamed.value) + str(mid_answer.value)


def test_a_server_that_does_not_speak_http_is_not_quoted():
    # An internal service on another protocol answers with its banner; h11 would quote it.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def answer():
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            connection.recv(65536)
            connection.sendall(f"SSH-2.0-OpenSSH_9.6 {SECRET}\r\n".encode())
            # Half-close, then read what the client still sends: closing with unread bytes
            # would reset the connection and drop the banner before the client reads it.
            connection.shutdown(socket.SHUT_WR)
            try:
                while connection.recv(65536):
                    pass
            except OSError:
                pass
            connection.close()

    threading.Thread(target=answer, daemon=True).start()
    adapter = backend(f"http://127.0.0.1:{listener.getsockname()[1]}/v1", allowed=["127.0.0.1"])
    (result,) = adapter.generate([request()])
    adapter.close()
    listener.close()
    assert isinstance(result, GenerationError) and "not valid HTTP" in result.message
    assert SECRET not in result.message


def test_sampling_failures_shown_to_leads_carry_no_remote_body(
    client, lee, project, versions, scripted, django_capture_on_commit_callbacks
):
    scripted.script = Script(status=503, body=SECRET.encode())
    messages = [{"role": "user", "content": "A prompt"}]
    Prompt.objects.create(project=project, messages=messages, content_hash=messages_hash(messages))
    served = model_version_create(name="served", backend="openai", config=openai_config(scripted, max_retries=0))
    round_ = round_create(project=project, baseline=versions[0], candidate=served)
    with django_capture_on_commit_callbacks(execute=True):
        token_client(lee).post(reverse("models_service_api:round-sampling", args=[round_.pk]))
    failure = SamplingFailure.objects.get(job__model_version=served)
    assert failure.error.startswith("HTTP 503 Service Unavailable from http://127.0.0.1:")
    api = token_client(lee).get(reverse("models_service_api:round-sampling-failures", args=[round_.pk]))
    client.force_login(lee)
    panel = client.get(reverse("sampling-panel", args=[project.slug]))
    assert "HTTP 503" in panel.content.decode()
    assert SECRET not in api.content.decode() + panel.content.decode()


def test_nothing_listens_there_is_a_connection_error_in_the_clients_own_words():
    adapter = backend(f"http://127.0.0.1:{free_port()}/v1", allowed=["127.0.0.1"])
    (result,) = adapter.generate([request()])
    adapter.close()
    assert isinstance(result, GenerationError) and result.retryable and result.message.startswith("ConnectError:")


def test_the_stack_lets_its_app_services_reach_its_own_vllm_service():
    import yaml

    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in ("web", "worker", "gpu-worker"):
        value = services[name]["environment"]["MODEL_HOSTS_ALLOWED"]
        assert value == "${MODEL_HOSTS_ALLOWED:-vllm}", name
    policy = HostPolicy.parse(["vllm"])
    assert url_refusal("http://vllm:8000/v1", policy) == ""
    assert policy.address_refusal("vllm", outbound._address("172.18.0.4")) == ""  # compose's network
