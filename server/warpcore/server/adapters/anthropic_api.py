"""Anthropic backend: the Messages API through the official SDK; models listed by a direct HTTP request."""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

import anthropic
import httpx2

from warpcore.server.adapters.api import (
    ApiEnvironment,
    ErrorTable,
    check_offered,
    error_for_status,
    request_timeout,
    resolve_api,
    scrub_request_id,
    translate_sdk_error,
    upstream_error,
    upstream_message,
)
from warpcore.server.adapters.env import env_str
from warpcore.server.core.domain import (
    ApiSettings,
    Finish,
    FinishReason,
    GenerationEvent,
    GenerationParams,
    ModelInfo,
    Role,
    TextChunk,
)
from warpcore.server.core.errors import (
    DeadlineExceededError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
    WarpcoreError,
)

PROVIDER = "anthropic"
ENVIRONMENT = ApiEnvironment(
    provider=PROVIDER,
    api_key="ANTHROPIC_API_KEY",
    base_url="ANTHROPIC_API_BASE",
    default_base_url="https://api.anthropic.com",
)
DEFAULT_API_VERSION = "2023-06-01"
MAX_TEMPERATURE = 1.0
MODELS_PAGE_SIZE = 1000
MAX_MODEL_PAGES = 20

ERRORS: ErrorTable = {
    anthropic.BadRequestError: InvalidArgumentError,
    anthropic.AuthenticationError: UnauthenticatedError,
    anthropic.PermissionDeniedError: PermissionDeniedError,
    anthropic.NotFoundError: NotFoundError,
    anthropic.RequestTooLargeError: InvalidArgumentError,
    anthropic.UnprocessableEntityError: InvalidArgumentError,
    anthropic.RateLimitError: ResourceExhaustedError,
    anthropic.InternalServerError: UnavailableError,
    anthropic.APITimeoutError: DeadlineExceededError,
    anthropic.APIConnectionError: UnavailableError,
    anthropic.APIResponseValidationError: UnavailableError,
    # Failures while reading a stream reach us unwrapped.
    httpx2.TimeoutException: DeadlineExceededError,
    httpx2.TransportError: UnavailableError,
    ValueError: UnavailableError,  # a malformed event in the upstream's stream
}
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
_SDK_ERRORS = (anthropic.AnthropicError, httpx2.HTTPError, ValueError)
STOP_REASONS = {
    "end_turn": FinishReason.STOP,
    "max_tokens": FinishReason.LENGTH,
    "stop_sequence": FinishReason.STOP_SEQUENCE,
}


