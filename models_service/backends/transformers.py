"""The ``transformers`` backend: a local Hugging Face model directory, on CPU or GPU, for
machines without vLLM.

The model is loaded once when the adapter is built (once per sampling job, which covers
all its batches), prompts are rendered with the tokenizer's chat template and generated
in left-padded batches. Requests that share sampling parameters and seed are batched
together; the seed seeds the batch (torch's generator is per process, not per row).
Nothing is ever downloaded: ``local_files_only``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from models_service.backends import (
    BackendUnavailable,
    Generation,
    GenerationError,
    GenerationRequest,
    GenerationResult,
    SamplingParams,
    StreamEvent,
    TransformersConfig,
)

_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


class TransformersBackend:
    name = "transformers"

    def __init__(self, config: TransformersConfig):
        self.config = config
        if not Path(config.model_dir).is_dir():
            raise BackendUnavailable(f"model directory {config.model_dir!r} does not exist on this machine")
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:  # pragma: no cover - the train extra is installed in tests
            raise BackendUnavailable(
                "the transformers backend needs torch and transformers (pip install .[train])"
            ) from exc
        self._torch = torch
        device = config.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable(f"device {device!r} asked for, but this machine has no CUDA GPU")
        self.device = device
        dtype: Any = "auto"
        if config.dtype != "auto":
            dtype = getattr(torch, _DTYPES[config.dtype])
        elif device == "cpu":
            dtype = torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(
            config.model_dir, local_files_only=True, trust_remote_code=config.trust_remote_code
        )
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(
            config.model_dir, local_files_only=True, dtype=dtype, trust_remote_code=config.trust_remote_code
        ).to(device)  # type: ignore[arg-type]  # transformers annotates .to() for its wrapper only
        self.model.eval()
        # One generate() at a time per loaded model: live streams share the adapter.
        self._lock = threading.Lock()

    # --- helpers -----------------------------------------------------------------------

    def _render(self, messages: list[dict[str, str]]) -> str:
        if self.tokenizer.chat_template:
            return str(self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
        # A base model without a template: a plain transcript.
        lines = [f"{m['role']}: {m['content']}" for m in messages]
        return "\n".join(lines) + "\nassistant:"

    def _generate_kwargs(self, params: SamplingParams) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if params.temperature > 0:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if params.stop:
            kwargs["stop_strings"] = list(params.stop)
            kwargs["tokenizer"] = self.tokenizer
        return kwargs

    def _eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        return set(eos if isinstance(eos, list) else [eos]) - {None}

    def _seed(self, seed: int | None) -> None:
        if seed is not None:
            self._torch.manual_seed(seed % (2**63))

    # --- batch ---------------------------------------------------------------------------

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        results: list[GenerationResult | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault(request.params.model_dump_json(), []).append(index)
        for indices in groups.values():
            params = requests[indices[0]].params
            for start in range(0, len(indices), self.config.batch_size):
                chunk = indices[start : start + self.config.batch_size]
                try:
                    outputs = self._generate_batch([requests[i].messages for i in chunk], params)
                except Exception as exc:
                    error = GenerationError(f"{type(exc).__name__}: {exc}"[:500], retryable=True)
                    for i in chunk:
                        results[i] = error
                    continue
                for i, output in zip(chunk, outputs, strict=True):
                    results[i] = output
        return [r if r is not None else GenerationError("not generated") for r in results]

    def _generate_batch(self, conversations: list[list[dict[str, str]]], params: SamplingParams) -> list[Generation]:
        torch = self._torch
        texts = [self._render(m) for m in conversations]
        inputs = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        started = time.monotonic()
        with self._lock, torch.inference_mode():
            self._seed(params.seed)
            output = self.model.generate(**inputs, **self._generate_kwargs(params))
        elapsed_ms = int((time.monotonic() - started) * 1000)
        width = inputs["input_ids"].shape[1]
        eos_ids = self._eos_ids()
        pad_id = self.tokenizer.pad_token_id
        results = []
        for row, attention in zip(output, inputs["attention_mask"], strict=True):
            new = row[width:].tolist()
            finish = "length"
            for position, token in enumerate(new):
                if token in eos_ids:
                    new, finish = new[:position], "stop"
                    break
            while new and new[-1] == pad_id and pad_id not in eos_ids:
                new.pop()
            text = str(self.tokenizer.decode(new, skip_special_tokens=True))
            if finish == "length" and params.stop and any(text.endswith(s) for s in params.stop):
                finish = "stop"
            results.append(
                Generation(
                    text=text,
                    finish_reason=finish,
                    prompt_tokens=int(attention.sum().item()),
                    completion_tokens=len(new),
                    latency_ms=elapsed_ms,
                )
            )
        return results

    # --- streaming ---------------------------------------------------------------------------

    def stream(self, request: GenerationRequest) -> Iterator[StreamEvent]:
        from transformers import TextIteratorStreamer

        torch = self._torch
        text = self._render(request.messages)
        inputs = self.tokenizer([text], return_tensors="pt", add_special_tokens=False).to(self.device)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=300)
        holder: dict[str, Any] = {}

        def run() -> None:
            try:
                with self._lock, torch.inference_mode():
                    self._seed(request.params.seed)
                    holder["output"] = self.model.generate(
                        **inputs, streamer=streamer, **self._generate_kwargs(request.params)
                    )
            except Exception as exc:
                holder["error"] = exc
                streamer.end()

        started = time.monotonic()
        worker = threading.Thread(target=run, name="transformers-stream", daemon=True)
        worker.start()
        parts: list[str] = []
        for piece in streamer:
            if piece:
                parts.append(piece)
                yield StreamEvent(delta=piece)
        worker.join()
        if "error" in holder:
            raise holder["error"]
        new = holder["output"][0][inputs["input_ids"].shape[1] :].tolist()
        eos_ids = self._eos_ids()
        finish = "length"
        for position, token in enumerate(new):
            if token in eos_ids:
                new, finish = new[:position], "stop"
                break
        yield StreamEvent(
            done=True,
            generation=Generation(
                text="".join(parts),
                finish_reason=finish,
                prompt_tokens=int(inputs["input_ids"].shape[1]),
                completion_tokens=len(new),
                latency_ms=int((time.monotonic() - started) * 1000),
            ),
        )

    def close(self) -> None:
        del self.model
        if self.device.startswith("cuda"):
            self._torch.cuda.empty_cache()
