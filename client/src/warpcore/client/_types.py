"""Plain Python values for what the protocol carries: models, configs, stream events, final responses."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TypedDict


class Backend(enum.StrEnum):
    """Where a model runs. Anywhere a backend is taken, its string value works too."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    LLAMA_CPP = "llama_cpp"


class FinishReason(enum.StrEnum):
    STOP = "stop"
    LENGTH = "length"
    STOP_SEQUENCE = "stop_sequence"
    CANCELLED = "cancelled"
    ERROR = "error"
    UNSPECIFIED = "unspecified"


@dataclass(frozen=True)
class ApiConfig:
    """Settings of a hosted API backend; None leaves a field to the server's environment."""

    api_key: str | None = field(default=None, repr=False)
    organization: str | None = None
    base_url: str | None = None
    timeout: float | None = None
    """Seconds one upstream request may take."""


@dataclass(frozen=True)
class LocalConfig:
    """Settings of the llama.cpp backend; None leaves a field to the server's environment."""

    threads: int | None = None
    use_gpu: bool | None = None
    gpu_layers: int | None = None
    use_mmap: bool | None = None
    use_mlock: bool | None = None
    numa_strategy: str | None = None
    """One of disabled, distribute, isolate, numactl, mirror."""
    chat_format: str | None = None
    parallel: int | None = None
    """Generations decoded together on the model (continuous batching)."""


class BackendOptions(TypedDict, total=False):
    """Backend settings as keyword arguments: the API ones for openai/anthropic, the local ones for llama_cpp."""

    api_key: str
    organization: str
    base_url: str
    api_timeout: float
    threads: int
    use_gpu: bool
    gpu_layers: int
    use_mmap: bool
    use_mlock: bool
    numa_strategy: str
    chat_format: str
    parallel: int


class GenerationOptions(TypedDict, total=False):
    """Options of one generation; unset ones keep the backend's defaults."""

    max_tokens: int
    temperature: float
    top_p: float
    top_k: int
    stop: list[str]
    system: str
    seed: int


@dataclass(frozen=True)
class Model:
    id: str
    backend: str
    name: str
    type: str
    state: str
    """"ready" when loaded on the server, "available" when its backend merely offers it."""
    context_size: int


@dataclass(frozen=True)
class Message:
    """One chat turn; role is "system", "user" or "assistant"."""

    role: str
    content: str


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Timings:
    time_to_first_token: float | None
    """Seconds from the server receiving the request to its first text, None if there was none."""
    total: float


@dataclass(frozen=True)
class TextDelta:
    """A piece of generated text, in order."""

    text: str


@dataclass(frozen=True)
class GenerateResult:
    """The last event of a stream."""

    finish_reason: FinishReason
    usage: Usage
    timings: Timings
    upstream_request_id: str


StreamEvent = TextDelta | GenerateResult


@dataclass(frozen=True)
class GenerateResponse:
    """A whole generation: its text and how it ended."""

    text: str
    finish_reason: FinishReason
    usage: Usage
    timings: Timings
    upstream_request_id: str
