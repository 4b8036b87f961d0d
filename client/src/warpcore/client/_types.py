"""Plain Python values for what the protocol carries: models, configs, stream events, final responses."""

from __future__ import annotations

import enum
import mimetypes
from dataclasses import dataclass, field
from pathlib import Path
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
    embedding: bool | None = None
    """Load the model to embed texts (Client.embed) instead of generating."""
    pooling: str | None = None
    """With embedding: mean, cls or last (default: the GGUF's, else mean)."""


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
    embedding: bool
    pooling: str


class GenerationOptions(TypedDict, total=False):
    """Options of one generation; unset ones keep the backend's defaults."""

    max_tokens: int
    temperature: float
    top_p: float
    top_k: int
    stop: list[str]
    system: str
    seed: int
    logprobs: bool
    """Return each generated token's log-probability (TextDelta.logprobs, GenerateResponse.logprobs)."""
    top_logprobs: int
    """With logprobs: also the most likely tokens at each place, up to 20."""


@dataclass(frozen=True)
class Capabilities:
    """What a loaded model can do."""

    generate: bool
    embed: bool
    count_tokens: bool
    images: bool
    logprobs: bool
    tools: bool


@dataclass(frozen=True)
class Model:
    id: str
    backend: str
    name: str
    type: str
    state: str
    """"ready" when loaded on the server, "available" when its backend merely offers it."""
    context_size: int
    capabilities: Capabilities | None = None
    """Known for loaded models."""


@dataclass(frozen=True)
class Image:
    """An image for a chat message: its bytes and media type, or an https URL the provider fetches."""

    data: bytes = field(default=b"", repr=False)
    media_type: str = ""
    url: str = ""

    @classmethod
    def from_path(cls, path: str | Path) -> Image:
        """The image in a file, its media type from the file name (.png, .jpg, .gif, .webp)."""
        media_type = mimetypes.guess_type(str(path))[0]
        if media_type is None or not media_type.startswith("image/"):
            raise ValueError(f"cannot tell the image type of {str(path)!r} from its name")
        return cls(data=Path(path).read_bytes(), media_type=media_type)

    @classmethod
    def from_url(cls, url: str) -> Image:
        return cls(url=url)


Part = str | Image
"""A piece of a chat message after its content: more text, or an image."""


@dataclass(frozen=True)
class Message:
    """One chat turn; role is "system", "user" or "assistant"."""

    role: str
    content: str
    parts: tuple[Part, ...] = ()
    """Text and images after content, in order (images in user messages only)."""


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
class TopLogprob:
    token: str
    bytes: bytes
    logprob: float


@dataclass(frozen=True)
class TokenLogprob:
    """A generated token's log-probability, and the most likely tokens at its place."""

    token: str
    bytes: bytes
    logprob: float
    top_logprobs: tuple[TopLogprob, ...] = ()


@dataclass(frozen=True)
class TextDelta:
    """A piece of generated text, in order."""

    text: str
    logprobs: tuple[TokenLogprob, ...] = ()
    """With the logprobs option: the tokens this text is made of."""


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
    logprobs: tuple[TokenLogprob, ...] = ()
    """With the logprobs option: every generated token's, in order."""


@dataclass(frozen=True)
class EmbedResponse:
    embeddings: list[list[float]]
    """One vector per input, in input order."""
    prompt_tokens: int
    upstream_request_id: str


@dataclass(frozen=True)
class Token:
    id: int
    piece: bytes


@dataclass(frozen=True)
class TokenCount:
    prompt_tokens: int
    tokens: list[Token]
    """With include_tokens (llama.cpp models only)."""
