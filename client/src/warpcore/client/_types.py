"""Plain Python values for what the protocol carries: models, configs, stream events, final responses."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from warpcore.client._messages import Message, ReasoningBlock, ToolCall
from warpcore.client._options import NumaStrategy, Pooling

if TYPE_CHECKING:  # a TypeVar default (PEP 696) before Python 3.13; type checkers ship typing_extensions' stubs
    from typing_extensions import TypeVar as DefaultedTypeVar

    # Covariant, as `parsed` is only read: any response is a GenerateResponse[object].
    ParsedT = DefaultedTypeVar("ParsedT", covariant=True, default=Any)
else:
    ParsedT = TypeVar("ParsedT", covariant=True)

_UNPARSED: Any = None
"""GenerateResponse.parsed's default, None, typed to fit whatever the response's type parameter is."""


class Backend(enum.StrEnum):
    """Where a model runs. Anywhere a backend is taken, its string value works too."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    LLAMA_CPP = "llama_cpp"


class FinishReason(enum.StrEnum):
    STOP = "stop"
    LENGTH = "length"
    STOP_SEQUENCE = "stop_sequence"
    TOOL_CALLS = "tool_calls"
    """The model called tools: run them and send their results back (see GenerateResponse.tool_calls)."""
    CANCELLED = "cancelled"
    ERROR = "error"
    CONTENT_FILTER = "content_filter"
    """The backend's safety policy stopped or withheld the answer (OpenAI's content_filter, Claude's refusal)."""
    PAUSED = "paused"
    """The backend paused a long turn (Claude's pause_turn): send the answer back unchanged as the last assistant
    message, which Claude continues (continue_last_message unset or True), to let the model go on."""
    UNSPECIFIED = "unspecified"
    """Not set, or a reason newer than this SDK."""


@dataclass(frozen=True)
class ApiConfig:
    """Settings of a hosted API backend; None leaves a field to the server's environment."""

    api_key: str | None = field(default=None, repr=False)
    organization: str | None = None
    base_url: str | None = None
    timeout: float | None = None
    """Longest wait for the upstream, in seconds: to connect, and for each piece of its answer (a whole stream is
    bounded by the call's deadline)."""
    unlisted: bool | None = None
    """Load the model although the API does not list it (a router's wildcard route): a name it does not serve then
    fails each generation instead of the load."""


@dataclass(frozen=True)
class LocalConfig:
    """Settings of the llama.cpp backend; None leaves a field to the server's environment."""

    threads: int | None = None
    use_gpu: bool | None = None
    gpu_layers: int | None = None
    use_mmap: bool | None = None
    use_mlock: bool | None = None
    numa_strategy: NumaStrategy | None = None
    """One of disabled, distribute, isolate, numactl, mirror."""
    chat_format: str | None = None
    parallel: int | None = None
    """Generations decoded together on the model (continuous batching)."""
    embedding: bool | None = None
    """Load the model to embed texts (Client.embed) instead of generating."""
    pooling: Pooling | None = None
    """With embedding: mean, cls or last (default: the GGUF's, else mean)."""
    mmproj: str | None = None
    """A multimodal projector GGUF under MODELS_PATH (named like a model): the model then reads Image parts."""
    prompt_cache_tokens: int | None = None
    """Prompt tokens whose KV cells the model keeps for later prompts that begin alike; 0 turns its cache off."""


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_prompt_tokens: int = 0
    """Prompt tokens read from the backend's prompt cache, a local model's included."""
    cache_creation_tokens: int = 0
    """Prompt tokens written to a hosted API's prompt cache, as the provider counts them (Anthropic's
    cache_creation_input_tokens); 0 for an OpenAI model, which counts none, and always for a llama.cpp model, whose
    cache takes a prompt in when its generation ends or later, with no count for one request."""
    reasoning_tokens: int = 0


