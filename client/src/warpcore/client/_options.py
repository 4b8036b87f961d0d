"""The keyword options of load_model and generate, the words their closed-set options take, and the model classes
response_format parses an answer into."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol, TypeAlias, TypedDict, TypeVar

from warpcore.client._messages import Cache
from warpcore.v1 import tools_pb2

ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]
"""How hard a reasoning model thinks (what each backend takes differs); at run time these words in any case."""
Verbosity = Literal["low", "medium", "high"]
"""How much the answer says (OpenAI's verbosity; other backends refuse it)."""
NumaStrategy = Literal["disabled", "distribute", "isolate", "numactl", "mirror"]
"""llama.cpp's NUMA placement of a local model's work."""
Pooling = Literal["mean", "cls", "last"]
"""How a local embedding model makes one vector of a text's token vectors."""

Parsed_co = TypeVar("Parsed_co", covariant=True)


class ResponseModelClass(Protocol[Parsed_co]):
    """What response_format takes to parse the answer into: a pydantic model class, or any class with these two class
    methods. generate() then types the response's `parsed` as an instance of it (or None)."""

    def model_json_schema(self) -> dict[str, Any]: ...

    def model_validate_json(self, json_data: str, /) -> Parsed_co: ...


ResponseFormatLike: TypeAlias = (
    ResponseModelClass[object] | Literal["json_object"] | Mapping[str, object] | tools_pb2.ResponseFormat
)
"""What response_format takes: a model class (see ResponseModelClass), "json_object", a JSON Schema or either vendor's
format object (dicts), or the protocol's ResponseFormat message."""


class _NotGiven:
    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Any = _NotGiven()
"""The default of an option taken as a keyword of its own (response_format), which tells "not given" from None."""


class BackendOptions(TypedDict, total=False):
    """Backend settings as keyword arguments: the API ones for openai/anthropic, the local ones for llama_cpp. An
    option not named here is a TypeError."""

    api_key: str
    organization: str
    base_url: str
    api_timeout: float
    unlisted: bool
    threads: int
    use_gpu: bool
    gpu_layers: int
    use_mmap: bool
    use_mlock: bool
    numa_strategy: NumaStrategy
    chat_format: str
    parallel: int
    embedding: bool
    pooling: Pooling
    mmproj: str
    prompt_cache_tokens: int


class BaseGenerationOptions(TypedDict, total=False):
    """GenerationOptions but response_format, which generate() takes as a keyword of its own so that the type of the
    response's `parsed` follows it."""

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
    continue_last_message: bool | None
    """True: continue the last message, an assistant's text, rather than answer after it (Anthropic's prefill); local
    and Anthropic models. False: answer after it; not Anthropic models. Unset or None: as the model's API reads it,
    what a client without the option got: Anthropic models continue it, the others answer after it."""
    reasoning_effort: ReasoningEffort
    """"none", "minimal", "low", "medium", "high", "xhigh" or "max" (what each backend takes differs)."""
    reasoning_budget: int
    """Most tokens the model may think with (Anthropic's extended thinking)."""
    adaptive_thinking: bool
    """Let the model decide when and how much to think (Anthropic's adaptive thinking); not with a budget."""
    verbosity: Verbosity
    """"low", "medium" or "high": how much the answer says (OpenAI's verbosity; other backends refuse it)."""
    anthropic_betas: Sequence[str]
    """Anthropic beta features to turn on, e.g. ["interleaved-thinking-2025-05-14"] (its anthropic-beta header);
    other backends leave them aside."""


class GenerationOptions(BaseGenerationOptions, total=False):
    """Options of one generation; unset ones keep the backend's defaults. An option not named here is a TypeError
    (as an unexpected keyword argument is), a word-valued option (verbosity, reasoning_effort) outside its words a
    ValueError listing them, an integer beyond what its field carries (max_tokens, top_k, seed, top_logprobs,
    reasoning_budget and logit_bias's token ids are uint32: 0 to 4294967295) a ValueError naming it."""

    response_format: ResponseFormatLike
    """"json_object", a JSON Schema (a dict), or a pydantic model class, whose parsed instance the response's
    `parsed` then holds (for the other JSON formats, the parsed JSON value); or OpenAI's response_format object
    ({"type": "text" | "json_object" | "json_schema", "json_schema": {"name", "schema", "strict"}}) or Anthropic's
    output format ({"type": "json_schema", "schema"})."""
