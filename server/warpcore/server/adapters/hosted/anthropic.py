"""Anthropic backend: the Messages API through the official SDK; models listed by a direct HTTP request."""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping, Sequence
from typing import Any

import anthropic
import httpx2

from warpcore.server.adapters.env import env_str
from warpcore.server.adapters.hosted.config import ApiEnvironment, client_options, request_timeout, resolve_api
from warpcore.server.adapters.hosted.errors import ErrorTable, error_for_status, map_sdk_errors, upstream_error
from warpcore.server.adapters.hosted.streaming import EventReader, HostedAdapter, StreamEndpoint, refused
from warpcore.server.core.capabilities import Capabilities
from warpcore.server.core.content import TextPart
from warpcore.server.core.domain import ApiSettings, ChatMessage, FinishReason, GenerationParams, Role
from warpcore.server.core.errors import DeadlineExceededError, UnavailableError
from warpcore.server.core.tokens import TokenCount

ENVIRONMENT = ApiEnvironment(
    provider="anthropic",
    api_key="ANTHROPIC_API_KEY",
    base_url="ANTHROPIC_API_BASE",
    default_base_url="https://api.anthropic.com",
)
DEFAULT_API_VERSION = "2023-06-01"
MAX_TEMPERATURE = 1.0
MODELS_PAGE_SIZE = 1000
MAX_MODEL_PAGES = 20

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
    # Failures while reading a stream, and those of the direct model listing, reach us as httpx2's own.
    catches=(anthropic.AnthropicError, httpx2.HTTPError, ValueError),
    kinds={anthropic.APITimeoutError: DeadlineExceededError, httpx2.TimeoutException: DeadlineExceededError},
    status_error=anthropic.APIStatusError,
    context_length=lambda failed: "prompt is too long" in str(failed),
    event_statuses=ERROR_EVENT_STATUS,
)
STOP_REASONS = {
    "end_turn": FinishReason.STOP,
    "max_tokens": FinishReason.LENGTH,
    "stop_sequence": FinishReason.STOP_SEQUENCE,
}


class _MessageEvents(EventReader):
    """The events of a streamed message: text in content_block_delta, usage in message_start and message_delta, the
    stop reason in message_delta."""

    __slots__ = ()

    def text(self, event: Any) -> str | None:
        kind = event.get("type")
        if kind == "content_block_delta":
            delta = event["delta"]
            if delta.get("type") == "text_delta" and self.finish is None:  # nothing counts after the stop
                text = delta["text"]
                if not isinstance(text, str):
                    raise TypeError("text that is not a string")
                return text
        elif kind == "message_start":
            self._count(event["message"])
        elif kind == "message_delta":
            reason = event["delta"]["stop_reason"]
            self.finish = None if reason is None else STOP_REASONS.get(reason, FinishReason.STOP)
            self._count(event)
        return None

    def _count(self, carrier: Mapping[str, Any]) -> None:
        """Take the non-zero counts of an event's usage.

        Anthropic sends input_tokens in message_start and the running output_tokens in message_delta, but compatible
        servers (LiteLLM's /v1/messages) send input_tokens 0 at the start and the real count in message_delta; either
        event may carry either count, or leave it out or null. A 0 never replaces a count already seen.
        """
        usage = carrier.get("usage") or {}
        self.prompt_tokens = int(usage.get("input_tokens") or 0) or self.prompt_tokens
        self.completion_tokens = int(usage.get("output_tokens") or 0) or self.completion_tokens


