"""Generation backends: one small adapter per kind of model server, behind one interface
(docs/style.md).

- ``vllm``         vLLM's offline engine (``LLM`` + ``SamplingParams``), batched; GPU workers only.
- ``openai``       any OpenAI-compatible server (``vllm serve`` first of all), over HTTP.
- ``transformers`` a local Hugging Face model directory, CPU or GPU.
- ``imported``     samples produced elsewhere and uploaded through the API: it generates nothing.

Each backend's settings (``ModelVersion.config``) are validated by a typed pydantic
schema (``CONFIG_SCHEMAS``), and so are sampling parameters (``SamplingParams``).
Heavy libraries (torch, transformers, vllm) are imported only when a backend is built,
so the web app never loads them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

if TYPE_CHECKING:
    from models_service.models import ModelVersion

# --- Sampling parameters ---------------------------------------------------------------


class SamplingParams(BaseModel):
    """What every backend understands. ``max_tokens`` is always sent: some servers
    generate a thousand tokens without it."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(512, ge=1, le=32768)
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    stop: list[str] = Field(default_factory=list, max_length=8)

    @field_validator("stop")
    @classmethod
    def _stop_not_empty(cls, value: list[str]) -> list[str]:
        if any(not s for s in value):
            raise ValueError("stop sequences cannot be empty strings")
        return value

    def request_fields(self) -> dict[str, Any]:
        """The parameters as stored with a sample (and sent to OpenAI-compatible servers)."""
        data: dict[str, Any] = {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens}
        if self.seed is not None:
            data["seed"] = self.seed
        if self.stop:
            data["stop"] = list(self.stop)
        return data


# --- Backend settings --------------------------------------------------------------------


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # The settings that decide where prompts (and keys) go, or what code runs: only a
    # superuser changes them on an existing version (models_service/services.py).
    endpoint_fields: ClassVar[tuple[str, ...]] = ()


class OpenAIConfig(_Config):
    """An OpenAI-compatible server. The API key is never stored: ``api_key_env`` names the
    environment variable of the worker (and web) process that holds it. Only names ending
    in ``_API_KEY`` are accepted: whoever edits a version must not be able to have another
    secret of the process (``SECRET_KEY``, ``DATABASE_URL``, storage keys) sent to a
    server of their choosing. The server's host must be one the operator allows
    (``MODEL_HOSTS_ALLOWED``, models_service/outbound.py)."""

    endpoint_fields: ClassVar[tuple[str, ...]] = ("base_url", "api_key_env", "model")

    base_url: str = Field(..., description="e.g. http://vllm:8000/v1")
    model: str = Field("", max_length=500, description="Model name to request; default: the server's first model.")
    api_key_env: str = Field(
        "",
        max_length=100,
        pattern=r"^$|^[A-Z][A-Z0-9_]*_API_KEY$",
        description="Name of the environment variable holding the key; must end in _API_KEY (e.g. VLLM_API_KEY).",
    )
    max_concurrency: int = Field(8, ge=1, le=512, description="Requests in flight at once, per version and process.")
    timeout_s: float = Field(
        120.0, gt=0, le=3600, description="Longest wait for one answer (or between streamed chunks)."
    )
    connect_timeout_s: float = Field(5.0, gt=0, le=300)
    max_retries: int = Field(3, ge=0, le=10, description="Retries of a failed request (connection errors, 429, 5xx).")
    backoff_base_s: float = Field(0.5, ge=0, le=60)
    backoff_max_s: float = Field(20.0, ge=0, le=600)

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        from models_service.outbound import url_shape_refusal

        value = value.strip().rstrip("/")
        if not re.match(r"^https?://[^\s/]+(/\S*)?$", value):
            raise ValueError("must be an http:// or https:// URL, e.g. http://vllm:8000/v1")
        refusal = url_shape_refusal(value)
        if refusal:
            raise ValueError(refusal)
        return value


class VLLMConfig(_Config):
    endpoint_fields: ClassVar[tuple[str, ...]] = ("model",)

    model: str = Field(..., min_length=1, max_length=1000, description="Checkpoint directory or Hub id.")
    tensor_parallel_size: int = Field(1, ge=1, le=64)
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    max_model_len: int | None = Field(None, ge=16)
    trust_remote_code: bool = Field(
        False, description="Run Python code shipped with the checkpoint; only a superuser may switch it on."
    )
    enforce_eager: bool = False
    batch_size: int = Field(256, ge=1, le=100_000, description="Prompts handed to the engine at once.")


