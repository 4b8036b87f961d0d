"""InferenceService over gRPC: each method translates its request, calls the engine, translates the answer."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import grpc

from warpcore.server.core.access import record_embedding, record_usage
from warpcore.server.core.bounds import SMALLEST_MESSAGE_BYTES, read_off_loop_when_large
from warpcore.server.core.domain import GenerationParams, LoadSpec
from warpcore.server.core.embeddings import response_too_large
from warpcore.server.core.engine import Engine, GenerationResult
from warpcore.server.core.errors import InvalidArgumentError, WarpcoreError
from warpcore.server.core.tokens import PromptUsage
from warpcore.server.rpc import tools_translate, translate, translate_extras, translate_models
from warpcore.server.rpc.delta_pieces import Delta, piece_chars, pieces
from warpcore.server.rpc.status import streaming_errors, unary_errors
from warpcore.v1 import embeddings_pb2 as epb
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc, models_pb2

Context = grpc.aio.ServicerContext[Any, Any]


class InferenceServicer(inference_pb2_grpc.InferenceServiceServicer):
    def __init__(self, engine: Engine, max_message_bytes: int) -> None:
        self._engine = engine
        self._max_message_bytes = max_message_bytes
        self._piece_chars = piece_chars(max_message_bytes)

    @unary_errors
    async def LoadModel(self, request: pb.LoadModelRequest, context: Context) -> pb.LoadModelResponse:
        loaded = await self._engine.load(translate.load_spec(request))
        return pb.LoadModelResponse(model=translate_models.model_message(loaded, self._engine.residency.report(loaded)))

    @unary_errors
    async def UnloadModel(self, request: pb.UnloadModelRequest, context: Context) -> pb.UnloadModelResponse:
        unloaded = await self._engine.unload(request.model_id)
        if isinstance(unloaded, LoadSpec):  # a dormant model, forgotten
            return pb.UnloadModelResponse(model=translate_models.dormant_model_message(unloaded, loads_on_demand=False))
        return pb.UnloadModelResponse(model=translate_models.model_message(unloaded))

    @unary_errors
    async def ListModels(self, request: pb.ListModelsRequest, context: Context) -> pb.ListModelsResponse:
        available: Sequence[str] = ()
        # backend_config without a backend asks none, and is left unread, as in the first release.
        if (backend := translate_models.listed_backend(request.backend)) is not None:
            available = await self._engine.available(backend, translate.backend_settings(request.backend_config))
        residency, unloading = self._engine.residency, pb.MODEL_STATE_UNLOADING
        models = [translate_models.model_message(m, residency.report(m)) for m in self._engine.loaded(backend)]
        models += [
            translate_models.model_message(m, residency.report(m), unloading) for m in self._engine.unloading(backend)
        ]
        models += [translate_models.loading_model_message(spec) for spec in self._engine.loading(backend)]
        # A model is listed once: a dormant one being loaded again is not also AVAILABLE, nor is a file loaded under
        # its own name listed again among the backend's.
        listed = {model.id for model in models}
        models += [
            translate_models.dormant_model_message(d.spec, d.context_size)
            for d in self._engine.dormant(backend)
            if d.spec.model_id not in listed
        ]
        listed |= {model.id for model in models}
        models += [
            translate_models.available_model_message(backend, name)
            for name in available
            if backend is not None and name not in listed
        ]
        return pb.ListModelsResponse(models=models)

    @streaming_errors
    async def Generate(
        self, request: pb.GenerateRequest, context: Context
    ) -> AsyncGenerator[pb.GenerateResponse, None]:
        params = await self._params(request, context)
        prompt: PromptUsage | None = None
        # Closed here, in the call's task, when grpc closes this stream (its client went while a frame was written):
        # the engine notes then how the generation ended, for the call's access-log line.
        async with contextlib.aclosing(self._engine.generate(request.model_id, params)) as outputs:
            async for output in outputs:
                if isinstance(output, PromptUsage):
                    prompt = output  # rides on the next frame: alone, it would be a frame of no kind clients know
                    continue
                rest: Sequence[Delta] = ()
                if isinstance(output, GenerationResult):
                    record_usage(output.finish)
                    frame = translate.result_frame(output)
                else:
                    first, *rest = pieces(output, self._piece_chars)
                    frame = tools_translate.delta_frame(first)
                if prompt is not None:
                    frame.prompt_usage.CopyFrom(translate.prompt_usage(prompt))
                    prompt = None
                yield frame
                for piece in rest:  # what one frame could not carry
                    yield tools_translate.delta_frame(piece)

    async def _params(self, request: pb.GenerateRequest, context: Context) -> GenerationParams:
        """The domain request of a call: on a thread when it holds many messages (half a million fit in 4 MiB), whose
        reading takes a good part of a second, during which the event loop would serve no other call."""
        translated = translate.generation_params
        size = len(request.messages) * SMALLEST_MESSAGE_BYTES  # its byte size would take the loop time to count
        default_max_tokens = self._engine.limits.default_max_tokens
        return await read_off_loop_when_large(size, translated, request, context.time_remaining(), default_max_tokens)

    @streaming_errors
    async def PullModel(
        self, request: models_pb2.PullModelRequest, context: Context
    ) -> AsyncGenerator[models_pb2.PullModelResponse, None]:
        # Closed here when grpc closes this stream: a download nobody else waits for stops at once.
        async with contextlib.aclosing(self._engine.pull(request.model, request.revision or None)) as frames:
            async for frame in frames:
                yield translate_models.pull_frame(frame)

    @unary_errors
    async def Embed(self, request: epb.EmbedRequest, context: Context) -> epb.EmbedResponse:
        params = translate_extras.embed_params(request, context.time_remaining(), self._max_message_bytes)
        embeddings = await self._engine.embed(request.model_id, params)
        record_embedding(embeddings)
        response = translate_extras.embed_response(embeddings)
        size, vectors = response.ByteSize(), response.embeddings
        if size > self._max_message_bytes:  # vectors whose length was not known before (an API's)
            raise response_too_large(len(vectors), len(vectors[0].values), size, self._max_message_bytes)
        return response

    @unary_errors
    async def CountTokens(self, request: pb.CountTokensRequest, context: Context) -> pb.CountTokensResponse:
        if not request.HasField("request"):
            raise InvalidArgumentError("request is required: the GenerateRequest to count", field="request")
        try:
            params = await self._params(request.request, context)
            count = await self._engine.count_tokens(request.request.model_id, params, request.include_tokens)
        except WarpcoreError as error:
            # The request's fields sit one level down, in `request`.
            if error.field is not None and error.field != "include_tokens":
                nested = f"request.{translate.field_path(error.field)}"
                error.message, error.field = error.message_naming(nested), nested
            raise
        return translate_extras.token_count_response(count)
