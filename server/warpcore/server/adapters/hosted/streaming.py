"""The one skeleton of a hosted adapter: check the listing on load; stream one request, read its events through the
provider's reader into the prompt's usage (when the provider gives it first) and text, reasoning and tool-call deltas,
end with one Finish listing the complete tool calls; map every SDK failure through the provider's error table."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from warpcore.server.adapters.hosted import scrub
from warpcore.server.adapters.hosted.config import ResolvedApi, request_timeout
from warpcore.server.adapters.hosted.connection_failures import closed_before_answering
from warpcore.server.adapters.hosted.delta_text import Delta, SurrogateMender
from warpcore.server.adapters.hosted.errors import (
    ErrorTable,
    UpstreamResponse,
    malformed_stream,
    map_sdk_errors,
    unfinished_stream,
)
from warpcore.server.adapters.hosted.listing import no_list_there
from warpcore.server.adapters.hosted.refusals import other_kind
from warpcore.server.adapters.hosted.stop_text import StopCut, StopSequenceReachedError
from warpcore.server.core.capabilities import Capabilities
from warpcore.server.core.domain import (
    Finish,
    FinishReason,
    GenerationEvent,
    GenerationParams,
    ModelInfo,
    ToolCallDelta,
    UpstreamOpened,
)
from warpcore.server.core.embeddings import Embeddings, EmbedParams
from warpcore.server.core.errors import FailedPreconditionError, NotFoundError, WarpcoreError
from warpcore.server.core.hops import via_header
from warpcore.server.core.tokens import PromptUsage, TokenCount
from warpcore.server.core.tool_calls import ToolCallAssembler
from warpcore.server.core.tooling import ToolCall

# What reading an event of the wrong shape raises: `get` on a JSON value that is no object, a missing key, a value
# of the wrong type, or an event that is no JSON at all (the SDK's decoding raises json.JSONDecodeError).
_MALFORMED = (AttributeError, KeyError, TypeError, ValueError)

NO_DELTAS: tuple[Delta, ...] = ()
OFFERED_IN_REFUSAL = 5
"""Model ids a refusal of an unknown model quotes of those the API offers."""
RESENDS = 1
"""Times a request is sent again when the upstream closed its connection before answering: nothing was answered, and
llama.cpp's server closes a kept-alive one after each stream while it announces keep-alive. Once: the pool drops an
idle connection as soon as its close is read, so only one closed in the moment of the send is met, and a peer that
drops every request unanswered (a proxy whose backend is down) gets each request twice, not more. The SDKs' own
retries are off (config.py): they would retry any failure."""


class SdkClient(Protocol):
    """What the skeleton uses of a vendor SDK's async client."""

    def post(self, *args: Any, **kwargs: Any) -> Any:
        """The SDK's low-level request: overloaded differently by each SDK, so typed only by what it returns."""

    async def close(self) -> None: ...


class UpstreamStream(Protocol):
    """A vendor SDK's AsyncStream: the events, the HTTP response they arrive in, and closing the connection."""

    @property
    def response(self) -> UpstreamResponse: ...

    def __aiter__(self) -> AsyncIterator[Any]: ...

    async def close(self) -> None: ...


class EventReader(ABC):
    """One generation's reading of a provider's events: the deltas each adds, the usage and the finish they report."""

    __slots__ = (
        "cache_creation_tokens",
        "cached_prompt_tokens",
        "completion_tokens",
        "context_window_exceeded",
        "finish",
        "prompt_tokens",
        "reasoning_tokens",
        "stop_sequence",
    )

    def __init__(self) -> None:
        self.finish: FinishReason | None = None
        """Set by the event that says the answer is complete; no delta counts after it."""
        self.prompt_tokens: int | None = None  # None, as the completion's, until the provider reports it
        self.completion_tokens: int | None = None
        self.cached_prompt_tokens = 0
        self.cache_creation_tokens = 0
        self.reasoning_tokens: int | None = None
        self.stop_sequence = ""
        """The stop sequence that ended the answer, when the provider says which."""
        self.context_window_exceeded = False  # the provider says its context window, not max_tokens, ended it

    @abstractmethod
    def deltas(self, event: Any) -> Sequence[Delta | PromptUsage]:
        """The deltas `event` adds (text, reasoning, tool-call pieces), in order, after the prompt's usage when
        `event` is the first to tell it; raises one of `_MALFORMED` for an event of the wrong shape."""