class AnthropicAdapter(HostedAdapter):
    """One model of the Anthropic Messages API."""

    name = "Anthropic"
    errors = ERRORS
    endpoint = StreamEndpoint("/v1/messages", anthropic.AsyncStream[object], "request-id", _MessageEvents)
    _client: anthropic.AsyncAnthropic

    def __init__(self, settings: ApiSettings, env: Mapping[str, str] = os.environ) -> None:
        api = resolve_api(settings, env, ENVIRONMENT)
        self._version = env_str(env, "ANTHROPIC_API_VERSION") or DEFAULT_API_VERSION
        options = client_options(api, anthropic.DefaultAioHttpClient)
        client = anthropic.AsyncAnthropic(**options, default_headers={"anthropic-version": self._version})
        super().__init__(api, client)

    def _request(self, params: GenerationParams) -> dict[str, Any]:
        if params.seed is not None:
            raise refused("seed", "seed is not supported by the Anthropic API; leave it unset")
        if params.logprobs:
            raise refused("logprobs", "the Anthropic API does not return log-probabilities; leave logprobs unset")
        if params.temperature is not None and params.temperature > MAX_TEMPERATURE:
            raise refused("temperature", f"the Anthropic API accepts a temperature from 0 to {MAX_TEMPERATURE:g}")
        system = [params.system] if params.system else []
        system += [message.content for message in params.messages if message.role is Role.SYSTEM]
        # Body fields, as the Messages API documents them: anthropic 2.x takes no arguments for sampling.
        options = {
            "system": "\n\n".join(system) or None,
            "top_k": params.top_k,
            "stop_sequences": list(params.stop) or None,
        }
        return self._body(params, _alternating_turns(params), **options)

    def _capabilities(self, model: str) -> Capabilities:
        return Capabilities(count_tokens=True, images=True)

    async def count_tokens(self, params: GenerationParams, include_tokens: bool) -> TokenCount:
        """The Messages API's own count, for the same messages and system text `generate` would send."""
        if include_tokens:
            raise refused("include_tokens", "the Anthropic API counts tokens but does not return them")
        body = self._request(params)
        fields = {"system": body["system"]} if "system" in body else {}
        with map_sdk_errors(ERRORS, self._api):
            counted = await self._client.messages.count_tokens(
                model=self._model,
                messages=body["messages"],
                timeout=request_timeout(self._api.timeout, params.timeout),
                **fields,
            )
        return TokenCount(counted.input_tokens)

    async def list_models(self) -> Sequence[str]:
        """GET /v1/models page by page, straight over HTTP with the key and version headers."""
        headers = {"x-api-key": self._api.api_key, "anthropic-version": self._version}
        names: list[str] = []
        query: dict[str, str | int] = {"limit": MODELS_PAGE_SIZE}
        async with httpx2.AsyncClient(base_url=self._api.base_url, headers=headers, timeout=self._api.timeout) as http:
            for _ in range(MAX_MODEL_PAGES):
                with map_sdk_errors(ERRORS, self._api):
                    response = await http.get("/v1/models", params=query)
                if response.is_error:
                    status = response.status_code
                    kind = error_for_status(status)
                    raise upstream_error(kind, self._api, response.text, status=status, headers=response.headers)
                try:
                    page = response.json()
                    names += [model["id"] for model in page["data"]]
                except (ValueError, KeyError, TypeError) as error:
                    raise upstream_error(UnavailableError, self._api, "malformed /v1/models response") from error
                if not page.get("has_more"):
                    break
                query["after_id"] = page["last_id"]
        return names


def _alternating_turns(params: GenerationParams) -> list[dict[str, Any]]:
    """User and assistant turns as the Messages API wants them: alternating, starting with the user; a turn with
    content parts becomes content blocks."""
    if params.prompt is not None:
        return [{"role": "user", "content": params.prompt}]
    turns: list[dict[str, Any]] = []
    for message in params.messages:
        if message.role is Role.SYSTEM:
            continue
        content = _blocks(message) if message.parts else message.content
        if turns and turns[-1]["role"] == message.role.value:
            previous = turns[-1]["content"]
            if isinstance(previous, str) and isinstance(content, str):
                turns[-1]["content"] = previous + "\n\n" + content
            else:
                turns[-1]["content"] = _as_blocks(previous) + _as_blocks(content)
        else:
            turns.append({"role": message.role.value, "content": content})
    if turns[0]["role"] != "user":
        raise refused("messages", "the Anthropic API needs the conversation to start with a user message")
    return turns


def _blocks(message: ChatMessage) -> list[dict[str, Any]]:
    """A message's text and parts as content blocks: images as image blocks, by base64 data or by URL."""
    blocks = _as_blocks(message.content)
    for part in message.parts:
        if isinstance(part, TextPart):
            blocks.append({"type": "text", "text": part.text})
        elif part.url:
            blocks.append({"type": "image", "source": {"type": "url", "url": part.url}})
        else:
            data = base64.b64encode(part.data).decode()
            blocks.append({"type": "image", "source": {"type": "base64", "media_type": part.media_type, "data": data}})
    return blocks


def _as_blocks(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(content, list):
        return content
    return [{"type": "text", "text": content}] if content else []
