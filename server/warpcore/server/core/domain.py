"""Backend-neutral values passed between the servicer, the registry and the adapters."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from warpcore.server.core.capabilities import Capabilities
from warpcore.server.core.content import CacheBreakpoint, ContentPart
from warpcore.server.core.embeddings import Pooling
from warpcore.server.core.errors import WarpcoreError
from warpcore.server.core.occupancy import Occupancy
from warpcore.server.core.tokens import PromptUsage, TokenLogprob
from warpcore.server.core.tooling import ReasoningBlock, ReasoningOptions, ResponseFormat, Tool, ToolCall, ToolChoice


class BackendKind(enum.Enum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    LLAMA_CPP = "llama_cpp"

    @property
    def hosted(self) -> bool:
        """Whether the model runs behind an API (ApiSettings) rather than in this process (LocalSettings)."""
        return self is not BackendKind.LLAMA_CPP

    def embeds(self, name: str, embedding: bool | None) -> bool:
        """Whether the model `name` is an embedding model on this backend, where `embedding` (LoadModel's model_type,
        the settings' embedding) says so or, None, leaves it to the name: only OpenAI's say it (text-embedding-*).
        What a load reports and a listing says alike."""
        if embedding is not None:
            return embedding
        return self is BackendKind.OPENAI and "embedding" in name


class Role(enum.Enum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"
    """The result of one tool call, answering an assistant turn's call by its id."""


class FinishReason(enum.Enum):
    STOP = "stop"
    LENGTH = "length"
    STOP_SEQUENCE = "stop_sequence"
    TOOL_CALLS = "tool_calls"
    """The model wants the tools it called run, and their results sent back."""
    CANCELLED = "cancelled"
    ERROR = "error"
    CONTENT_FILTER = "content_filter"
    """The backend's safety policy stopped or withheld the answer."""
    PAUSED = "paused"
    """The backend paused a long turn (Anthropic's pause_turn): sent back as the last message, it goes on."""


class NumaStrategy(enum.IntEnum):  # llama.cpp's GGML_NUMA_STRATEGY_* values
    DISABLED = 0
    DISTRIBUTE = 1
    ISOLATE = 2
    NUMACTL = 3
    MIRROR = 4


@dataclass(frozen=True)
class ApiSettings:  # a hosted API backend's settings as requested; None means "from the environment"
    api_key: str | None = field(default=None, repr=False)
    organization: str | None = None
    base_url: str | None = None
    timeout: float | None = None
    embedding: bool | None = None
    """What the model does, as LoadModel's model_type says: True embeds texts (Embed), False generates; None: as the
    provider names its models (OpenAI's embedding models are text-embedding-*)."""
    unlisted: bool = False
    """Loaded without finding it in the API's model list: a compatible server may serve names it does not list."""


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
    prompt_cache_tokens: int | None = None
    """Prompt tokens whose KV cells the model keeps for later prompts that begin alike; 0 turns the cache off."""
    embedding: bool | None = None
    """Load the model to embed texts (Embed) rather than to generate."""
    pooling: Pooling | None = None
    """With `embedding`: how token vectors become a text's vector; None: the GGUF's, else MEAN."""
    mmproj: str | None = None
    """A multimodal projector file, named as models are."""


BackendSettings = ApiSettings | LocalSettings


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    """Assistant turns: the calls the model made in that turn."""
    tool_call_id: str = ""
    """Tool turns: the id of the call this turn answers."""
    is_error: bool = False
    """Tool turns: the tool failed and `content` says how."""
    reasoning: tuple[ReasoningBlock, ...] = ()
    """Assistant turns: the reasoning the model gave before this turn's text and calls."""
    parts: tuple[ContentPart, ...] = ()
    """Text and images after `content`, in order (images in user turns only)."""
    cache: CacheBreakpoint = CacheBreakpoint.NONE  # a hosted API caches the prompt up to this message's end


@dataclass(frozen=True)
class GenerationParams:
    """One generation: either a prompt or chat messages, plus sampling options."""

    prompt: str | None
    messages: tuple[ChatMessage, ...]
    max_tokens: int
    max_tokens_defaulted: bool = False
    """`max_tokens` is the server's default: the request gave none (a refusal comparing with it says so)."""
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: tuple[str, ...] = ()
    system: str | None = None
    system_cache: CacheBreakpoint = CacheBreakpoint.NONE
    seed: int | None = None
    presence_penalty: float | None = None  # OpenAI's: off the score of each token the answer holds
    frequency_penalty: float | None = None  # OpenAI's: off each token's score, times its count in the answer
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, bias added to its score), OpenAI's logit_bias
    timeout: float | None = None
    """Seconds left before the caller's deadline, if it has one."""
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice = field(default_factory=ToolChoice)
    parallel_tool_calls: bool = True
    response_format: ResponseFormat | None = None
    reasoning: ReasoningOptions | None = None
    verbosity: str | None = None  # one of bounds.VERBOSITY_LEVELS (OpenAI's verbosity)
    cache_prompt: bool = True
    """Whether the backend may serve this prompt's beginning from its cache and keep it there (False: nothing stays)."""
    logprobs: bool = False
    top_logprobs: int = 0
    """With `logprobs`: the most likely tokens to report at each place."""
    continue_last: bool | None = None
    """The last message is an assistant's text for the answer to continue (Anthropic's prefill), not a finished turn
    to answer after; None: as the backend's API reads it (`continues_last`)."""
    continue_last_read: bool = False
    """`continue_last` is how the request's dialect reads a last assistant message, which it has no field to choose
    (the HTTP door's): a refusal of it names messages, not continue_last_message."""
    anthropic_betas: tuple[str, ...] = ()
    """Anthropic beta features to turn on (its anthropic-beta header); other backends leave them aside."""
    hops: tuple[str, ...] = ()
    """The warpcore servers the request passed through before this one (core/hops.py), for an upstream call."""

    def continues_last(self, api_continues: bool) -> bool:
        """Whether the answer continues the last message: as the request says, or, where it does not (a client of the
        first release, which had no say, or an HTTP dialect that has none), as the backend's API reads a last
        assistant's text (`api_continues`: Anthropic's continues it, the first release sending it as it came; OpenAI's
        and a local chat template answer after it)."""
        if self.continue_last is not None:
            return self.continue_last
        last = self.messages[-1] if self.messages else None
        return api_continues and last is not None and last.role is Role.ASSISTANT and not last.tool_calls

    @property
    def penalties(self) -> dict[str, float]:
        """The presence and frequency penalties but 0 (no penalty, what OpenAI clients send unasked), by name."""
        return {name: getattr(self, name) for name in ("presence_penalty", "frequency_penalty") if getattr(self, name)}


