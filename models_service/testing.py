"""Test and benchmark support: a tiny, randomly initialised chat model built locally, a
real OpenAI-compatible server (``transformers serve``) started on a free local port, and
a small scripted one (``ScriptedServer``) for what a real server will not do on demand
(fail with a body, redirect, count the requests it gets).

Nothing here downloads anything: the tokenizer is trained on a few sentences, the
weights are random. The web app never imports this module.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


# --- A scripted OpenAI-compatible server -------------------------------------------------------


@dataclass
class Seen:
    """One request the scripted server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Script:
    """What the scripted server answers. ``status`` other than 200 answers every request
    with that status, ``body`` and ``headers`` (a redirect: 307 and a Location header)."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    answer: str = "Hello from the scripted server."
    model: str = "scripted-model"
    # Streams are sent in this many pieces, ``pause`` seconds apart.
    pieces: int = 4
    pause: float = 0.0
    # Chat completions answered 200 with this body instead (not a completion at all).
    raw: bytes | None = None
    raw_type: str = "text/html"
    # Streams end with an error event carrying this text (a server failing mid-answer).
    stream_error: str = ""


class ScriptedServer:
    """A threaded ``http.server`` on 127.0.0.1 and a free port speaking enough of the
    OpenAI API (``/v1/models``, ``/v1/chat/completions``, streamed or not) for the
    ``openai`` backend, answering as ``script`` says and recording every request in
    ``seen``. Use as a context manager."""

    def __init__(self, script: Script | None = None):
        self.script = script or Script()
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _record(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with server._lock:
                    server.seen.append(Seen(self.command, self.path, dict(self.headers.items()), body))
                return body

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._record()
                self._answer(None)

            def do_POST(self) -> None:
                self._answer(self._record())

            def _answer(self, body: bytes | None) -> None:
                script = server.script
                if script.status != 200:
                    self._send(script.status, script.body, {"Content-Type": "text/plain", **script.headers})
                    return
                if self.path.rstrip("/").endswith("/models"):
                    data = {"object": "list", "data": [{"id": script.model, "object": "model"}]}
                    self._send(200, json.dumps(data).encode(), {"Content-Type": "application/json"})
                    return
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, b"not found", {"Content-Type": "text/plain"})
                    return
                if script.raw is not None:
                    self._send(200, script.raw, {"Content-Type": script.raw_type})
                    return
                request = json.loads(body or b"{}")
                if request.get("stream"):
                    self._stream(script)
                    return
                completion = {
                    "object": "chat.completion",
                    "model": script.model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": script.answer},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11},
                }
                self._send(200, json.dumps(completion).encode(), {"Content-Type": "application/json"})

            def _stream(self, script: Script) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                size = max(1, -(-len(script.answer) // script.pieces))
                try:
                    for start in range(0, len(script.answer), size):
                        chunk = {"choices": [{"index": 0, "delta": {"content": script.answer[start : start + size]}}]}
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                        self.wfile.flush()
                        time.sleep(script.pause)
                    if script.stream_error:
                        error = {"error": {"message": script.stream_error, "code": 500}}
                        self.wfile.write(f"data: {json.dumps(error)}\n\n".encode())
                        return
                    end = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
                    self.wfile.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client went away
                self.close_connection = True

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="scripted-server", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def completions(self) -> list[Seen]:
        """The chat completion requests received so far."""
        with self._lock:
            return [s for s in self.seen if s.path.rstrip("/").endswith("/chat/completions")]

    def start(self) -> ScriptedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