@dataclass(frozen=True)
class Timings:
    time_to_first_token: float | None
    """Seconds from the server receiving the request to its first delta of any kind (text, reasoning or a tool
    call's), None if none was generated."""
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
    refusal: bool = False
    """Whether this text declines the request instead of answering it (an OpenAI model's refusal): it goes to
    GenerateResponse.refusal, not to its text."""


@dataclass(frozen=True)
class GenerateResult:
    """The last event of a stream."""

    finish_reason: FinishReason
    usage: Usage | None
    """None when the backend reported no usage (an OpenAI-compatible server that sends none, a stream cut before the
    end that tells it): no count of 0 that was never counted."""
    timings: Timings
    upstream_request_id: str
    tool_calls: tuple[ToolCall, ...] = ()
    stop_sequence: str = ""
    """With finish_reason STOP_SEQUENCE: the stop sequence that ended the text, when the backend says which."""
    context_window_exceeded: bool = False
    """With finish_reason LENGTH, as GenerateResponse.context_window_exceeded."""


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of tool call `index`: its id and name on its first piece, then pieces of its JSON arguments."""

    index: int
    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ReasoningDelta:
    """A piece of the model's reasoning; `signature` ends a signed block, `redacted` marks a redacted one."""

    text: str
    signature: str = ""
    redacted: bool = False


StreamEvent = TextDelta | ToolCallDelta | ReasoningDelta | GenerateResult


@dataclass(frozen=True)
class GenerateResponse(Generic[ParsedT]):
    """A whole generation: its text and how it ended. Generic in the type of `parsed`: generate() with a pydantic
    model class City as response_format gives a GenerateResponse[City | None]; with any other format a
    GenerateResponse[object] (the JSON value, to narrow with isinstance); with none a GenerateResponse[None]. Any of
    them is a GenerateResponse[object]; a bare GenerateResponse means GenerateResponse[Any], as before it was
    generic."""

    text: str
    finish_reason: FinishReason
    usage: Usage | None
    """None when the backend reported no usage, as GenerateResult.usage."""
    timings: Timings
    upstream_request_id: str
    logprobs: tuple[TokenLogprob, ...] = ()
    """With the logprobs option: every generated token's, in order."""
    tool_calls: tuple[ToolCall, ...] = ()
    """The complete calls, when finish_reason is TOOL_CALLS."""
    reasoning: tuple[ReasoningBlock, ...] = ()
    parsed: ParsedT = _UNPARSED
    """With a pydantic model class as response_format, the text parsed into it; with any other JSON response_format
    (a JSON Schema dict, "json_object", or a vendor's JSON format object), the JSON value (json.loads). None when the
    generation did not finish with STOP (e.g. cut short by max_tokens), when it was refused, or without a JSON
    response_format. A text that finished with STOP but does not parse raises ResponseParseError, whose `response`
    is this response, unparsed: a model that was not held to the format (the openai SDK's parse() raises then too).
    """
    stop_sequence: str = ""
    """With finish_reason STOP_SEQUENCE: the stop sequence that ended the text, when the backend says which."""
    context_window_exceeded: bool = False
    """With finish_reason LENGTH: the model's context window, not max_tokens, ended the answer, so a larger max_tokens
    gives no more (shorten the conversation, or load a local model with a larger context_size). Claude and local
    models say so; an OpenAI model never does, its API says length for both."""
    refusal: str = ""
    """The text in which the model declined the request (an OpenAI model's refusal, e.g. instead of JSON matching
    the response_format); "" when it did not."""
    request_id: str = ""
    """The server's id of this call (its x-request-id), as its access log names it: quote it when reporting a
    problem with this answer. Empty from a server that sent none."""

    def message(self) -> Message:
        """This answer as the assistant turn of the next request (calls and reasoning included)."""
        return Message("assistant", self.text or self.refusal, tool_calls=self.tool_calls, reasoning=self.reasoning)


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
    """With include_tokens (llama.cpp only)."""
