"""The dialects the door speaks (OpenAI's Chat Completions, legacy Completions and Responses, Anthropic's Messages),
each as the same few operations: parse a request, render an answer, stream one, and shape an error."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from warpcore.server.core.domain import Finish, GenerationParams
from warpcore.server.core.engine import GenerationOutput
from warpcore.server.core.errors import WarpcoreError
from warpcore.server.core.tokens import PromptUsage
from warpcore.server.http import (
    anthropic_request,
    anthropic_response,
    completions_request,
    completions_response,
    openai_request,
    openai_response,
    responses_request,
    responses_response,
)
from warpcore.server.http.collect import Collected
from warpcore.server.http.errors import anthropic_error, openai_error
from warpcore.server.http.fields import Json
from warpcore.server.http.responses_stream import ResponsesStream


class Stream(Protocol):
    def start(self, prompt: PromptUsage | None) -> bytes:
        """The stream's opening events, with the prompt's usage when the backend told it first."""

    def feed(self, output: GenerationOutput) -> bytes: ...
    def end(self, finish: Finish) -> bytes: ...
    def fail(self, error: WarpcoreError, request_id: str, cut: Finish | None) -> bytes:
        """The stream's end on `error`; `cut`, the end of the generation it cut short (the drain's), whose usage
        goes with it where the dialect has a place for it."""


@dataclass(frozen=True)
class Call:
    """A parsed generation request, in any dialect."""

    model: str
    params: GenerationParams
    stream: bool
    field_names: dict[str, str]
    """The path in the dialect's request of each domain message part, by its domain path."""
    include_usage: bool = False
    echo: Mapping[str, Any] = field(default_factory=dict)
    """The request's settings, which a Responses answer repeats."""


@dataclass(frozen=True)
class Dialect:
    name: str
    parse: Callable[[Json, int], Call]
    """The call a body asks for, given the max_tokens of one that names none."""
    answer: Callable[[Call, Collected], dict[str, Any]]
    stream: Callable[[Call], Stream]
    error: Callable[[WarpcoreError, str], dict[str, Any]]
    early_usage: bool = False
    """Whether a stream opens as soon as the backend tells the prompt's usage (Anthropic's message_start carries
    it), rather than with the first delta."""
    beta_header: str | None = None
    """The header whose comma-separated values name Anthropic beta features (GenerationParams.anthropic_betas)."""
    remembers_reasoning: bool = False
    """Whether the door keeps the signed reasoning of its answers' tool calls, to hand it back upstream on the next
    turn (reasoning_memory.py): for Chat Completions, which has no standard field in which a client echoes it; the
    other two dialects have one (Anthropic's thinking blocks, the Responses API's reasoning items)."""


def _openai_call(body: Json, default_max_tokens: int) -> Call:
    request = openai_request.chat_request(body, default_max_tokens)
    return Call(request.model, request.params, request.stream, request.field_names, request.include_usage)


def _completions_call(body: Json, default_max_tokens: int) -> Call:
    request = completions_request.completion_request(body, default_max_tokens)
    return Call(request.model, request.params, request.stream, completions_request.FIELD_NAMES, request.include_usage)


def _responses_call(body: Json, default_max_tokens: int) -> Call:
    request = responses_request.responses_request(body, default_max_tokens)
    return Call(request.model, request.params, request.stream, request.field_names, echo=request.echo)


def _anthropic_call(body: Json, _default_max_tokens: int) -> Call:
    request = anthropic_request.messages_request(body)  # max_tokens is required: there is no default
    return Call(request.model, request.params, request.stream, request.field_names)


OPENAI = Dialect(
    name="openai",
    parse=_openai_call,
    answer=lambda call, collected: openai_response.completion(call.model, collected),
    stream=lambda call: openai_response.OpenAIStream(call.model, call.include_usage),
    error=lambda error, _request_id: openai_error(error, openai_request.FIELD_NAMES),
    remembers_reasoning=True,
)
COMPLETIONS = Dialect(
    name="openai",
    parse=_completions_call,
    answer=completions_response.completion,
    stream=completions_response.CompletionStream,
    error=completions_response.error,
)
ANTHROPIC = Dialect(
    name="anthropic",
    parse=_anthropic_call,
    answer=lambda call, collected: anthropic_response.message(call.model, collected),
    stream=lambda call: anthropic_response.AnthropicStream(call.model),
    error=lambda error, request_id: anthropic_error(error, request_id, anthropic_request.FIELD_NAMES),
    early_usage=True,
    beta_header="anthropic-beta",
)
RESPONSES = Dialect(
    name="openai",
    parse=_responses_call,
    answer=lambda call, collected: responses_response.answer(call.model, call.echo, collected),
    stream=lambda call: ResponsesStream(call.model, call.echo),
    error=lambda error, _request_id: openai_error(error, responses_request.FIELD_NAMES),
)
