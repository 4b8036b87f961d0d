"""OpenAI backend: chat completions through the official SDK, against OpenAI or any compatible server."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

import openai

from warpcore.server.adapters.hosted import openai_extras
from warpcore.server.adapters.hosted.config import OPENAI, request_timeout, resolve_api
from warpcore.server.adapters.hosted.delta_text import Delta, count_field, reported_count, string_field
from warpcore.server.adapters.hosted.errors import ErrorTable, map_sdk_errors, upstream_error
from warpcore.server.adapters.hosted.listing import listed_id, unreadable_listing
from warpcore.server.adapters.hosted.openai_client import openai_client
from warpcore.server.adapters.hosted.refusals import other_kind, refused
from warpcore.server.adapters.hosted.scrub import upstream_host, upstream_request_id
from warpcore.server.adapters.hosted.streaming import (
    NO_DELTAS,
    EventReader,
    HostedAdapter,
    StreamEndpoint,
    UpstreamStream,
)
from warpcore.server.core.capabilities import Capabilities
from warpcore.server.core.content import TextPart
from warpcore.server.core.domain import (
    ApiSettings,
    BackendKind,
    ChatMessage,
    FinishReason,
    GenerationParams,
    ReasoningChunk,
    Role,
    TextChunk,
    ToolCallDelta,
)
from warpcore.server.core.embeddings import Embeddings, EmbedParams, vectors_flaw
from warpcore.server.core.errors import UPSTREAM_MALFORMED, DeadlineExceededError, UnavailableError
from warpcore.server.core.hops import via_header
from warpcore.server.core.tokens import TokenLogprob
from warpcore.server.core.tooling import ResponseFormatKind, ToolChoiceMode

OPENAI_HOST = "api.openai.com:443"  # as scrub.upstream_host names it

ERRORS = ErrorTable(
    sdk_errors=(openai.OpenAIError, ValueError),
    kinds={openai.APITimeoutError: DeadlineExceededError},
    status_error=openai.APIStatusError,
)
FINISH_REASONS = {
    "stop": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "tool_calls": FinishReason.TOOL_CALLS,
    "function_call": FinishReason.TOOL_CALLS,
    "content_filter": FinishReason.CONTENT_FILTER,
}


class _ChatChunks(EventReader):
    """The chunks of a streamed chat completion: text, reasoning (`reasoning_content`, which compatible servers such
    as vLLM and llama.cpp's send) and tool-call pieces in each choice's delta, the finish reason in a choice, and the
    usage in a last chunk of its own (asked for with stream_options.include_usage)."""

    __slots__ = ("_indexes", "_partial")

    def __init__(self) -> None:
        super().__init__()
        self._indexes: dict[object, int] = {}
        """The upstream's key of each call (its index, else its id) -> our index, in the order the calls began."""
        self._partial: tuple[TokenLogprob, ...] = ()  # of part of a character, sent with no text: they go with its end

    def deltas(self, event: Any) -> Sequence[Delta]:
        if usage := event.get("usage"):
            self._count(usage)
        out: list[Delta] = []
        for choice in event.get("choices") or ():
            delta = choice.get("delta") or {}
            if self.finish is None:  # nothing counts after the stop
                if reasoning := delta.get("reasoning_content"):
                    out.append(ReasoningChunk(string_field(reasoning)))
                logprobs = self._partial + openai_extras.token_logprobs(choice.get("logprobs"))
                if content := delta.get("content"):
                    out.append(TextChunk(string_field(content), logprobs))
                self._partial = () if content else logprobs
                if refusal := delta.get("refusal"):
                    out.append(TextChunk(string_field(refusal), refusal=True))
                for call in delta.get("tool_calls") or ():
                    out.append(self._call(call))
            if reason := choice.get("finish_reason"):
                if self._partial and self.finish is None:  # cut inside a character (max_tokens): its tokens still count
                    out.append(TextChunk("", self._partial))
                self.finish = FINISH_REASONS.get(reason, FinishReason.STOP)
        return out or NO_DELTAS

    def _call(self, call: Mapping[str, Any]) -> ToolCallDelta:
        """One piece of a call: its id and name only on its first piece, as some servers repeat them."""
        call_id = string_field(call.get("id") or "")
        key = call.get("index")
        if key is None:  # servers that leave the index out number calls by their ids
            key = call_id or next(reversed(self._indexes), 0)
        function = call.get("function") or {}
        arguments = string_field(function.get("arguments") or "")
        index = self._indexes.get(key)
        if index is not None:
            return ToolCallDelta(index, arguments=arguments)
        index = self._indexes[key] = len(self._indexes)
        return ToolCallDelta(index, id=call_id, name=string_field(function.get("name") or ""), arguments=arguments)

    def _count(self, usage: Mapping[str, Any]) -> None:
        self.prompt_tokens = reported_count(usage.get("prompt_tokens"))
        self.completion_tokens = reported_count(usage.get("completion_tokens"))
        self.cached_prompt_tokens = count_field((usage.get("prompt_tokens_details") or {}).get("cached_tokens"))
        self.reasoning_tokens = reported_count((usage.get("completion_tokens_details") or {}).get("reasoning_tokens"))


class OpenAIAdapter(HostedAdapter):
    """One model of an OpenAI-compatible chat completions API.

    The token limit goes as `max_tokens`, which every compatible server knows, until the API refuses it for the
    model (OpenAI's reasoning models want `max_completion_tokens`): that request is sent again at once with
    `max_completion_tokens`, and so are all later ones of this model."""

    name = "OpenAI"
    errors = ERRORS
    endpoint = StreamEndpoint("/chat/completions", openai.AsyncStream[object], _ChatChunks)
    _client: openai.AsyncOpenAI

    def __init__(self, settings: ApiSettings, env: Mapping[str, str] = os.environ) -> None:
        api = resolve_api(settings, env, OPENAI)
        super().__init__(api, openai_client(settings, api))
        self._completion_tokens_field = False
        """Whether this model wants `max_completion_tokens` rather than `max_tokens`."""

    def _request(self, params: GenerationParams) -> dict[str, Any]:
        openai_extras.check_request(params, openai_itself=upstream_host(self._api.base_url) == OPENAI_HOST)
        messages: list[dict[str, Any]] = [{"role": "system", "content": params.system}] if params.system else []
        if params.prompt is not None:
            messages.append({"role": "user", "content": params.prompt})
        messages += [_message(message) for message in params.messages]
        # The usage arrives in a last chunk of its own, and only when asked for.
        options: dict[str, Any] = {
            "top_k": params.top_k,
            "seed": params.seed,
            **params.penalties,
            "logit_bias": {str(token): bias for token, bias in params.logit_bias} or None,
            "stop": list(params.stop) or None,
            "stream_options": {"include_usage": True},
            "logprobs": params.logprobs or None,
            "top_logprobs": params.top_logprobs if params.logprobs else None,
            "reasoning_effort": params.reasoning.effort.value if params.reasoning and params.reasoning.effort else None,
            "verbosity": params.verbosity,
            "response_format": _response_format(params),
            **_tools(params),
        }
        body = self._body(params, messages, **options)
        return _with_completion_tokens(body) if self._completion_tokens_field else body

    async def _open(self, body: dict[str, Any], time_limit: float, headers: dict[str, str]) -> UpstreamStream:
        try:
            return await super()._open(body, time_limit, headers)
        except openai.BadRequestError as error:
            if not ("max_tokens" in body and error.param == "max_tokens" and "max_completion_tokens" in error.message):
                raise
        self._completion_tokens_field = True
        return await super()._open(_with_completion_tokens(body), time_limit, headers)

    def _capabilities(self, model: str) -> Capabilities:
        """OpenAI names its embedding models so (text-embedding-*), compatible servers as they please (a llama.cpp
        server its GGUF's name): a request that says which kind the model is wins over its name. Its chat models read
        images and documents, as do many compatible servers', and the model list does not tell which."""
        if BackendKind.OPENAI.embeds(model, self._api.embedding):
            return Capabilities(generate=False, embed=True)
        return Capabilities(images=True, logprobs=True, tools=True, documents=True)

    async def embed(self, params: EmbedParams) -> Embeddings:
        if self._api.embedding is False:  # a text model, as LoadModel's model_type said
            raise other_kind(embedding_model=False)
        if not params.normalize:
            raise refused("normalize", "the OpenAI API only returns unit-length vectors; leave normalize unset")
        if params.truncate:
            raise refused("truncate", "the OpenAI API refuses inputs that are too long and cannot truncate them")
        options = {"dimensions": params.dimensions} if params.dimensions is not None else {}
        with map_sdk_errors(ERRORS, self._api, params.timeout):
            raw = await self._client.embeddings.with_raw_response.create(
                model=self._model,
                input=list(params.inputs),
                timeout=request_timeout(self._api.timeout, params.timeout),
                extra_headers=via_header(params.hops),
                **options,  # type: ignore[arg-type]
            )
            response = raw.parse()
        data = sorted(response.data, key=lambda item: item.index)
        if [item.index for item in data] != list(range(len(params.inputs))):
            raise upstream_error(
                UnavailableError, self._api, "the embeddings do not match the inputs", reason=UPSTREAM_MALFORMED
            )
        vectors = tuple(tuple(item.embedding) for item in data)
        if flaw := vectors_flaw(vectors):
            raise upstream_error(UnavailableError, self._api, f"the embeddings hold {flaw}", reason=UPSTREAM_MALFORMED)
        usage = response.usage  # left out by some compatible servers, whose count is then unknown: 0
        try:
            prompt_tokens = count_field(None if usage is None else usage.prompt_tokens)
        except ValueError as error:
            what = f"the usage holds {error}"
            raise upstream_error(UnavailableError, self._api, what, reason=UPSTREAM_MALFORMED) from None
        return Embeddings(
            vectors,
            prompt_tokens=prompt_tokens,
            upstream_request_id=upstream_request_id(raw.headers, self._api.api_key),
        )

    async def _listed_models(self) -> Sequence[str]:
        with map_sdk_errors(ERRORS, self._api), unreadable_listing(self._api):
            return [listed_id(model) async for model in self._client.models.list()]


def _with_completion_tokens(body: dict[str, Any]) -> dict[str, Any]:
    renamed = {name: value for name, value in body.items() if name != "max_tokens"}
    return {**renamed, "max_completion_tokens": body["max_tokens"]}


def _message(message: ChatMessage) -> dict[str, Any]:
    """A turn as chat completions take it. The API has no error flag on tool results: the content says it; and it
    takes no reasoning back, which is left out."""
    if message.role is Role.TOOL:
        result = _marked_failed(message) if message.is_error else message
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": openai_extras.content(result)}
    if message.tool_calls:
        calls = [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
            for call in message.tool_calls
        ]
        return {"role": "assistant", "content": openai_extras.content(message) or None, "tool_calls": calls}
    return {"role": message.role.value, "content": openai_extras.content(message)}


def _marked_failed(result: ChatMessage) -> ChatMessage:
    """A failed tool's result, its first words saying so (the API has no error flag): its content, else its first
    text part, where a text of its own would stand apart from what it says."""
    first = result.parts[0] if result.parts else None
    if result.content or not isinstance(first, TextPart):
        return dataclasses.replace(result, content=f"Error: {result.content}")
    marked = dataclasses.replace(first, text=f"Error: {first.text}")
    return dataclasses.replace(result, parts=(marked, *result.parts[1:]))


def _tools(params: GenerationParams) -> dict[str, Any]:
    """The tools, the tool choice and parallel_tool_calls: sent only with tools, as the API refuses them without."""
    if not params.tools:
        return {}
    tools = [
        {
            "type": "function",
            "function": {
                "name": tool.name,
                # Only one given: OpenAI's API takes a function without, and "" is no description.
                **({"description": tool.description} if tool.description else {}),
                "parameters": dict(tool.parameters),
                # Only when asked: a compatible server that does not know the field is not sent it.
                **({"strict": True} if tool.strict else {}),
            },
        }
        for tool in params.tool_choice.sent(params.tools)
    ]
    choice = params.tool_choice
    named = {"type": "function", "function": {"name": choice.name}}
    return {
        "tools": tools,
        "tool_choice": named if choice.mode is ToolChoiceMode.NAMED else choice.mode.value,
        "parallel_tool_calls": None if params.parallel_tool_calls else False,
    }


def _response_format(params: GenerationParams) -> dict[str, Any] | None:
    response_format = params.response_format
    if response_format is None or response_format.kind is ResponseFormatKind.TEXT:
        return None
    if response_format.kind is ResponseFormatKind.JSON_OBJECT:
        return {"type": "json_object"}
    schema = {"name": response_format.name or "response", "schema": dict(response_format.schema or {})}
    return {"type": "json_schema", "json_schema": {**schema, "strict": response_format.strict}}
