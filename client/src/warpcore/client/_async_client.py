"""AsyncClient: Client's methods over asyncio gRPC, with the same shared translation."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Unpack, overload

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from warpcore.client._channel import ClientOptions
from warpcore.client._client import Parsed, Response, _Settings
from warpcore.client._errors import error_from_rpc
from warpcore.client._extras import count_from, embed_from, embed_request
from warpcore.client._loop_channel import LoopChannel
from warpcore.client._models import KeepAliveLike, Model, ModelType, model_from
from warpcore.client._options import (
    NOT_GIVEN,
    BackendOptions,
    BaseGenerationOptions,
    GenerationOptions,
    ResponseFormatLike,
    ResponseModelClass,
)
from warpcore.client._protocol import (
    BackendLike,
    ConfigLike,
    MessageLike,
    generate_request,
    list_request,
    load_request,
    models_from,
)
from warpcore.client._pull import PullEvent, async_pull_events, pull_request
from warpcore.client._stream import AsyncStream
from warpcore.client._types import EmbedResponse, GenerateResponse, TokenCount
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:  # only the stubs' .pyi has it
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub


class AsyncClient(_Settings):
    """The asyncio twin of Client, with the same options and methods, each awaited but pull_model (an async iterator,
    as Client's is an iterator). It may be made outside any event loop, and used in one event loop after another (each
    asyncio.run, say), but not in two running at once."""

    def __init__(self, target: str | None = None, **options: Unpack[ClientOptions]) -> None:
        super().__init__(target, options)
        self._loop_channel = LoopChannel(self.settings)

    @property
    def stub(self) -> InferenceServiceAsyncStub:
        """The generated stub, for those who want protobufs; that of the running event loop, so taken in it."""
        return self._loop_channel.get().stub

    async def _unary(self, method: Callable[..., Awaitable[Response]], request: Any, timeout: float | None) -> Response:
        deadline = self.settings.deadline(timeout)
        try:
            return await method(request, **self._call_options(deadline))
        except grpc.RpcError as error:
            raise error_from_rpc(error, deadline) from None

    async def load_model(
        self,
        model: str,
        *,
        backend: BackendLike = "llama_cpp",
        model_id: str | None = None,
        context_size: int | None = None,
        keep_alive: KeepAliveLike | None = None,
        config: ConfigLike | None = None,
        model_type: ModelType | None = None,
        timeout: float | None = None,
        **backend_options: Unpack[BackendOptions],
    ) -> Model:
        """Load `model` (again: a loaded one gets the keep_alive given). keep_alive: how long a local model stays
        loaded once idle, see KeepAliveLike; None: the server's --keep-alive. A llama.cpp model is loaded to
        generate, or with embedding=True (and pooling=) to embed instead. A hosted model is a text or embedding
        model as its name says (OpenAI's text-embedding-*), unless model_type says which ("text_to_embedding" for
        an OpenAI-compatible server's embedding model named otherwise)."""
        request = load_request(model, backend, model_id, context_size, keep_alive, config, backend_options, model_type)
        return model_from((await self._unary(self.stub.LoadModel, request, timeout)).model)

    async def unload_model(self, model_id: str, *, timeout: float | None = None) -> Model:
        request = pb.UnloadModelRequest(model_id=model_id)
        return model_from((await self._unary(self.stub.UnloadModel, request, timeout)).model)

    async def list_models(
        self,
        backend: BackendLike | None = None,
        *,
        config: ConfigLike | None = None,
        timeout: float | None = None,
        **backend_options: Unpack[BackendOptions],
    ) -> list[Model]:
        request = list_request(backend, config, backend_options)
        return models_from((await self._unary(self.stub.ListModels, request, timeout)).models)

    @overload
    async def generate(
        self,
        model_id: str,
        *,
        prompt: str | None = ...,
        messages: Sequence[MessageLike] | None = ...,
        stream: Literal[False] = ...,
        timeout: float | None = ...,
        response_format: ResponseModelClass[Parsed] = ...,
        **options: Unpack[BaseGenerationOptions],
    ) -> GenerateResponse[Parsed | None]: ...
    @overload
    async def generate(
        self,
        model_id: str,
        *,
        prompt: str | None = ...,
        messages: Sequence[MessageLike] | None = ...,
        stream: Literal[True],
        timeout: float | None = ...,
        response_format: ResponseModelClass[Parsed] = ...,
        **options: Unpack[BaseGenerationOptions],
    ) -> AsyncStream[Parsed | None]: ...
    @overload
    async def generate(
        self,
        model_id: str,
        *,
        prompt: str | None = ...,
        messages: Sequence[MessageLike] | None = ...,
        stream: Literal[False] = ...,
        timeout: float | None = ...,
        response_format: ResponseFormatLike,
        **options: Unpack[BaseGenerationOptions],
    ) -> GenerateResponse[object]: ...
    @overload
    async def generate(
        self,
        model_id: str,
        *,
        prompt: str | None = ...,
        messages: Sequence[MessageLike] | None = ...,
        stream: Literal[True],
        timeout: float | None = ...,
        response_format: ResponseFormatLike,
        **options: Unpack[BaseGenerationOptions],
    ) -> AsyncStream[object]: ...
    async def generate(
        self,
        model_id: str,
        *,
        prompt: str | None = None,
        messages: Sequence[MessageLike] | None = None,
        stream: bool = False,
        timeout: float | None = None,
        response_format: Any = NOT_GIVEN,
        **options: Unpack[BaseGenerationOptions],
    ) -> GenerateResponse[Any] | AsyncStream[Any]:
        """Generate from a loaded model: the final response, or with stream=True an AsyncStream; `parsed` typed as
        Client.generate's."""
        request, parse = generate_request(model_id, prompt, messages, options, response_format)
        deadline = self.settings.deadline(timeout)
        call = self.stub.Generate(request, **self._call_options(deadline))
        self._loop_channel.track(call)
        started = AsyncStream(call, parse, deadline)
        return started if stream else await started.get_final_response()

    async def embed(
        self,
        model_id: str,
        inputs: str | Sequence[str],
        *,
        dimensions: int | None = None,
        normalize: bool | None = None,
        truncate: bool | None = None,
        timeout: float | None = None,
    ) -> EmbedResponse:
        """One vector per input text, in order, from a model that embeds: a hosted embedding model, or a llama.cpp
        one loaded with load_model(..., embedding=True). A model loaded to generate is a FailedPreconditionError
        (whose server message names the protocol's field, backend_config.local.llama_cpp.embedding: here it is
        embedding=True)."""
        request = embed_request(model_id, inputs, dimensions, normalize, truncate)
        return embed_from(await self._unary(self.stub.Embed, request, timeout))

    async def count_tokens(
        self,
        model_id: str,
        *,
        prompt: str | None = None,
        messages: Sequence[MessageLike] | None = None,
        include_tokens: bool = False,
        timeout: float | None = None,
        **options: Unpack[GenerationOptions],
    ) -> TokenCount:
        """The exact prompt tokens generate() would use with the same arguments (and the tokens, if asked)."""
        generate, _ = generate_request(model_id, prompt, messages, options)
        request = pb.CountTokensRequest(request=generate, include_tokens=include_tokens)
        return count_from(await self._unary(self.stub.CountTokens, request, timeout))

    def pull_model(
        self, model: str, *, revision: str | None = None, timeout: float | None = None
    ) -> AsyncIterator[PullEvent]:
        """Have the server download `model`: PullProgress events, then one PulledModel, as an async iterator (as
        Client.pull_model's is an iterator), read with `async for event in client.pull_model(...)`, not awaited."""
        deadline = self.settings.deadline(timeout)
        call = self.stub.PullModel(pull_request(model, revision), **self._call_options(deadline))
        self._loop_channel.track(call)
        return async_pull_events(call, deadline)

    async def health(self, service: str = "", *, timeout: float | None = None) -> str:
        """The server's grpc.health.v1 status, e.g. "SERVING"."""
        check = health_pb2_grpc.HealthStub(self._loop_channel.get().channel).Check
        response = await self._unary(check, health_pb2.HealthCheckRequest(service=service), timeout)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))

    async def close(self) -> None:
        """Close the channel, if a call made one; the client cannot be used afterwards."""
        await self._loop_channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
