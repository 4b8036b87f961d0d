"""Plain Python values for what the protocol carries: models, configs, stream events, final responses."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

from warpcore.client._messages import Cache, Message, ReasoningBlock, ToolCall


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
    UNSPECIFIED = "unspecified"
    """Not set, or a reason newer than this SDK."""


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
    mmproj: str | None = None
    """A multimodal projector GGUF under MODELS_PATH (named like a model): the model then reads Image parts."""
    prompt_cache_tokens: int | None = None
    """Prompt tokens whose KV cells the model keeps for later prompts that begin alike; 0 turns its cache off."""


class BackendOptions(TypedDict, total=False):
    """Backend settings as keyword arguments: the API ones for openai/anthropic, the local ones for llama_cpp. An
    option not named here is a TypeError."""

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
    mmproj: str
    prompt_cache_tokens: int


class GenerationOptions(TypedDict, total=False):
    """Options of one generation; unset ones keep the backend's defaults. An option not named here is a TypeError
    (as an unexpected keyword argument is), a word-valued option (verbosity, reasoning_effort) outside its words a
    ValueError listing them, an integer beyond what its field carries (max_tokens, top_k, seed, top_logprobs,
    reasoning_budget and logit_bias's token ids are uint32: 0 to 4294967295) a ValueError naming it."""

    max_tokens: int
    temperature: float
    top_p: float
    top_k: int
    stop: str | Sequence[str]
    """Stop sequences; a str is one sequence (as OpenAI's SDK takes it), not one per character."""
    system: str
    system_cache: Cache
    """A cache breakpoint after the system prompt (tools included), see Cache."""
    seed: int
    presence_penalty: float
    """Lower the score of every token the answer already holds by this much, -2 to 2 (OpenAI's meaning)."""
    frequency_penalty: float
    """Lower each token's score by this much per time the answer already holds it, -2 to 2."""
    logit_bias: Mapping[int, float]
    """Token id (the model's vocabulary) to a bias added to its score, -100 to 100."""
    logprobs: bool
    """Return each generated token's log-probability (TextDelta.logprobs, GenerateResponse.logprobs)."""
    top_logprobs: int
    """With logprobs: also the most likely tokens at each place, up to 20."""
    no_prompt_cache: bool
    """Keep this prompt out of a local model's prompt cache: neither served from it nor left in it."""
    tools: Sequence[Any]
    """Tool objects, pydantic model classes, typed functions (see Tool), or tools as either vendor's SDK takes them:
    OpenAI's {"type": "function", "function": {"name", "description", "parameters", "strict"}} and Anthropic's
    {"name", "description", "input_schema", "strict"}."""
    tool_choice: str | Mapping[str, Any]
    """"auto", "none", "required", or the name of the one tool the model must call; or either vendor's tool_choice
    object (OpenAI's {"type": "function", "function": {"name": ...}}, Anthropic's {"type": "auto" | "any" | "tool" |
    "none", "name", "disable_parallel_tool_use"})."""
    parallel_tool_calls: bool
    continue_last_message: bool
    """Continue the last message, an assistant's text, rather than answer after it (Anthropic's prefill); local and
    Anthropic models."""
    response_format: Any
    """"json_object", a JSON Schema (a dict), or a pydantic model class, whose parsed instance the response's
    `parsed` then holds (for the other JSON formats, the parsed JSON value); or OpenAI's response_format object
    ({"type": "text" | "json_object" | "json_schema", "json_schema": {"name", "schema", "strict"}}) or Anthropic's
    output format ({"type": "json_schema", "schema"})."""
    reasoning_effort: str
    """"none", "minimal", "low", "medium", "high", "xhigh" or "max" (what each backend takes differs)."""
    reasoning_budget: int
    """Most tokens the model may think with (Anthropic's extended thinking)."""
    adaptive_thinking: bool
    """Let the model decide when and how much to think (Anthropic's adaptive thinking); not with a budget."""
    verbosity: str
    """"low", "medium" or "high": how much the answer says (OpenAI's verbosity; other backends refuse it)."""
    anthropic_betas: Sequence[str]
    """Anthropic beta features to turn on, e.g. ["interleaved-thinking-2025-05-14"] (its anthropic-beta header);
    other backends leave them aside."""


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_prompt_tokens: int = 0
    cache_creation_tokens: int = 0
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
    usage: Usage
    timings: Timings
    upstream_request_id: str
    tool_calls: tuple[ToolCall, ...] = ()
    stop_sequence: str = ""
    """With finish_reason STOP_SEQUENCE: the stop sequence that ended the text, when the backend says which."""


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
class GenerateResponse:
    """A whole generation: its text and how it ended."""

    text: str
    finish_reason: FinishReason
    usage: Usage
    timings: Timings
    upstream_request_id: str
    logprobs: tuple[TokenLogprob, ...] = ()
    """With the logprobs option: every generated token's, in order."""
    tool_calls: tuple[ToolCall, ...] = ()
    """The complete calls, when finish_reason is TOOL_CALLS."""
    reasoning: tuple[ReasoningBlock, ...] = ()
    parsed: Any = None
    """With a pydantic model class as response_format, the text parsed into it; with any other JSON response_format
    (a JSON Schema dict, "json_object", or a vendor's JSON format object), the JSON value (json.loads). None when the
    generation did not finish with STOP (e.g. cut short by max_tokens), when it was refused, or without a JSON
    response_format. A text that finished with STOP but does not parse raises ResponseParseError, whose `response`
    is this response, unparsed: a model that was not held to the format (the openai SDK's parse() raises then too).
    """
    stop_sequence: str = ""
    """With finish_reason STOP_SEQUENCE: the stop sequence that ended the text, when the backend says which."""
    refusal: str = ""
    """The text in which the model declined the request (an OpenAI model's refusal, e.g. instead of JSON matching
    the response_format); "" when it did not."""

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
