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

Connections go only where the outbound policy allows (models_service/outbound.py): the
URL is checked when the adapter is built, every address the host resolves to when a
connection opens, redirects are never followed and no proxy of the environment is used.
Error messages say what failed (a status code, a timeout, a refusal) but never repeat what
the server answered: they reach leads' pages, and a server that is not a model server
(an internal address) must not be read through them. The answer goes to the log, cut short.
"""

from __future__ import annotations

import http
import json
import logging
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
from models_service.outbound import HostPolicy, HostRefused, PolicyTransport, host_policy, url_refusal

logger = logging.getLogger(__name__)

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


# How much of a refused answer goes to the log (never to a page).
LOGGED_BODY_CHARS = 500


def _status(code: int) -> str:
    try:
        return f"HTTP {code} {http.HTTPStatus(code).phrase}"
    except ValueError:
        return f"HTTP {code}"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _body_for_log(response: httpx.Response) -> str:
    """The start of the server's answer, for the log only (a stream is read no further)."""
    try:
        if response.is_stream_consumed or response.is_closed:
            raw = response.content
        else:
            raw = b""
            for chunk in response.iter_bytes():
                raw += chunk
                if len(raw) >= LOGGED_BODY_CHARS:
                    break
    except (httpx.HTTPError, httpx.StreamError):
        return "(unreadable)"
    return raw[:LOGGED_BODY_CHARS].decode("utf-8", "replace")


def _check(response: httpx.Response) -> None:
    code = response.status_code
    if code < 300:
        return
    url = response.request.url
    logger.warning("model server %s answered %s: %r", url, code, _body_for_log(response))
    if code < 400:
        # Redirects are not followed: the target could be any host, the policy's or not.
        raise RequestFailed(
            f"{_status(code)} from {url}: the server redirects elsewhere and redirects are not followed; "
            "set base_url to the server's own address",
            retryable=False,
        )
    raise RequestFailed(
        f"{_status(code)} from {url}", retryable=code in RETRY_STATUSES, retry_after=_retry_after(response)
    )


def _describe(exc: httpx.HTTPError) -> str:
    """A failed request in words. Timeouts and connection errors are the client's own
    words; protocol errors may quote what the remote sent (h11 quotes a bad status line),
    so they only say what kind of error it was."""
    kind = type(exc).__name__
    if isinstance(exc, (httpx.ProtocolError, httpx.DecodingError)):
        logger.warning("model server: %s: %s", kind, str(exc)[:LOGGED_BODY_CHARS])
        return f"{kind}: the server's answer is not valid HTTP"
    detail = str(exc).strip() or "no detail"
    return f"{kind}: {detail}"[:500]


class OpenAICompatBackend:
    name = "openai"

    def __init__(self, config: OpenAIConfig, *, key: str = "", policy: HostPolicy | None = None):
        self.config = config
        # The policy of the settings unless given (a script without Django settings gives its own).
        self.policy = host_policy() if policy is None else policy
        refusal = url_refusal(config.base_url, self.policy)
        if refusal:
            raise HostRefused(f"refused by the outbound policy: {refusal}")
        self._limit = _limit(key or config.base_url + "|" + config.model, config.max_concurrency)
        self._model = config.model
        self._model_lock = threading.Lock()
        headers = {"Accept": "application/json"}
        if config.api_key_env:
            api_key = os.environ.get(config.api_key_env, "")
            if not api_key:
                raise BackendUnavailable(f"environment variable {config.api_key_env} (the API key) is not set")
            headers["Authorization"] = f"Bearer {api_key}"
        limits = httpx.Limits(max_connections=config.max_concurrency, max_keepalive_connections=config.max_concurrency)
        self._client = httpx.Client(
            base_url=config.base_url + "/",
            headers=headers,
            timeout=httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s),
            transport=PolicyTransport(self.policy, limits=limits),
            follow_redirects=False,
            # No proxies, .netrc or other settings from the environment: a proxy would
            # make the connection the policy checks, to wherever it is told.
            trust_env=False,
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
            except HostRefused as exc:
                failure = RequestFailed(str(exc), retryable=False)
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
            logger.warning("model server %s: not a chat completion: %r", response.request.url, _body_for_log(response))
            raise RequestFailed("the server's answer is not a chat completion", retryable=True) from exc
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
                    content_type = response.headers.get("content-type", "").lower()
                    if not content_type.startswith("text/event-stream"):
                        logger.warning(
                            "model server %s: not an event stream (%s): %r",
                            response.request.url,
                            content_type,
                            _body_for_log(response),
                        )
                        raise RequestFailed("the server's answer is not an event stream", retryable=False)
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
                        logger.warning(
                            "model server %s failed mid-answer: %r",
                            response.request.url,
                            str(chunk["error"])[:LOGGED_BODY_CHARS],
                        )
                        raise RequestFailed("the server reported an error mid-answer", retryable=True)
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
