"""Client: the blocking client; AsyncClient (_async_client.py) has the same methods over asyncio gRPC, and everything
else is shared."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Unpack, overload

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from warpcore.client._channel import ChannelSettings, ClientOptions, channel_settings, closed_error
from warpcore.client._errors import Deadline, error_from_rpc
from warpcore.client._extras import count_from, embed_from, embed_request
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
from warpcore.client._pull import PullEvent, pull_events, pull_request
from warpcore.client._stream import Stream
from warpcore.client._types import EmbedResponse, GenerateResponse, TokenCount
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

Response = TypeVar("Response")
if TYPE_CHECKING:  # a TypeVar default (PEP 696), as _types.ParsedT's
    from typing_extensions import TypeVar as DefaultedTypeVar

    # What generate() parses the answer into. None when no response_format solves it: then `parsed` is always None.
    Parsed = DefaultedTypeVar("Parsed", default=None)
else:
    Parsed = TypeVar("Parsed")


class _Settings:
    """What both clients hold: the resolved channel settings and the per-call arguments."""

    def __init__(self, target: str | None, options: ClientOptions) -> None:
        self.settings: ChannelSettings = channel_settings(target, options)

    @property
    def target(self) -> str:
        return self.settings.target

    def _call_options(self, deadline: Deadline | None) -> dict[str, Any]:
        return {
            "timeout": None if deadline is None else deadline.seconds,
            "metadata": self.settings.metadata,
        }


class Client(_Settings):
    """A blocking client. `target` defaults to $WARPCORE_TARGET, else 127.0.0.1:50051; it may be any gRPC
    target, e.g. "dns:///warpcore.default.svc:50051" or "ipv4:10.0.0.1:50051,10.0.0.2:50051". `token` defaults to
    $WARPCORE_TOKEN; token="" sends none."""

    def __init__(self, target: str | None = None, **options: Unpack[ClientOptions]) -> None:
        super().__init__(target, options)
        settings = self.settings
        if settings.credentials is not None:
            self._channel = grpc.secure_channel(settings.target, settings.credentials, options=settings.arguments)
        else:
            self._channel = grpc.insecure_channel(settings.target, options=settings.arguments)
        self._stub = inference_pb2_grpc.InferenceServiceStub(self._channel)
        # Made once, here: a stub made on a closed channel crashes the interpreter (SIGSEGV) when called.
        self._health_check = health_pb2_grpc.HealthStub(self._channel).Check
        self._closed = False

    @property
    def stub(self) -> inference_pb2_grpc.InferenceServiceStub:
        """The generated stub, for those who want protobufs."""
        if self._closed:
            raise closed_error("Client")
        return self._stub

    def _unary(self, method: Callable[..., Response], request: Any, timeout: float | None) -> Response:
        deadline = self.settings.deadline(timeout)
        try:
            return method(request, **self._call_options(deadline))
        except grpc.RpcError as error:
            raise error_from_rpc(error, deadline) from None

    def load_model(
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
        return model_from(self._unary(self.stub.LoadModel, request, timeout).model)

    def unload_model(self, model_id: str, *, timeout: float | None = None) -> Model:
        request = pb.UnloadModelRequest(model_id=model_id)
        return model_from(self._unary(self.stub.UnloadModel, request, timeout).model)

    def list_models(
        self,
        backend: BackendLike | None = None,
        *,
        config: ConfigLike | None = None,
        timeout: float | None = None,
        **backend_options: Unpack[BackendOptions],
    ) -> list[Model]:
        request = list_request(backend, config, backend_options)
        return models_from(self._unary(self.stub.ListModels, request, timeout).models)

    @overload
    def generate(
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
    def generate(
        self,
        model_id: str,
        *,
        prompt: str | None = ...,
        messages: Sequence[MessageLike] | None = ...,
        stream: Literal[True],
        timeout: float | None = ...,
        response_format: ResponseModelClass[Parsed] = ...,
        **options: Unpack[BaseGenerationOptions],
    ) -> Stream[Parsed | None]: ...
    @overload
    def generate(
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
    def generate(
        self,
        model_id: str,
        *,
        prompt: str | None = ...,
        messages: Sequence[MessageLike] | None = ...,
        stream: Literal[True],
        timeout: float | None = ...,
        response_format: ResponseFormatLike,
        **options: Unpack[BaseGenerationOptions],
    ) -> Stream[object]: ...
    def generate(
        self,
        model_id: str,
        *,
        prompt: str | None = None,
        messages: Sequence[MessageLike] | None = None,
        stream: bool = False,
        timeout: float | None = None,
        response_format: Any = NOT_GIVEN,
        **options: Unpack[BaseGenerationOptions],
    ) -> GenerateResponse[Any] | Stream[Any]:
        """Generate from a loaded model: the final response, or with stream=True a Stream to read as it comes. With a
        pydantic model class as response_format, the response's `parsed` is typed as an instance of it (or None); with
        another format, as object (the JSON value); without one, as None, which it always is."""
        request, parse = generate_request(model_id, prompt, messages, options, response_format)
        deadline = self.settings.deadline(timeout)
        started = Stream(self.stub.Generate(request, **self._call_options(deadline)), parse, deadline)
        return started if stream else started.get_final_response()

    def embed(
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
        return embed_from(self._unary(self.stub.Embed, request, timeout))

    def count_tokens(
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
        return count_from(self._unary(self.stub.CountTokens, request, timeout))

    def pull_model(
        self, model: str, *, revision: str | None = None, timeout: float | None = None
    ) -> Iterator[PullEvent]:
        """Have the server download `model` ("hf:owner/repo:file.gguf"): PullProgress events, then one PulledModel.
        Stopping the iteration early (close it, or leave the loop) cancels the pull."""
        deadline = self.settings.deadline(timeout)
        return pull_events(self.stub.PullModel(pull_request(model, revision), **self._call_options(deadline)), deadline)

    def health(self, service: str = "", *, timeout: float | None = None) -> str:
        """The server's grpc.health.v1 status, e.g. "SERVING"."""
        if self._closed:
            raise closed_error("Client")
        response = self._unary(self._health_check, health_pb2.HealthCheckRequest(service=service), timeout)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))

    def close(self) -> None:
        """Close the channel; the client cannot be used afterwards."""
        self._closed = True
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
