"""OpenAI backend: chat completions through the official SDK, against OpenAI or any compatible server."""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping, Sequence
from typing import Any

import openai

from warpcore.server.adapters.hosted.config import ApiEnvironment, client_options, request_timeout, resolve_api
from warpcore.server.adapters.hosted.errors import ErrorTable, map_sdk_errors, upstream_error
from warpcore.server.adapters.hosted.scrub import scrub_request_id
from warpcore.server.adapters.hosted.streaming import EventReader, HostedAdapter, StreamEndpoint, refused
from warpcore.server.core.capabilities import Capabilities
from warpcore.server.core.content import TextPart
from warpcore.server.core.domain import ApiSettings, ChatMessage, FinishReason, GenerationParams
from warpcore.server.core.embeddings import Embeddings, EmbedParams
from warpcore.server.core.errors import DeadlineExceededError, UnavailableError
from warpcore.server.core.tokens import TokenLogprob, TopLogprob

ENVIRONMENT = ApiEnvironment(
    provider="openai",
    api_key="OPENAI_API_KEY",
    base_url="OPENAI_API_BASE",
    default_base_url="https://api.openai.com/v1",
    organization="OPENAI_ORGANIZATION",
)
MAX_STOP_SEQUENCES = 4  # the chat completions API's limit

ERRORS = ErrorTable(
    catches=(openai.OpenAIError, ValueError),
    kinds={openai.APITimeoutError: DeadlineExceededError},
    status_error=openai.APIStatusError,
    context_length=lambda failed: getattr(failed, "code", None) == "context_length_exceeded",
)
FINISH_REASONS = {"stop": FinishReason.STOP, "length": FinishReason.LENGTH}


class _ChatChunks(EventReader):
    """The chunks of a streamed chat completion: text in each choice's delta, the finish reason in a choice, and the
    usage in a last chunk of its own (asked for with stream_options.include_usage)."""

    __slots__ = ()

    def text(self, event: Any) -> str | None:
        if usage := event.get("usage"):
            self.prompt_tokens, self.completion_tokens = int(usage["prompt_tokens"]), int(usage["completion_tokens"])
        text = None
        for choice in event.get("choices") or ():
            content = (choice.get("delta") or {}).get("content")
            if content and self.finish is None:  # nothing counts after the stop
                if not isinstance(content, str):
                    raise TypeError("content that is not a string")
                text = content if text is None else text + content
                if scored := choice.get("logprobs"):
                    self.logprobs += [_token_logprob(token) for token in scored.get("content") or ()]
            if reason := choice.get("finish_reason"):
                self.finish = FINISH_REASONS.get(reason, FinishReason.STOP)
        return text


def _content(message: ChatMessage) -> str | list[dict[str, Any]]:
    """A message's text, or its content parts as the chat completions API takes them: images as image_url parts,
    bytes as data URLs."""
    if not message.parts:
        return message.content
    parts: list[dict[str, Any]] = [{"type": "text", "text": message.content}] if message.content else []
    for part in message.parts:
        if isinstance(part, TextPart):
            parts.append({"type": "text", "text": part.text})
        else:
            url = part.url or f"data:{part.media_type};base64,{base64.b64encode(part.data).decode()}"
            parts.append({"type": "image_url", "image_url": {"url": url}})
    return parts


def _token_logprob(scored: Any) -> TokenLogprob:
    """One entry of a choice's logprobs.content: the token's bytes (its text when the API gives none), its
    logprob and its top_logprobs."""
    top = tuple(TopLogprob(_token_bytes(other), float(other["logprob"])) for other in scored.get("top_logprobs") or ())
    return TokenLogprob(_token_bytes(scored), float(scored["logprob"]), top)


def _token_bytes(scored: Any) -> bytes:
    raw = scored.get("bytes")
    return bytes(raw) if raw is not None else str(scored["token"]).encode()


class OpenAIAdapter(HostedAdapter):
    """One model of an OpenAI-compatible chat completions API."""

    name = "OpenAI"
    errors = ERRORS
    endpoint = StreamEndpoint("/chat/completions", openai.AsyncStream[object], "x-request-id", _ChatChunks)
    _client: openai.AsyncOpenAI

    def __init__(self, settings: ApiSettings, env: Mapping[str, str] = os.environ) -> None:
        api = resolve_api(settings, env, ENVIRONMENT)
        client = openai.AsyncOpenAI(**client_options(api, openai.DefaultAioHttpClient), organization=api.organization)
        super().__init__(api, client)

    def _request(self, params: GenerationParams) -> dict[str, Any]:
        if params.top_k is not None:
            raise refused("top_k", "top_k is not supported by the OpenAI API; leave it unset")
        if len(params.stop) > MAX_STOP_SEQUENCES:
            raise refused("stop", f"the OpenAI API accepts at most {MAX_STOP_SEQUENCES} stop sequences")
        messages: list[dict[str, Any]] = [{"role": "system", "content": params.system}] if params.system else []
        if params.prompt is not None:
            messages.append({"role": "user", "content": params.prompt})
        messages += [{"role": message.role.value, "content": _content(message)} for message in params.messages]
        # The usage arrives in a last chunk of its own, and only when asked for.
        options = {
            "seed": params.seed,
            "stop": list(params.stop) or None,
            "stream_options": {"include_usage": True},
            "logprobs": params.logprobs or None,
            "top_logprobs": params.top_logprobs if params.logprobs else None,
        }
        return self._body(params, messages, **options)

    def _capabilities(self, model: str) -> Capabilities:
        """OpenAI names its embedding models so (text-embedding-*); its chat models read images, as do many of the
        compatible servers', and there is no telling which from the model list."""
        if "embedding" in model:
            return Capabilities(generate=False, embed=True)
        return Capabilities(images=True, logprobs=True)

    async def embed(self, params: EmbedParams) -> Embeddings:
        if not params.normalize:
            raise refused("normalize", "the OpenAI API only returns unit-length vectors; leave normalize unset")
        if params.truncate:
            raise refused("truncate", "the OpenAI API refuses inputs that are too long and cannot truncate them")
        options = {"dimensions": params.dimensions} if params.dimensions is not None else {}
        with map_sdk_errors(ERRORS, self._api):
            raw = await self._client.embeddings.with_raw_response.create(
                model=self._model,
                input=list(params.inputs),
                timeout=request_timeout(self._api.timeout, params.timeout),
                **options,  # type: ignore[arg-type]
            )
            response = raw.parse()
        data = sorted(response.data, key=lambda item: item.index)
        if [item.index for item in data] != list(range(len(params.inputs))):
            raise upstream_error(
                UnavailableError, self._api, "the embeddings do not match the inputs", reason="UPSTREAM_MALFORMED"
            )
        return Embeddings(
            tuple(tuple(item.embedding) for item in data),
            prompt_tokens=response.usage.prompt_tokens,
            upstream_request_id=scrub_request_id(raw.headers.get("x-request-id"), self._api.api_key),
        )

    async def list_models(self) -> Sequence[str]:
        with map_sdk_errors(ERRORS, self._api):
            return [model.id async for model in self._client.models.list()]
