"""Anthropic backend: the Messages API through the official SDK; models listed by a direct HTTP request."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import anthropic

from warpcore.server.adapters.hosted.anthropic_request import alternating_turns, request_options
from warpcore.server.adapters.hosted.config import ANTHROPIC, request_timeout, resolve_api
from warpcore.server.adapters.hosted.delta_text import Delta, count_field, reported_count, string_field
from warpcore.server.adapters.hosted.errors import (
    ErrorTable,
    map_sdk_errors,
    upstream_error,
)
from warpcore.server.adapters.hosted.listing import listed_id, unreadable_listing
from warpcore.server.adapters.hosted.refusals import refused
from warpcore.server.adapters.hosted.sdk_client import client_options
from warpcore.server.adapters.hosted.streaming import (
    NO_DELTAS,
    EventReader,
    HostedAdapter,
    StreamEndpoint,
)
from warpcore.server.core.capabilities import Capabilities
from warpcore.server.core.domain import (
    ApiSettings,
    FinishReason,
    GenerationParams,
    ReasoningChunk,
    TextChunk,
    ToolCallDelta,
)
from warpcore.server.core.errors import (
    UPSTREAM_MALFORMED,
    DeadlineExceededError,
    UnavailableError,
)
from warpcore.server.core.hops import via_header
from warpcore.server.core.tokens import PromptUsage, TokenCount

DEFAULT_API_VERSION = "2023-06-01"
MODELS_PAGE_SIZE = 1000
MAX_LISTED_MODELS = 20 * MODELS_PAGE_SIZE

# An `error` event inside a stream arrives as an APIStatusError with the stream's HTTP 200; its error type
# tells what the status would have been (https://docs.anthropic.com/en/api/errors).
ERROR_EVENT_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}
ERRORS = ErrorTable(
    sdk_errors=(anthropic.AnthropicError, ValueError),
    kinds={anthropic.APITimeoutError: DeadlineExceededError},
    status_error=anthropic.APIStatusError,
    event_statuses=ERROR_EVENT_STATUS,
)
CONTEXT_WINDOW_EXCEEDED = "model_context_window_exceeded"
STOP_REASONS = {
    "end_turn": FinishReason.STOP,
    "max_tokens": FinishReason.LENGTH,
    "stop_sequence": FinishReason.STOP_SEQUENCE,
    "tool_use": FinishReason.TOOL_CALLS,
    "refusal": FinishReason.CONTENT_FILTER,
    "pause_turn": FinishReason.PAUSED,
    # The context window ran out before max_tokens did (a beta the anthropic-beta header may ask for): a LENGTH
    # whose Finish says so, since a larger max_tokens would not help.
    CONTEXT_WINDOW_EXCEEDED: FinishReason.LENGTH,
}


class _MessageEvents(EventReader):
    """The events of a streamed message: text, thinking (its signature last) and tool-input pieces in
    content_block_delta, a tool call's id and name and a redacted thinking block in content_block_start, usage in
    message_start (passed on at once when it counts the prompt) and message_delta, the stop reason and stop sequence
    in message_delta."""

    __slots__ = ("_calls", "_given_inputs", "_input_tokens", "_started_output")

    def __init__(self) -> None:
        super().__init__()
        self._calls: dict[int, int] = {}
        """Content block index of each tool_use block -> its call's index, in the order calls began."""
        self._given_inputs: dict[int, str] = {}
        """A tool_use block's input given whole in its content_block_start (a compatible server may; Claude starts
        with {} and streams the input), as JSON: the call's arguments unless input deltas follow."""
        self._input_tokens = 0
        self._started_output: int | None = None  # message_start's count of the answer

    def deltas(self, event: Any) -> Sequence[Delta | PromptUsage]:
        kind = event.get("type")
        if kind == "content_block_delta":
            if self.finish is None and (delta := self._delta(event["index"], event["delta"])):  # none after the stop
                return (delta,)
        elif kind == "content_block_start":
            return self._start(event["index"], event["content_block"]) if self.finish is None else NO_DELTAS
        elif kind == "content_block_stop":
            given = self._given_inputs.pop(event["index"], None)
            if given is not None and self.finish is None:
                return (ToolCallDelta(self._calls[event["index"]], arguments=given),)
        elif kind == "message_start":
            # Its output_tokens counts the answer as it starts (1, say): a stream cut before its message_delta
            # tells no count of its answer rather than that one, which stands only if the end tells none.
            message = event["message"]
            self._count(message, answer=False)
            self._started_output = reported_count((message.get("usage") or {}).get("output_tokens"))
            if self.prompt_tokens:  # a compatible server may count nothing yet: then the Finish tells it
                return (PromptUsage(self.prompt_tokens, self.cached_prompt_tokens, self.cache_creation_tokens),)
        elif kind == "message_delta":
            delta = event["delta"]
            reason = delta["stop_reason"]
            self.finish = None if reason is None else STOP_REASONS.get(reason, FinishReason.STOP)
            self.context_window_exceeded = reason == CONTEXT_WINDOW_EXCEEDED
            sequence = string_field(delta.get("stop_sequence") or "")
            if sequence and self.finish is FinishReason.STOP:
                self.finish = FinishReason.STOP_SEQUENCE  # llama.cpp's server says end_turn, and which sequence
            self.stop_sequence = sequence if self.finish is FinishReason.STOP_SEQUENCE else ""
            self._count(event)
            self.completion_tokens = _later(self.completion_tokens, self._started_output)
        return NO_DELTAS

    def _start(self, at: int, block: Mapping[str, Any]) -> Sequence[Delta]:
        """What a content block's start holds: a call's id and name, a redacted thinking block, and what a
        compatible server may put there rather than in deltas (text, thinking, a call's input), as the anthropic
        SDK's accumulator reads it."""
        kind = block["type"]
        if kind == "tool_use":
            index = self._calls[at] = len(self._calls)
            given = block.get("input")
            if isinstance(given, dict) and given:
                self._given_inputs[at] = json.dumps(given, ensure_ascii=False)
            return (ToolCallDelta(index, id=string_field(block["id"]), name=string_field(block["name"])),)
        if kind == "redacted_thinking":
            return (ReasoningChunk(signature=string_field(block["data"]), redacted=True),)
        if kind == "text" and (text := string_field(block.get("text", ""))):
            return (TextChunk(text),)
        if kind == "thinking" and (thinking := string_field(block.get("thinking", ""))):
            return (ReasoningChunk(thinking),)
        return NO_DELTAS

    def _delta(self, block: int, delta: Mapping[str, Any]) -> Delta | None:
        """The delta of a content block; None for an empty piece, or a kind this gateway does not pass on."""
        kind = delta["type"]
        if kind == "text_delta":
            text = string_field(delta["text"])
            return TextChunk(text) if text else None
        if kind == "input_json_delta":
            self._given_inputs.pop(block, None)  # the streamed input replaces the one given at the start
            piece = string_field(delta["partial_json"])
            return ToolCallDelta(self._calls[block], arguments=piece) if piece else None
        if kind == "thinking_delta":
            return ReasoningChunk(string_field(delta["thinking"]))
        if kind == "signature_delta":
            return ReasoningChunk(signature=string_field(delta["signature"]))
        return None

    def _count(self, carrier: Mapping[str, Any], answer: bool = True) -> None:
        """Take the non-zero counts of an event's usage (the answer's too, with `answer`).

        Anthropic sends input_tokens in message_start and the running output_tokens in message_delta, but compatible
        servers (LiteLLM's /v1/messages) send input_tokens 0 at the start and the real count in message_delta; either
        event may carry either count, or leave it out or null. A 0 never replaces a count already seen. The prompt's
        tokens are the uncached ones plus those read from and written to the cache, which the API counts apart; as no
        prompt has none, a sum of 0 is a prompt not counted yet, not reported.
        """
        usage = carrier.get("usage") or {}
        self._input_tokens = count_field(usage.get("input_tokens")) or self._input_tokens
        self.cached_prompt_tokens = count_field(usage.get("cache_read_input_tokens")) or self.cached_prompt_tokens
        self.cache_creation_tokens = count_field(usage.get("cache_creation_input_tokens")) or self.cache_creation_tokens
        prompt = self._input_tokens + self.cached_prompt_tokens + self.cache_creation_tokens
        self.prompt_tokens = count_field(prompt) or None
        if answer:
            self.completion_tokens = _later(reported_count(usage.get("output_tokens")), self.completion_tokens)
            thinking = (usage.get("output_tokens_details") or {}).get("thinking_tokens")
            self.reasoning_tokens = _later(reported_count(thinking), self.reasoning_tokens)


