"""Backend-neutral values passed between the servicer, the registry and the adapters."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class BackendKind(enum.Enum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    LLAMA_CPP = "llama_cpp"

    @property
    def hosted(self) -> bool:
        """Whether the model runs elsewhere, behind an API (ApiSettings), rather than in this process
        (LocalSettings)."""
        return self is not BackendKind.LLAMA_CPP


class Role(enum.Enum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"


class FinishReason(enum.Enum):
    STOP = "stop"
    LENGTH = "length"
    STOP_SEQUENCE = "stop_sequence"
    CANCELLED = "cancelled"
    ERROR = "error"


class NumaStrategy(enum.IntEnum):
    """llama.cpp's GGML_NUMA_STRATEGY_* values."""

    DISABLED = 0
    DISTRIBUTE = 1
    ISOLATE = 2
    NUMACTL = 3
    MIRROR = 4


@dataclass(frozen=True)
class ApiSettings:
    """Settings of a hosted API backend as requested; None means "from the environment"."""

    api_key: str | None = field(default=None, repr=False)
    organization: str | None = None
    base_url: str | None = None
    timeout: float | None = None


@dataclass(frozen=True)
class LocalSettings:
    """Settings of an in-process backend as requested; None means "from the environment"."""

    threads: int | None = None
    use_gpu: bool | None = None
    gpu_layers: int | None = None
    use_mmap: bool | None = None
    use_mlock: bool | None = None
    numa: NumaStrategy | None = None
    chat_format: str | None = None
    parallel: int | None = None


BackendSettings = ApiSettings | LocalSettings


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True)
class GenerationParams:
    """One generation: either a prompt or chat messages, plus sampling options."""

    prompt: str | None
    messages: tuple[ChatMessage, ...]
    max_tokens: int
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: tuple[str, ...] = ()
    system: str | None = None
    seed: int | None = None
    timeout: float | None = None
    """Seconds left before the caller's deadline, if it has one."""


@dataclass(frozen=True)
class TextChunk:
    text: str


@dataclass(frozen=True)
class Finish:
    reason: FinishReason
    prompt_tokens: int = 0
    completion_tokens: int = 0
    upstream_request_id: str = ""


GenerationEvent = TextChunk | Finish


@dataclass(frozen=True)
class ModelInfo:
    """What a backend reports about a model it loaded."""

    context_size: int = 0
    parallel: int = 1
    """Generations the backend runs at once on this model."""


@dataclass(frozen=True)
class Admission:
    """One model's own admission limits, set by the operator (the preload file); None: the backend's default."""

    max_streams: int | None = None
    max_queue: int | None = None


@dataclass(frozen=True)
class LoadSpec:
    """A validated LoadModel request."""

    model_id: str
    backend: BackendKind
    name: str
    settings: BackendSettings | None
    context_size: int | None
    admission: Admission | None = field(default=None, compare=False)
    """The operator's limits for this model (preload file only; LoadModel cannot set them). Not part of what the
    model is: a LoadModel naming a preloaded model gets that model, with the limits the operator gave it."""
