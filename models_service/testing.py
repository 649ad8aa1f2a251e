"""Test and benchmark support: a tiny, randomly initialised chat model built locally, and
a real OpenAI-compatible server (``transformers serve``) started on a free local port.

Nothing here downloads anything: the tokenizer is trained on a few sentences, the
weights are random. The web app never imports this module.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Write a short poem about the sea and the sky.",
    "Explain how a reward model is trained from human preferences.",
    "What is the capital of France? Paris is the capital of France.",
    "def add(a, b): return a + b  # a small Python function",
    "Sampling at two temperatures gives two different answers to one prompt.",
    "Annotators compare two answers and pick the better one, with a strength.",
    "0 1 2 3 4 5 6 7 8 9 , . ; : ! ? ' \" ( ) [ ] { } < > / \\ - _ = + * & ^ % $ # @ ~",
]


# Shapes for build_tiny_chat_model: the tests' ~100k-parameter model, and TinyLlama's
# 1.1B shape for throughput measurements on a GPU (random weights: the numbers measure
# the machinery, not the quality).
SHAPES: dict[str, dict[str, int]] = {
    "tiny": dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
    ),
    "tinyllama-1.1b": dict(
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=22,
        num_attention_heads=32,
        num_key_value_heads=4,
        vocab_size=32000,
    ),
}


def build_tiny_chat_model(directory: Path | str, *, seed: int = 0, shape: str = "tiny") -> Path:
    """Save a randomly initialised Llama with a byte-level BPE tokenizer and a ChatML template.

    ``shape="tiny"`` (the tests): ~100k parameters. Sampling is switched on in its
    generation config (``do_sample``), so temperatures and seeds change the answers, as
    they do on a real checkpoint.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        GenerationConfig,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
    )

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=384, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        unk_token="<|endoftext|>",
        pad_token="<|pad|>",
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(directory)

    torch.manual_seed(seed)
    dims: dict[str, Any] = dict(SHAPES[shape])
    # A vocabulary larger than the tokenizer's only costs the LM head its real size: ids
    # past the tokenizer's decode to nothing.
    vocab_size = max(len(fast), dims.pop("vocab_size", 0))
    config = LlamaConfig(
        vocab_size=vocab_size,
        **dims,
        max_position_embeddings=2048,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    if shape != "tiny":
        model = model.to(torch.bfloat16)  # type: ignore[arg-type]  # transformers annotates .to() for its wrapper only
    model.generation_config = GenerationConfig(
        do_sample=True,
        temperature=1.0,
        top_p=1.0,
        max_new_tokens=16,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
    )
    model.save_pretrained(directory)
    return directory


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _transformers_cli() -> str:
    candidate = Path(sys.executable).with_name("transformers")
    return str(candidate) if candidate.exists() else "transformers"


class TransformersServer:
    """``transformers serve <model dir>`` on 127.0.0.1 and a free port, offline.

    ``start()`` waits until ``/health`` answers; ``kill()`` sends SIGKILL (a crash, not a
    shutdown); ``restart()`` starts it again on the same port.
    """

    def __init__(
        self,
        model_dir: Path | str,
        *,
        port: int | None = None,
        log_path: Path | str | None = None,
        extra_args: list[str] | None = None,
    ):
        self.model_dir = str(model_dir)
        self.extra_args = [a for a in (extra_args or []) if a]
        self.port = port or free_port()
        self.log_path = Path(log_path) if log_path else None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 90.0) -> TransformersServer:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                _transformers_cli(),
                "serve",
                self.model_dir,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--device",
                "cpu",
                "--format",
                "quiet",
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group: kill() reaches every child
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"transformers serve exited with {self.process.returncode} (log: {self.log_path})")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"transformers serve did not become healthy in {timeout:.0f} s (log: {self.log_path})")

    def kill(self) -> None:
        """SIGKILL the server's process group: connections drop mid-answer."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)

    def restart(self, timeout: float = 90.0) -> TransformersServer:
        self.kill()
        return self.start(timeout=timeout)

    def __enter__(self) -> TransformersServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
