"""The ``openai`` backend: chat completions from any OpenAI-compatible server
(``vllm serve`` first of all; ``transformers serve``, TGI, llama.cpp, hosted APIs).

Written to the protocol, not to one server's habits:
- ``max_tokens`` is always sent (some servers otherwise generate 1,024 tokens or more);
- a stream may end with ``data: [DONE]`` or simply close: both end the answer;
- ``n``, ``logprobs`` and ``response_format`` are never relied on;
- the model name is the configured one, or the first one ``/models`` lists.

Requests run concurrently (threads) under a per-version limit shared by everything in
the process (batch sampling and live streams alike); failed requests are retried on
connection errors, timeouts, 408/429 and 5xx, with exponential backoff and jitter
(honouring ``Retry-After``).
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from models_service.backends import (
    BackendUnavailable,
    Generation,
    GenerationError,
    GenerationRequest,
    GenerationResult,
    OpenAIConfig,
    StreamEvent,
)

RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})

_limits: dict[str, threading.BoundedSemaphore] = {}
_limits_lock = threading.Lock()


def _limit(key: str, size: int) -> threading.BoundedSemaphore:
    """The process-wide semaphore of one version (a changed limit gets a fresh one)."""
    name = f"{key}|{size}"
    with _limits_lock:
        if name not in _limits:
            _limits[name] = threading.BoundedSemaphore(size)
        return _limits[name]


class RequestFailed(Exception):
    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


def _server_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300]
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:300]
        if body.get("detail"):
            return str(body["detail"])[:300]
        if isinstance(error, str):
            return error[:300]
    return json.dumps(body)[:300]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _check(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    response.read()
    message = f"HTTP {response.status_code} from {response.request.url}: {_server_message(response)}"
    raise RequestFailed(message, retryable=response.status_code in RETRY_STATUSES, retry_after=_retry_after(response))


def _describe(exc: httpx.HTTPError) -> str:
    kind = type(exc).__name__
    detail = str(exc).strip() or "no detail"
    return f"{kind}: {detail}"[:500]


class OpenAICompatBackend:
    name = "openai"

    def __init__(self, config: OpenAIConfig, *, key: str = ""):
        self.config = config
        self._limit = _limit(key or config.base_url + "|" + config.model, config.max_concurrency)
        self._model = config.model
        self._model_lock = threading.Lock()
        headers = {"Accept": "application/json"}
        if config.api_key_env:
            api_key = os.environ.get(config.api_key_env, "")
            if not api_key:
                raise BackendUnavailable(f"environment variable {config.api_key_env} (the API key) is not set")
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(
            base_url=config.base_url + "/",
            headers=headers,
            timeout=httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s),
            limits=httpx.Limits(
                max_connections=config.max_concurrency, max_keepalive_connections=config.max_concurrency
            ),
            follow_redirects=False,
        )

    # --- plumbing ------------------------------------------------------------------------

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        # Exponential with "equal jitter": half the step is fixed, half random, so waits
        # grow and concurrent clients that failed together do not retry together.
        cap = min(self.config.backoff_max_s, self.config.backoff_base_s * (2**attempt))
        delay = cap / 2 + random.uniform(0, cap / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.config.backoff_max_s))
        return delay

    def _with_retries(self, call: Any) -> Any:
        attempt = 0
        while True:
            try:
                return call()
            except httpx.HTTPError as exc:
                failure = RequestFailed(_describe(exc), retryable=True)
            except RequestFailed as exc:
                failure = exc
            if not failure.retryable or attempt >= self.config.max_retries:
                if attempt:
                    raise RequestFailed(
                        f"{failure} (after {attempt + 1} attempts)", retryable=failure.retryable
                    ) from failure
                raise failure
            time.sleep(self._backoff(attempt, failure.retry_after))
            attempt += 1

    def model_name(self) -> str:
        """The configured model, or the first model the server lists (asked once)."""
        with self._model_lock:
            if not self._model:

                def ask() -> str:
                    response = self._client.get("models")
                    _check(response)
                    try:
                        data = response.json().get("data") or []
                        return str(data[0]["id"])
                    except (ValueError, LookupError, TypeError, AttributeError) as exc:
                        raise RequestFailed(
                            f"{self.config.base_url}/models lists no model; set 'model' in the version's config",
                            retryable=False,
                        ) from exc

                self._model = self._with_retries(ask)
            return self._model

    def _body(self, request: GenerationRequest, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model_name(),
            "messages": [{"role": m["role"], "content": m["content"]} for m in request.messages],
            **request.params.request_fields(),
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    # --- batch -----------------------------------------------------------------------------

    def _one(self, request: GenerationRequest) -> GenerationResult:
        if not self._limit.acquire(timeout=self.config.timeout_s):
            return GenerationError("too many requests in flight for this version; gave up waiting", retryable=True)
        try:
            body = self._body(request, stream=False)

            def call() -> Generation:
                started = time.monotonic()
                response = self._client.post("chat/completions", json=body)
                _check(response)
                return self._parse(response, started)

            return self._with_retries(call)
        except RequestFailed as exc:
            return GenerationError(str(exc), retryable=exc.retryable)
        finally:
            self._limit.release()

    @staticmethod
    def _parse(response: httpx.Response, started: float) -> Generation:
        try:
            data = response.json()
            choice = data["choices"][0]
            message = choice.get("message") or {}
            text = message.get("content")
            if text is None:
                text = choice.get("text") or ""
            usage = data.get("usage") or {}
        except (ValueError, LookupError, TypeError, AttributeError) as exc:
            raise RequestFailed(
                f"the server's answer is not a chat completion: {response.text[:200]}", retryable=True
            ) from exc
        return Generation(
            text=str(text),
            finish_reason=str(choice.get("finish_reason") or ""),
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            latency_ms=int((time.monotonic() - started) * 1000),
        )

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        if not requests:
            return []
        try:
            self.model_name()
        except RequestFailed as exc:
            return [GenerationError(str(exc), retryable=exc.retryable) for _ in requests]
        workers = min(self.config.max_concurrency, len(requests))
        if workers == 1:
            return [self._one(r) for r in requests]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="openai") as pool:
            return list(pool.map(self._one, requests))

    # --- streaming ---------------------------------------------------------------------------

    def stream(self, request: GenerationRequest) -> Iterator[StreamEvent]:
        """Yield the answer's pieces as they arrive, then a final event with the whole Generation.

        Connection failures before the first piece are retried; after it they raise
        (the caller has shown part of an answer and must start over).
        """
        if not self._limit.acquire(timeout=self.config.timeout_s):
            raise RequestFailed("too many requests in flight for this version", retryable=True)
        try:
            body = self._body(request, stream=True)
            started = time.monotonic()
            parts: list[str] = []
            finish_reason = ""
            usage: dict[str, Any] = {}

            def open_stream() -> tuple[Any, httpx.Response]:
                manager = self._client.stream("POST", "chat/completions", json=body)
                response = manager.__enter__()
                try:
                    _check(response)
                except BaseException:
                    manager.__exit__(None, None, None)
                    raise
                return manager, response

            manager, response = self._with_retries(open_stream)
            try:
                for event in sse_events(response.iter_lines()):
                    if event == "[DONE]":
                        break
                    try:
                        chunk = json.loads(event)
                    except ValueError:
                        continue  # keep-alives and junk between events
                    if not isinstance(chunk, dict):
                        continue
                    if chunk.get("error"):
                        error = chunk["error"]
                        message = error.get("message") if isinstance(error, dict) else str(error)
                        raise RequestFailed(f"the server failed mid-answer: {message}", retryable=True)
                    if chunk.get("usage"):
                        usage = chunk["usage"]
                    for choice in chunk.get("choices") or []:
                        delta = (choice.get("delta") or {}).get("content") or ""
                        if delta:
                            parts.append(delta)
                            yield StreamEvent(delta=delta)
                        if choice.get("finish_reason"):
                            finish_reason = str(choice["finish_reason"])
            except httpx.HTTPError as exc:
                raise RequestFailed(f"the stream broke off: {_describe(exc)}", retryable=True) from exc
            finally:
                manager.__exit__(None, None, None)
            yield StreamEvent(
                done=True,
                generation=Generation(
                    text="".join(parts),
                    finish_reason=finish_reason,
                    prompt_tokens=usage.get("prompt_tokens"),
                    completion_tokens=usage.get("completion_tokens"),
                    latency_ms=int((time.monotonic() - started) * 1000),
                ),
            )
        finally:
            self._limit.release()

    def close(self) -> None:
        self._client.close()


def sse_events(lines: Iterator[str]) -> Iterator[str]:
    """The data of each server-sent event (data lines joined by newlines).

    An event ends at a blank line or at the end of the stream (a server that closes the
    connection without a final blank line or a ``[DONE]`` still delivers its last event).
    """
    data: list[str] = []
    for line in lines:
        line = line.rstrip("\r")
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue  # a comment (keep-alive)
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value.removeprefix(" "))
    if data:
        yield "\n".join(data)