@dataclass(frozen=True)
class TextChunk:
    text: str
    logprobs: tuple[TokenLogprob, ...] = ()
    """With GenerationParams.logprobs: the tokens that make up `text` (see TextDelta.logprobs)."""
    refusal: bool = False
    """Whether the text declines the request instead of answering it (an OpenAI model's refusal)."""


@dataclass(frozen=True)
class ReasoningChunk:
    """The next piece of the model's reasoning, never part of the answer's text. A block ends with a chunk whose
    `signature` is set (Anthropic); a redacted block arrives whole, its data in `signature`."""

    text: str = ""
    signature: str = ""
    redacted: bool = False


@dataclass(frozen=True)
class ToolCallDelta:
    """The next piece of tool call `index` (0-based, in the order calls begin): `id` and `name` on its first delta,
    then pieces of its JSON `arguments`, which concatenated give the complete arguments."""

    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass(frozen=True)
class Finish:
    reason: FinishReason
    prompt_tokens: int | None = None
    """None, as `completion_tokens`: the backend reported no count (an OpenAI-compatible server that sends no usage,
    a stream cut before the end that tells it)."""
    completion_tokens: int | None = None
    upstream_request_id: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    """The complete calls, in index order, when the model called tools."""
    cached_prompt_tokens: int = 0
    """Prompt tokens served from a cache (a provider's prompt cache, or the local prefix cache)."""
    cache_creation_tokens: int = 0
    reasoning_tokens: int | None = None
    """Completion tokens spent on reasoning, where the backend counts them apart (OpenAI); None where it does not,
    rather than a 0 that reads as a count."""
    stop_sequence: str = ""
    """With STOP_SEQUENCE: the stop sequence that ended the text, when the backend says which."""
    context_window_exceeded: bool = False
    """With LENGTH: the model's context window, not max_tokens, ended the answer, so a larger max_tokens gives no
    more (OpenAI's API says `length` for both, so an OpenAI model never sets it)."""
    failure: WarpcoreError | None = field(default=None, compare=False)
    """With ERROR: what ended the generation mid-way; this Finish counts what was used up to it, and the engine
    raises the failure once the result is out."""

    def counts(self) -> tuple[int, int] | None:
        """The prompt's and the completion's tokens; None when the backend reported neither, rather than zeros that
        read as counts. One not reported beside one that was is 0, as a usage has no place to say so: a stream cut
        before the end that tells the completion's, whose finish says it was cut (Anthropic tells the prompt's at the
        start)."""
        if self.prompt_tokens is None and self.completion_tokens is None:
            return None
        return self.prompt_tokens or 0, self.completion_tokens or 0


@dataclass(frozen=True)
class UpstreamOpened:
    """A hosted generation's upstream has answered: its request id ("" when it sent none), once, before any other
    event, so that a generation whose caller goes before its Finish still names the request a provider billed."""

    request_id: str


GenerationEvent = UpstreamOpened | PromptUsage | TextChunk | ReasoningChunk | ToolCallDelta | Finish


@dataclass(frozen=True)
class ModelInfo:
    """What a backend reports about a model it loaded."""

    context_size: int = 0
    parallel: int = 1
    """Generations the backend runs at once on this model."""
    memory_bytes: int = 0
    """What keeping the model loaded costs in memory, estimated by the backend (weights and caches); 0 for a model
    computed elsewhere."""
    occupancy: Occupancy | None = field(default=None, compare=False)
    """Live counters of a model computed here; None for one computed elsewhere."""
    capabilities: Capabilities = field(default_factory=Capabilities)
    embedding_dimensions: int = 0
    """The length of the vectors it embeds, when known before embedding (0: not known, or it does not embed)."""


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
    keep_alive: float | None = field(default=None, compare=False)
    """Seconds a local model stays loaded once idle (math.inf: until unloaded); None: the server's default. Not part
    of what the model is: a LoadModel of a loaded model with another keep_alive changes it."""
    lazy: bool = field(default=False, compare=False)
    """Declared, loaded by the first Generate that names it (preload file only)."""
    key_from_server: bool = field(default=False, compare=False)
    """Its api_key is the server's, read from the variable the preload file's api_key_env names, not a request's."""
