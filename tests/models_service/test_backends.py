"""The generation backends: the openai adapter against a real OpenAI-compatible server
(``transformers serve`` with a tiny local model), the transformers adapter with the same
model, the vllm adapter where CUDA and vllm exist, and the typed configuration schemas."""

from __future__ import annotations

import time

import pytest
from pydantic import ValidationError

from models_service.backends import (
    CONFIG_SCHEMAS,
    Generation,
    GenerationError,
    GenerationRequest,
    OpenAIConfig,
    SamplingParams,
    TransformersConfig,
    backend_build,
    config_validate,
)
from models_service.backends.openai_compat import OpenAICompatBackend, sse_events
from models_service.backends.vllm import vllm_available
from models_service.testing import free_port
from tests.models_service.conftest import openai_config

HELLO = [{"role": "user", "content": "Write a short poem about the sea."}]


def request(max_tokens=8, temperature=1.0, seed=1, messages=HELLO):
    return GenerationRequest(
        messages=messages, params=SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed)
    )


# --- openai -------------------------------------------------------------------------------


def test_openai_adapter_answers_a_batch_concurrently_from_a_real_server(live_server_up):
    backend = OpenAICompatBackend(OpenAIConfig(**openai_config(live_server_up)))
    try:
        results = backend.generate([request(seed=s) for s in range(6)])
    finally:
        backend.close()
    assert len(results) == 6
    assert all(isinstance(r, Generation) for r in results), results
    for result in results:
        # max_tokens is always sent: without it this server generates 1,024 tokens.
        assert result.completion_tokens is not None and 1 <= result.completion_tokens <= 8
        assert result.prompt_tokens and result.prompt_tokens > 0
        assert result.finish_reason in ("length", "stop")
        assert result.latency_ms is not None


def test_openai_adapter_finds_the_model_name_when_none_is_configured(live_server_up, tiny_model_dir):
    backend = OpenAICompatBackend(OpenAIConfig(**openai_config(live_server_up)))
    assert backend.model_name() == str(tiny_model_dir)
    backend.close()


def test_openai_adapter_sends_the_seed_so_equal_seeds_give_equal_answers(live_server_up):
    backend = OpenAICompatBackend(OpenAIConfig(**openai_config(live_server_up, max_concurrency=1)))
    first, again, other = backend.generate([request(seed=7), request(seed=7), request(seed=8, max_tokens=8)])
    backend.close()
    assert first.text == again.text
    assert isinstance(other, Generation)


def test_openai_adapter_streams_pieces_that_add_up_to_the_answer_without_a_done_line(live_server_up):
    # transformers serve ends its streams without "data: [DONE]": the end of the stream ends the answer.
    backend = OpenAICompatBackend(OpenAIConfig(**openai_config(live_server_up)))
    events = list(backend.stream(request(seed=3)))
    backend.close()
    pieces = [e.delta for e in events if not e.done]
    final = events[-1]
    assert final.done and final.generation is not None
    assert final.generation.text == "".join(pieces)
    assert final.generation.completion_tokens and final.generation.completion_tokens <= 8
    assert final.generation.finish_reason in ("length", "stop")


def test_openai_adapter_reports_a_refused_request_without_retrying_it(live_server_up):
    # This server is pinned to one model and answers another name with HTTP 400.
    backend = OpenAICompatBackend(
        OpenAIConfig(**openai_config(live_server_up, model="no-such-model", max_retries=3, backoff_base_s=1))
    )
    started = time.monotonic()
    (result,) = backend.generate([request()])
    backend.close()
    assert isinstance(result, GenerationError)
    assert "HTTP 400" in result.message and not result.retryable
    assert time.monotonic() - started < 1.0  # no backoff for a 4xx


def test_openai_adapter_retries_a_dead_server_with_backoff_then_reports_the_error():
    port = free_port()  # nothing listens there
    backend = OpenAICompatBackend(
        OpenAIConfig(
            base_url=f"http://127.0.0.1:{port}/v1", model="m", max_retries=2, backoff_base_s=0.1, backoff_max_s=1
        )
    )
    started = time.monotonic()
    (result,) = backend.generate([request()])
    elapsed = time.monotonic() - started
    backend.close()
    assert isinstance(result, GenerationError) and result.retryable
    assert "ConnectError" in result.message and "after 3 attempts" in result.message
    # Two waits: at least 0.05 + 0.1 s (half of each step is fixed), at most 0.1 + 0.2 s.
    assert 0.15 <= elapsed < 2.0