@dataclass(frozen=True)
class StreamEndpoint:
    """Where a provider streams a generation from, and how it is read."""

    path: str
    """Under the client's base URL."""
    stream_type: type[Any]
    """The SDK's AsyncStream of `object`: events arrive as decoded JSON, with no typed object built per token."""
    reader: type[EventReader]


class HostedAdapter(ABC):
    """One model of a hosted API through its vendor's SDK; a provider supplies its names, error table, endpoint,
    request mapping and model listing."""

    name: ClassVar[str]
    """The API as messages name it, e.g. "OpenAI"."""
    errors: ClassVar[ErrorTable]
    endpoint: ClassVar[StreamEndpoint]

    def __init__(self, api: ResolvedApi, client: SdkClient) -> None:
        self._api = api
        self._client = client
        self._model = ""
        self._embeds_only = False

    @abstractmethod
    def _request(self, params: GenerationParams) -> dict[str, Any]:
        """The body of the streaming request; refuses, before anything is sent, options the API cannot honour."""

    @abstractmethod
    async def _listed_models(self) -> Sequence[str]:
        """The ids of the models the API lists, as it gives them."""

    async def list_models(self) -> Sequence[str]:
        with no_list_there(self.name, self._api):  # ListModels' 404 and a load's check alike: a base URL to check
            return scrub.listed_model_ids(await self._listed_models(), self._api.api_key)

    @abstractmethod
    def _capabilities(self, model: str) -> Capabilities:
        """What `model` of this API can do, as a text or embedding model where the request says which
        (`self._api.embedding`), of a kind the API has (validation.py refused the others with the request)."""

    def _body(self, params: GenerationParams, messages: list[dict[str, Any]], **options: object) -> dict[str, Any]:
        """A streaming request for the loaded model, with the sampling fields both APIs share and the provider's
        `options`; a field left None is left out, so that the API applies its own default."""
        body = {
            "model": self._model,
            "messages": messages,
            "max_tokens": params.max_tokens,
            "stream": True,
            "temperature": params.temperature,
            "top_p": params.top_p,
            **options,
        }
        return {name: value for name, value in body.items() if value is not None}

    async def load(self, model: str, context_size: int | None) -> ModelInfo:
        capabilities = self._capabilities(model)
        offered = await self.list_models()
        if model not in offered and not self._api.unlisted:
            # A compatible server (llama.cpp's lists its file's path) may offer names nobody would guess.
            some = ", ".join(map(repr, offered[:OFFERED_IN_REFUSAL])) + (", ..." * (len(offered) > OFFERED_IN_REFUSAL))
            raise NotFoundError(
                f"the {self.name} API does not offer model {model!r} (it offers {some or 'none'});"
                f" ListModels of the {self._api.provider} backend lists the models it offers (a name it serves but"
                " does not list, such as a router's wildcard route, loads with backend_config.api.unlisted)",
                field="model",
                reason="UPSTREAM_MODEL_NOT_FOUND",
                metadata={"provider": self._api.provider},
            )
        # A Generate is refused only where the request said embedding; by the name alone, the API answers it.
        self._model, self._embeds_only = model, self._api.embedding is True
        return ModelInfo(context_size=context_size or 0, capabilities=capabilities)

    async def generate(self, params: GenerationParams, stop: threading.Event) -> AsyncGenerator[GenerationEvent, None]:
        if self._embeds_only:
            raise other_kind(embedding_model=True)
        body = self._request(params)
        endpoint = self.endpoint
        with map_sdk_errors(self.errors, self._api, params.timeout):
            stream = await self._open(body, request_timeout(self._api.timeout, params.timeout), self._headers(params))
        reader, mender, cut = endpoint.reader(), SurrogateMender(), StopCut(params.stop)
        calls = ToolCallAssembler(tool.name for tool in params.tools)
        deltas_of, mend, stopped = reader.deltas, cut.after(mender.mend), stop.is_set  # looked up once, not per event
        cancelled = False
        failure: WarpcoreError | None = None
        request_id = scrub.upstream_request_id(stream.response.headers, self._api.api_key)
        try:
            yield UpstreamOpened(request_id)
            with map_sdk_errors(self.errors, self._api, params.timeout):
                try:
                    async for event in stream:
                        if stopped():  # the server's shutdown, once its grace is over: end with what was counted
                            cancelled = True
                            break
                        for delta in mend(deltas_of(event)):
                            if type(delta) is ToolCallDelta:
                                calls.add(delta := scrub.scrubbed_call(delta, self._api.api_key))
                            yield delta
                except _MALFORMED as error:
                    raise malformed_stream(self._api, error) from error
                except StopSequenceReachedError as reached:  # the answer is complete: its stream closes below
                    reader.finish, reader.stop_sequence = FinishReason.STOP_SEQUENCE, reached.sequence
        except WarpcoreError as error:
            failure = error  # ended with the usage and request id read so far, then raised by the engine
        finally:
            await stream.close()  # on cancellation too: the upstream connection closes at once
        for delta in cut.rest(mender.unpaired()):
            if type(delta) is ToolCallDelta:
                if failure is not None:  # its call may be the one that failed as it began, which no door showed
                    continue
                calls.add(delta)
            yield delta
        if failure is None and not cancelled and reader.finish is None:
            failure = unfinished_stream(self._api, stream.response)
        finish: FinishReason = FinishReason.ERROR
        tool_calls: tuple[ToolCall, ...] = ()
        if failure is None:
            ended = FinishReason.CANCELLED if cancelled else reader.finish
            assert ended is not None  # a stream that ended without its finish is a failure, set above
            try:
                spent = (reader.completion_tokens or 0) >= params.max_tokens
                finish, tool_calls = calls.finish(ended, budget_spent=spent)
            except WarpcoreError as error:  # a call the upstream ended broken
                failure = error
            for delta in calls.unargued() if failure is None else ():
                yield delta
        if failure is not None:  # a failure found in the stream, as one the upstream answered with, says whose
            failure.metadata.setdefault("provider", self._api.provider)
            if request_id:
                failure.metadata.setdefault("upstream_request_id", request_id)
        yield Finish(
            finish,
            prompt_tokens=reader.prompt_tokens,
            completion_tokens=reader.completion_tokens,
            upstream_request_id=request_id,
            tool_calls=tool_calls,
            cached_prompt_tokens=reader.cached_prompt_tokens,
            cache_creation_tokens=reader.cache_creation_tokens,
            reasoning_tokens=reader.reasoning_tokens,
            stop_sequence=scrub.upstream_stop_sequence(reader.stop_sequence, params.stop, self._api.api_key),
            context_window_exceeded=reader.context_window_exceeded and finish is FinishReason.LENGTH,
            failure=scrub.scrubbed_failure(failure, self._api.api_key),
        )

    async def embed(self, params: EmbedParams) -> Embeddings:
        raise FailedPreconditionError(
            f"the {self.name} API has no embeddings; load an embedding model on the openai backend, or a GGUF on the"
            " llama_cpp backend with llama_cpp.embedding set",
            field="model_id",
            reason="EMBEDDINGS_UNSUPPORTED",
            metadata={"provider": self._api.provider},
        )

    async def count_tokens(self, params: GenerationParams, include_tokens: bool) -> TokenCount:
        raise FailedPreconditionError(
            f"the {self.name} API counts no Chat Completions prompt exactly; an estimate is not given as one",
            field="model_id",
            reason="TOKEN_COUNT_UNSUPPORTED",
            metadata={"provider": self._api.provider},
        )

    def _headers(self, params: GenerationParams) -> dict[str, str]:
        """Headers of one request beyond the client's own: the servers it came through, and a provider's own."""
        return via_header(params.hops)

    async def _open(self, body: dict[str, Any], time_limit: float, headers: dict[str, str]) -> UpstreamStream:
        """The upstream stream of one request; SDK failures propagate, to be mapped by the caller."""
        for _ in range(RESENDS):
            try:
                return await self._post(body, time_limit, headers)
            except self.errors.catches as error:
                if not closed_before_answering(error):
                    raise
        return await self._post(body, time_limit, headers)

    async def _post(self, body: dict[str, Any], time_limit: float, headers: dict[str, str]) -> UpstreamStream:
        stream: UpstreamStream = await self._client.post(
            self.endpoint.path,
            body=body,
            options={"timeout": time_limit, "headers": headers},
            cast_to=object,
            stream=True,
            stream_cls=self.endpoint.stream_type,
        )
        return stream

    async def close(self) -> None:
        await self._client.close()