def _later(count: int | None, earlier: int | None) -> int | None:
    """`count`, unless it is none or 0 and a count came `earlier`."""
    return count if count or earlier is None else earlier


_COUNTED = ("system", "tools", "tool_choice", "thinking", "output_config")
"""The body fields beyond the messages that count_tokens takes, as they add to the prompt."""


class AnthropicAdapter(HostedAdapter):
    """One model of the Anthropic Messages API."""

    name = "Anthropic"
    errors = ERRORS
    endpoint = StreamEndpoint("/v1/messages", anthropic.AsyncStream[object], _MessageEvents)
    _client: anthropic.AsyncAnthropic

    def __init__(self, settings: ApiSettings, env: Mapping[str, str] = os.environ) -> None:
        api = resolve_api(settings, env, ANTHROPIC)
        options = client_options(api, anthropic.DefaultAioHttpClient)
        # The SDK sends its key as a bearer token; the API documents x-api-key, which compatible servers may require.
        headers = {"anthropic-version": api.version or DEFAULT_API_VERSION, "x-api-key": api.api_key, **via_header()}
        client = anthropic.AsyncAnthropic(**options, default_headers=headers)
        super().__init__(api, client)

    def _request(self, params: GenerationParams) -> dict[str, Any]:
        options = request_options(params)
        return self._body(params, alternating_turns(params), **options)

    def _capabilities(self, model: str) -> Capabilities:
        # A text model: a load asking for an embedding model here was refused with the request (validation.py).
        return Capabilities(count_tokens=True, images=True, tools=True, documents=True)

    def _headers(self, params: GenerationParams) -> dict[str, str]:
        betas = {"anthropic-beta": ",".join(params.anthropic_betas)} if params.anthropic_betas else {}
        return {**super()._headers(params), **betas}

    async def count_tokens(self, params: GenerationParams, include_tokens: bool) -> TokenCount:
        """The Messages API's own count, for the same messages, system text, tools and thinking `generate` would
        send."""
        if include_tokens:
            raise refused("include_tokens", "the Anthropic API counts tokens but does not return them")
        body = self._request(params)
        fields = {name: body[name] for name in _COUNTED if name in body}
        with map_sdk_errors(ERRORS, self._api, params.timeout):
            counted = await self._client.messages.count_tokens(
                model=self._model,
                messages=body["messages"],
                timeout=request_timeout(self._api.timeout, params.timeout),
                extra_headers=self._headers(params),
                **fields,
            )
        try:
            return TokenCount(count_field(counted.input_tokens))
        except ValueError as error:
            what = f"the count holds {error}"
            raise upstream_error(UnavailableError, self._api, what, reason=UPSTREAM_MALFORMED) from None

    async def _listed_models(self) -> Sequence[str]:
        """GET /v1/models page by page, at most MAX_LISTED_MODELS ids (an upstream chooses how many pages it has)."""
        names: list[str] = []
        with map_sdk_errors(ERRORS, self._api), unreadable_listing(self._api):
            async for model in self._client.models.list(limit=MODELS_PAGE_SIZE):
                names.append(listed_id(model))
                if len(names) == MAX_LISTED_MODELS:
                    break
        return names