def test_backoff_grows_exponentially_with_jitter_and_respects_retry_after():
    backend = OpenAICompatBackend(
        OpenAIConfig(base_url="http://127.0.0.1:9/v1", model="m", backoff_base_s=1, backoff_max_s=8)
    )
    waits = [[backend._backoff(attempt, None) for _ in range(50)] for attempt in range(5)]
    for attempt, samples in enumerate(waits):
        cap = min(8, 2**attempt)
        assert all(cap / 2 <= w <= cap for w in samples)
        assert len(set(samples)) > 1  # jitter
    assert backend._backoff(0, 5.0) == 5.0
    assert backend._backoff(0, 100.0) == 8.0  # capped
    backend.close()


def test_sse_parser_ends_on_done_or_at_the_end_of_the_stream():
    lines = [": keep-alive", 'data: {"a": 1}', "", "data: line one", "data: line two", "", "data: [DONE]", ""]
    assert list(sse_events(iter(lines))) == ['{"a": 1}', "line one\nline two", "[DONE]"]
    # A server that closes without a blank line still delivers its last event.
    assert list(sse_events(iter(['data:{"b": 2}']))) == ['{"b": 2}']


def test_openai_config_refuses_bad_urls_unknown_settings_and_stored_keys():
    with pytest.raises(ValidationError):
        OpenAIConfig(base_url="vllm:8000")
    with pytest.raises(ValidationError):
        config_validate("openai", {"base_url": "http://vllm:8000/v1", "api_key": "sk-secret"})
    assert OpenAIConfig(base_url="http://vllm:8000/v1/").base_url == "http://vllm:8000/v1"


# --- transformers -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def transformers_backend(tiny_model_dir):
    backend = backend_build("transformers", {"model_dir": str(tiny_model_dir), "device": "cpu", "batch_size": 4})
    yield backend
    backend.close()


def test_transformers_adapter_answers_a_batch_with_the_chat_template(transformers_backend):
    prompts = [[{"role": "user", "content": f"Question number {i}?"}] for i in range(6)]
    results = transformers_backend.generate(
        [GenerationRequest(messages=m, params=SamplingParams(max_tokens=8, seed=5)) for m in prompts]
    )
    assert len(results) == 6 and all(isinstance(r, Generation) for r in results)
    for result in results:
        assert 0 <= result.completion_tokens <= 8
        assert result.finish_reason in ("length", "stop")
        assert result.prompt_tokens > 5  # the template's tokens around the question


def test_transformers_adapter_is_deterministic_for_a_seed_and_greedy_at_temperature_zero(transformers_backend):
    same = [request(seed=11), request(seed=11)]
    first = transformers_backend.generate(same[:1])[0]
    second = transformers_backend.generate(same[1:])[0]
    assert first.text == second.text
    greedy = [transformers_backend.generate([request(temperature=0, seed=s)])[0].text for s in (1, 2)]
    assert greedy[0] == greedy[1]


def test_transformers_adapter_streams_the_same_answer_it_generates(transformers_backend):
    events = list(transformers_backend.stream(request(temperature=0, max_tokens=8)))
    final = events[-1]
    assert final.done and final.generation.text == "".join(e.delta for e in events[:-1])
    batch = transformers_backend.generate([request(temperature=0, max_tokens=8)])[0]
    assert final.generation.text == batch.text


def test_transformers_adapter_refuses_a_missing_directory(tmp_path):
    from models_service.backends import BackendUnavailable

    with pytest.raises(BackendUnavailable, match="does not exist"):
        backend_build("transformers", {"model_dir": str(tmp_path / "nothing")})


def test_transformers_config_checks_device_and_dtype():
    with pytest.raises(ValidationError):
        TransformersConfig(model_dir="/m", device="gpu0")
    with pytest.raises(ValidationError):
        TransformersConfig(model_dir="/m", dtype="int3")


# --- vllm ------------------------------------------------------------------------------------

_VLLM_OK, _VLLM_WHY = vllm_available()


@pytest.mark.skipif(not _VLLM_OK, reason="needs CUDA and vllm")
def test_vllm_adapter_answers_a_batch_on_the_gpu(tiny_model_dir):
    backend = backend_build(
        "vllm", {"model": str(tiny_model_dir), "gpu_memory_utilization": 0.3, "enforce_eager": True, "batch_size": 4}
    )
    try:
        results = backend.generate([request(seed=s) for s in range(6)])
    finally:
        backend.close()
    assert all(isinstance(r, Generation) for r in results), results
    assert all(r.completion_tokens <= 8 for r in results)


def test_every_backend_has_a_schema_and_imported_generates_nothing():
    assert set(CONFIG_SCHEMAS) == {"vllm", "openai", "transformers", "imported"}
    (result,) = backend_build("imported", {}).generate([request()])
    assert isinstance(result, GenerationError) and not result.retryable
    assert "imports" in result.message