class TransformersConfig(_Config):
    endpoint_fields: ClassVar[tuple[str, ...]] = ("model_dir",)

    model_dir: str = Field(..., min_length=1, max_length=1000, description="A local model directory.")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda|cuda:\d+|mps)$")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    batch_size: int = Field(16, ge=1, le=1024)
    trust_remote_code: bool = Field(
        False, description="Run Python code shipped with the model directory; only a superuser may switch it on."
    )


class ImportedConfig(_Config):
    pass


CONFIG_SCHEMAS: dict[str, type[_Config]] = {
    "vllm": VLLMConfig,
    "openai": OpenAIConfig,
    "transformers": TransformersConfig,
    "imported": ImportedConfig,
}


def pydantic_errors(exc: ValidationError, prefix: str = "") -> dict[str, list[str]]:
    """A pydantic error as field → messages, the shape Django and DRF speak."""
    errors: dict[str, list[str]] = {}
    for error in exc.errors():
        loc = ".".join(str(part) for part in error.get("loc", ())) or "__all__"
        message = error.get("msg", "invalid")
        if error.get("type") == "extra_forbidden":
            message = "unknown setting"
        errors.setdefault(f"{prefix}{loc}", []).append(message.removeprefix("Value error, "))
    return errors


def config_validate(backend: str, config: dict[str, Any]) -> _Config:
    """Raise pydantic's ValidationError (or KeyError for an unknown backend)."""
    return CONFIG_SCHEMAS[backend].model_validate(config or {})


# --- The interface -----------------------------------------------------------------------


@dataclass(frozen=True)
class GenerationRequest:
    messages: list[dict[str, str]]
    params: SamplingParams


@dataclass
class Generation:
    text: str
    finish_reason: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_ms: int | None = None


@dataclass
class GenerationError:
    """One prompt that could not be answered; ``retryable`` says whether trying again may help."""

    message: str
    retryable: bool = True


GenerationResult = Generation | GenerationError


@dataclass
class StreamEvent:
    """A piece of a streamed answer: ``delta`` text, then one final event with ``done`` set."""

    delta: str = ""
    done: bool = False
    generation: Generation | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class BackendUnavailable(Exception):
    """The backend cannot run here (library missing, no GPU, no such directory)."""


class Backend(Protocol):
    name: str

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Answer every request; one result per request, in order. Never raises for one bad prompt."""
        ...

    def stream(self, request: GenerationRequest) -> Iterator[StreamEvent]:
        """Answer one request piece by piece (live mode). Raises on failure."""
        ...

    def close(self) -> None:
        """Release the model (GPU memory, connections)."""
        ...


class ImportedBackend:
    """Samples of an imported version come from uploads; asking it to generate is an error
    that names what to do instead."""

    name = "imported"
    MESSAGE = (
        "this model version is 'imported': it does not generate. Upload its answers "
        "(POST /api/v1/projects/<slug>/imports/ with kind=samples), or give it a generating backend."
    )

    def __init__(self, config: ImportedConfig):
        self.config = config

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        return [GenerationError(self.MESSAGE, retryable=False) for _ in requests]

    def stream(self, request: GenerationRequest) -> Iterator[StreamEvent]:
        raise BackendUnavailable(self.MESSAGE)

    def close(self) -> None:
        pass


def backend_build(backend: str, config: dict[str, Any], *, key: str = "") -> Backend:
    """Build the adapter for ``backend`` with validated ``config``.

    ``key`` names the version for per-version limits (the OpenAI adapter's concurrency).
    """
    settings = config_validate(backend, config)
    if backend == "openai":
        from models_service.backends.openai_compat import OpenAICompatBackend

        return OpenAICompatBackend(settings, key=key)  # type: ignore[arg-type]
    if backend == "transformers":
        from models_service.backends.transformers import TransformersBackend

        return TransformersBackend(settings)  # type: ignore[arg-type]
    if backend == "vllm":
        from models_service.backends.vllm import VLLMBackend

        return VLLMBackend(settings)  # type: ignore[arg-type]
    return ImportedBackend(settings)  # type: ignore[arg-type]


def backend_for(version: ModelVersion) -> Backend:
    return backend_build(version.backend, version.config, key=f"version:{version.pk}")


def sampling_params_for(version: ModelVersion, **overrides: Any) -> SamplingParams:
    """The version's default sampling parameters with ``overrides`` (None values ignored)."""
    data = {**(version.default_sampling or {}), **{k: v for k, v in overrides.items() if v is not None}}
    return SamplingParams.model_validate(data)
