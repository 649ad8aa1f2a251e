"""The ``vllm`` backend: vLLM's offline engine (``LLM`` + ``SamplingParams``) for Celery
workers on the ``gpu`` queue.

vLLM is an optional extra (``pip install .[gpu]``, the gpu-worker image); it is imported
here only when a vllm version is actually sampled, so the web app, the README's
commands and CI never need it. The engine is built once per sampling job (loading a
checkpoint takes minutes) and takes whole batches: vLLM schedules them itself
(continuous batching, paged attention).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator, Sequence
from typing import Any

from models_service.backends import (
    BackendUnavailable,
    Generation,
    GenerationError,
    GenerationRequest,
    GenerationResult,
    SamplingParams,
    StreamEvent,
    VLLMConfig,
)


def vllm_available() -> tuple[bool, str]:
    """(True, "") where vllm and a CUDA GPU are present; otherwise why not."""
    try:
        import torch
    except ImportError:
        return False, "torch is not installed"
    if not torch.cuda.is_available():
        return False, "no CUDA GPU"
    try:
        import vllm  # noqa: F401
    except ImportError:
        return False, "vllm is not installed (pip install .[gpu])"
    return True, ""


class VLLMBackend:
    name = "vllm"

    def __init__(self, config: VLLMConfig):
        self.config = config
        try:
            from vllm import LLM
        except ImportError as exc:
            raise BackendUnavailable(
                "the vllm backend needs vLLM, installed on GPU workers only (pip install .[gpu]); this process has none"
            ) from exc
        kwargs: dict[str, Any] = {
            "model": config.model,
            "tensor_parallel_size": config.tensor_parallel_size,
            "dtype": config.dtype,
            "gpu_memory_utilization": config.gpu_memory_utilization,
            "trust_remote_code": config.trust_remote_code,
            "enforce_eager": config.enforce_eager,
        }
        if config.max_model_len is not None:
            kwargs["max_model_len"] = config.max_model_len
        self.llm = LLM(**kwargs)
        # The sampling job hands the engine this many prompts at a time (SAMPLING_BATCH_SIZE
        # suits HTTP backends; vLLM schedules big batches best itself).
        self.preferred_batch_size = config.batch_size

    @staticmethod
    def _params(params: SamplingParams) -> Any:
        from vllm import SamplingParams as VSamplingParams

        return VSamplingParams(
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_tokens,
            seed=params.seed,
            stop=list(params.stop) or None,
        )

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        results: list[GenerationResult] = []
        for start in range(0, len(requests), self.config.batch_size):
            chunk = list(requests[start : start + self.config.batch_size])
            started = time.monotonic()
            try:
                outputs = self.llm.chat(
                    [r.messages for r in chunk],
                    sampling_params=[self._params(r.params) for r in chunk],
                    use_tqdm=False,
                )
            except Exception as exc:
                error = GenerationError(f"{type(exc).__name__}: {exc}"[:500], retryable=True)
                results.extend(error for _ in chunk)
                continue
            elapsed_ms = int((time.monotonic() - started) * 1000)
            for output in outputs:
                completion = output.outputs[0]
                results.append(
                    Generation(
                        text=completion.text,
                        finish_reason=str(completion.finish_reason or ""),
                        prompt_tokens=len(output.prompt_token_ids or []),
                        completion_tokens=len(completion.token_ids or []),
                        latency_ms=elapsed_ms,
                    )
                )
        return results

    def stream(self, request: GenerationRequest) -> Iterator[StreamEvent]:
        # The offline engine answers whole; live mode is better served by `vllm serve`
        # (an openai version), but this still works: one piece, then done.
        (result,) = self.generate([request])
        if isinstance(result, GenerationError):
            raise BackendUnavailable(result.message)
        yield StreamEvent(delta=result.text)
        yield StreamEvent(done=True, generation=result)

    def close(self) -> None:
        del self.llm
        gc.collect()
        try:
            import torch

            torch.cuda.empty_cache()
        except Exception:
            pass
