"""Fixtures of the models service tests: a tiny randomly initialised chat model, built
once per session, and a real OpenAI-compatible server (``transformers serve``) on
127.0.0.1 serving it. Nothing is downloaded (HF_HUB_OFFLINE=1).

The test settings are production's, where no model host is allowed: these tests list
127.0.0.1, where their servers run, and nothing else (tests/models_service/test_outbound.py
changes the list per test)."""

from __future__ import annotations

import os

import pytest

from models_service.testing import TransformersServer, build_tiny_chat_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


TEST_MODEL_HOSTS = ["127.0.0.1"]


@pytest.fixture(autouse=True)
def model_hosts_allowed(settings):
    settings.MODEL_HOSTS_ALLOWED = list(TEST_MODEL_HOSTS)
    return settings


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny-llama") / "model")


@pytest.fixture(scope="session")
def openai_server(tiny_model_dir, tmp_path_factory):
    """One server for the session. Tests that kill it restart it before they end."""
    log = tmp_path_factory.mktemp("serve") / "transformers-serve.log"
    server = TransformersServer(tiny_model_dir, log_path=log).start()
    yield server
    server.stop()


@pytest.fixture
def live_server_up(openai_server):
    """The session's server, started again if an earlier test left it down."""
    if openai_server.process is None or openai_server.process.poll() is not None:
        openai_server.start()
    return openai_server


def openai_config(server, **overrides):
    return {
        "base_url": server.base_url,
        "max_concurrency": 4,
        "timeout_s": 30,
        "connect_timeout_s": 2,
        "max_retries": 1,
        "backoff_base_s": 0.05,
        "backoff_max_s": 0.2,
        **overrides,
    }


TINY_SAMPLING = {"max_tokens": 8, "temperature": 1.0}