class AnthropicAdapter:
    """One model of the Anthropic Messages API."""

    def __init__(self, settings: ApiSettings, env: Mapping[str, str] = os.environ) -> None:
        self._api = resolve_api(settings, env, ENVIRONMENT)
        self._version = env_str(env, "ANTHROPIC_API_VERSION") or DEFAULT_API_VERSION
        self._client = anthropic.AsyncAnthropic(
            api_key=self._api.api_key,
            base_url=self._api.base_url,
            timeout=self._api.timeout,
            max_retries=0,  # failures go back to the caller at once, with RetryInfo where waiting helps
            default_headers={"anthropic-version": self._version},
            http_client=anthropic.DefaultAioHttpClient(timeout=self._api.timeout),
        )
        self._model = ""

    async def load(self, model: str, context_size: int | None) -> ModelInfo:
        check_offered(model, await self.list_models(), "Anthropic", "BACKEND_TYPE_ANTHROPIC")
        self._model = model
        return ModelInfo(context_size=context_size or 0)

    async def generate(self, params: GenerationParams, stop: threading.Event) -> AsyncGenerator[GenerationEvent, None]:
        request = self._request(params)
        try:
            # Events as plain dicts (cast_to=object): the SDK still sends the request, authenticates, decodes the
            # event stream and raises on `error` events, but builds no typed object per token.
            stream = await self._client.post(
                "/v1/messages",
                body={**request, "stream": True},
                options={"timeout": request_timeout(self._api.timeout, params.timeout)},
                cast_to=object,
                stream=True,
                stream_cls=anthropic.AsyncStream[object],
            )
        except _SDK_ERRORS as error:
            raise self._translate(error) from error
        stop_reason, input_tokens, output_tokens = None, 0, 0
        try:
            async for event in stream:
                if not isinstance(event, dict):
                    raise TypeError("an event that is not a JSON object")
                kind = event.get("type")
                if kind == "content_block_delta":
                    delta = event["delta"]
                    if delta.get("type") == "text_delta" and stop_reason is None:
                        text = delta["text"]
                        if not isinstance(text, str):
                            raise TypeError("text that is not a string")
                        yield TextChunk(text)
                elif kind == "message_start":
                    input_tokens, output_tokens = _usage(event["message"], input_tokens, output_tokens)
                elif kind == "message_delta":
                    stop_reason = event["delta"]["stop_reason"]
                    input_tokens, output_tokens = _usage(event, input_tokens, output_tokens)
        except _SDK_ERRORS as error:
            raise self._translate(error) from error
        except (AttributeError, KeyError, TypeError) as error:  # an event of the wrong shape
            raise self._http_error(UnavailableError, "a stream event of the wrong shape") from error
        finally:
            await stream.close()  # on cancellation too: the upstream connection closes at once
        if stop_reason is None:
            raise UnavailableError(
                "anthropic upstream ended the stream before it finished", reason="UPSTREAM_STREAM_TRUNCATED"
            )
        yield Finish(
            STOP_REASONS.get(stop_reason, FinishReason.STOP),
            prompt_tokens=input_tokens,
            completion_tokens=output_tokens,
            upstream_request_id=scrub_request_id(stream.response.headers.get("request-id"), self._api.api_key),
        )

    def _request(self, params: GenerationParams) -> dict[str, Any]:
        if params.seed is not None:
            raise InvalidArgumentError(
                "seed is not supported by the Anthropic API; leave it unset",
                field="options.seed",
                reason="OPTION_UNSUPPORTED",
            )
        if params.temperature is not None and params.temperature > MAX_TEMPERATURE:
            raise InvalidArgumentError(
                f"the Anthropic API accepts a temperature from 0 to {MAX_TEMPERATURE:g}",
                field="options.temperature",
                reason="OPTION_UNSUPPORTED",
            )
        system = [params.system] if params.system else []
        system += [message.content for message in params.messages if message.role is Role.SYSTEM]
        request: dict[str, Any] = {
            "model": self._model,
            "messages": _alternating_turns(params),
            "max_tokens": params.max_tokens,
        }
        if system:
            request["system"] = "\n\n".join(system)
        # The Messages API documents these sampling fields (anthropic 2.x no longer takes them as arguments).
        sampling = {"temperature": params.temperature, "top_p": params.top_p, "top_k": params.top_k}
        request.update({name: value for name, value in sampling.items() if value is not None})
        if params.stop:
            request["stop_sequences"] = list(params.stop)
        return request

    async def list_models(self) -> Sequence[str]:
        """GET /v1/models page by page, straight over HTTP with the key and version headers."""
        headers = {"x-api-key": self._api.api_key, "anthropic-version": self._version}
        names: list[str] = []
        query: dict[str, str | int] = {"limit": MODELS_PAGE_SIZE}
        async with httpx2.AsyncClient(base_url=self._api.base_url, headers=headers, timeout=self._api.timeout) as http:
            for _ in range(MAX_MODEL_PAGES):
                try:
                    response = await http.get("/v1/models", params=query)
                except httpx2.HTTPError as error:
                    raise self._translate(error) from error
                if response.is_error:
                    raise self._http_error(
                        error_for_status(response.status_code), response.text, response.status_code, response.headers
                    )
                try:
                    page = response.json()
                    names += [model["id"] for model in page["data"]]
                except (ValueError, KeyError, TypeError) as error:
                    raise self._http_error(UnavailableError, "malformed /v1/models response") from error
                if not page.get("has_more"):
                    break
                query["after_id"] = page["last_id"]
        return names

    async def close(self) -> None:
        await self._client.close()

    def _http_error(
        self,
        kind: type[WarpcoreError],
        message: str,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> WarpcoreError:
        return upstream_error(
            kind, provider=PROVIDER, message=message, secret=self._api.api_key, status=status, headers=headers
        )

    def _translate(self, error: Exception) -> WarpcoreError:
        if isinstance(error, anthropic.APIStatusError) and error.status_code == 200:
            event_error = error.body.get("error") if isinstance(error.body, dict) else None
            error_type = event_error.get("type") if isinstance(event_error, dict) else None
            status = ERROR_EVENT_STATUS.get(str(error_type), 500)
            message = upstream_message(error.body) or error.message
            return self._http_error(error_for_status(status), message, headers=error.response.headers)
        return translate_sdk_error(
            error,
            ERRORS,
            provider=PROVIDER,
            secret=self._api.api_key,
            base_url=self._api.base_url,
            status_error=anthropic.APIStatusError,
            context_length=lambda failed: "prompt is too long" in str(failed),
        )


def _usage(carrier: Mapping[str, Any], input_tokens: int, output_tokens: int) -> tuple[int, int]:
    """The counts so far, updated by the non-zero ones in an event's usage.

    Anthropic sends input_tokens in message_start and the running output_tokens in message_delta, but compatible
    servers (LiteLLM's /v1/messages) send input_tokens 0 at the start and the real count in message_delta; either
    event may carry either count, or leave it out or null. A 0 never replaces a count already seen.
    """
    usage = carrier.get("usage") or {}
    counts = [usage.get(name) for name in ("input_tokens", "output_tokens")]
    sent = [int(count) if count is not None else 0 for count in counts]
    return sent[0] or input_tokens, sent[1] or output_tokens


def _alternating_turns(params: GenerationParams) -> list[dict[str, str]]:
    """User and assistant turns as the Messages API wants them: alternating, starting with the user."""
    if params.prompt is not None:
        return [{"role": "user", "content": params.prompt}]
    turns: list[dict[str, str]] = []
    for message in params.messages:
        if message.role is Role.SYSTEM:
            continue
        if turns and turns[-1]["role"] == message.role.value:
            turns[-1]["content"] += "\n\n" + message.content
        else:
            turns.append({"role": message.role.value, "content": message.content})
    if turns[0]["role"] != "user":
        raise InvalidArgumentError(
            "the Anthropic API needs the conversation to start with a user message",
            field="messages",
            reason="OPTION_UNSUPPORTED",
        )
    return turns
