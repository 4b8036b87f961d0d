"""OpenAI backend: chat completions through the official SDK, against OpenAI or any compatible server."""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

import openai

from warpcore.server.adapters.api import (
    ApiEnvironment,
    ErrorTable,
    check_offered,
    request_timeout,
    resolve_api,
    scrub_request_id,
    translate_sdk_error,
    upstream_error,
)
from warpcore.server.core.domain import (
    ApiSettings,
    Finish,
    FinishReason,
    GenerationEvent,
    GenerationParams,
    ModelInfo,
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

PROVIDER = "openai"
ENVIRONMENT = ApiEnvironment(
    provider=PROVIDER,
    api_key="OPENAI_API_KEY",
    base_url="OPENAI_API_BASE",
    default_base_url="https://api.openai.com/v1",
    organization="OPENAI_ORGANIZATION",
)
MAX_STOP_SEQUENCES = 4  # the chat completions API's limit

ERRORS: ErrorTable = {
    openai.BadRequestError: InvalidArgumentError,
    openai.AuthenticationError: UnauthenticatedError,
    openai.PermissionDeniedError: PermissionDeniedError,
    openai.NotFoundError: NotFoundError,
    openai.UnprocessableEntityError: InvalidArgumentError,
    openai.RateLimitError: ResourceExhaustedError,
    openai.InternalServerError: UnavailableError,
    openai.APITimeoutError: DeadlineExceededError,
    openai.APIConnectionError: UnavailableError,
    openai.APIResponseValidationError: UnavailableError,
    ValueError: UnavailableError,  # a malformed event in the upstream's stream
}
_SDK_ERRORS = (openai.OpenAIError, ValueError)
FINISH_REASONS = {"stop": FinishReason.STOP, "length": FinishReason.LENGTH}


class OpenAIAdapter:
    """One model of an OpenAI-compatible chat completions API."""

    def __init__(self, settings: ApiSettings, env: Mapping[str, str] = os.environ) -> None:
        self._api = resolve_api(settings, env, ENVIRONMENT)
        self._client = openai.AsyncOpenAI(
            api_key=self._api.api_key,
            organization=self._api.organization,
            base_url=self._api.base_url,
            timeout=self._api.timeout,
            max_retries=0,  # failures go back to the caller at once, with RetryInfo where waiting helps
            http_client=openai.DefaultAioHttpClient(timeout=self._api.timeout),
        )
        self._model = ""

    async def load(self, model: str, context_size: int | None) -> ModelInfo:
        check_offered(model, await self.list_models(), "OpenAI", "BACKEND_TYPE_OPENAI")
        self._model = model
        return ModelInfo(context_size=context_size or 0)

    async def generate(self, params: GenerationParams, stop: threading.Event) -> AsyncGenerator[GenerationEvent, None]:
        request = self._request(params)
        try:
            # Chunks as plain dicts (cast_to=object): the SDK still sends the request, authenticates, decodes the
            # event stream and raises on error events, but builds no typed object per token.
            stream = await self._client.post(
                "/chat/completions",
                body={**request, "stream": True, "stream_options": {"include_usage": True}},
                options={"timeout": request_timeout(self._api.timeout, params.timeout)},
                cast_to=object,
                stream=True,
                stream_cls=openai.AsyncStream[object],
            )
        except _SDK_ERRORS as error:
            raise self._translate(error) from error
        finish_reason: str | None = None
        prompt_tokens = completion_tokens = 0
        try:
            async for chunk in stream:
                if not isinstance(chunk, dict):
                    raise TypeError("a chunk that is not a JSON object")
                if usage := chunk.get("usage"):
                    prompt_tokens, completion_tokens = int(usage["prompt_tokens"]), int(usage["completion_tokens"])
                for choice in chunk.get("choices") or ():
                    delta = choice.get("delta") or {}
                    content = delta.get("content")
                    if content and finish_reason is None:  # nothing counts after the stop
                        if not isinstance(content, str):
                            raise TypeError("content that is not a string")
                        yield TextChunk(content)
                    finish_reason = choice.get("finish_reason") or finish_reason
        except _SDK_ERRORS as error:
            raise self._translate(error) from error
        except (AttributeError, KeyError, TypeError) as error:  # a chunk of the wrong shape
            raise upstream_error(
                UnavailableError,
                provider=PROVIDER,
                message="a stream chunk of the wrong shape",
                secret=self._api.api_key,
                reason="UPSTREAM_MALFORMED_STREAM",
            ) from error
        finally:
            await stream.close()  # on cancellation too: the upstream connection closes at once
        if finish_reason is None:
            raise UnavailableError(
                "openai upstream ended the stream before it finished", reason="UPSTREAM_STREAM_TRUNCATED"
            )
        yield Finish(
            FINISH_REASONS.get(finish_reason, FinishReason.STOP),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            upstream_request_id=scrub_request_id(stream.response.headers.get("x-request-id"), self._api.api_key),
        )

    def _request(self, params: GenerationParams) -> dict[str, Any]:
        if params.top_k is not None:
            raise InvalidArgumentError(
                "top_k is not supported by the OpenAI API; leave it unset",
                field="options.top_k",
                reason="OPTION_UNSUPPORTED",
            )
        if len(params.stop) > MAX_STOP_SEQUENCES:
            raise InvalidArgumentError(
                f"the OpenAI API accepts at most {MAX_STOP_SEQUENCES} stop sequences",
                field="options.stop_sequences",
                reason="OPTION_UNSUPPORTED",
            )
        messages = [{"role": "system", "content": params.system}] if params.system else []
        if params.prompt is not None:
            messages.append({"role": "user", "content": params.prompt})
        messages += [{"role": message.role.value, "content": message.content} for message in params.messages]
        request: dict[str, Any] = {
            "model": self._model,
            "messages": messages,
            "max_tokens": params.max_tokens,
        }
        optional = {"temperature": params.temperature, "top_p": params.top_p, "seed": params.seed}
        request.update({name: value for name, value in optional.items() if value is not None})
        if params.stop:
            request["stop"] = list(params.stop)
        return request

    async def list_models(self) -> Sequence[str]:
        try:
            return [model.id async for model in self._client.models.list()]
        except _SDK_ERRORS as error:
            raise self._translate(error) from error

    async def close(self) -> None:
        await self._client.close()

    def _translate(self, error: Exception) -> WarpcoreError:
        return translate_sdk_error(
            error,
            ERRORS,
            provider=PROVIDER,
            secret=self._api.api_key,
            base_url=self._api.base_url,
            status_error=openai.APIStatusError,
            context_length=lambda failed: getattr(failed, "code", None) == "context_length_exceeded",
        )
