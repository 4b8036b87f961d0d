"""InferenceService over gRPC: validate, translate, delegate to the registry, stream back."""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import AsyncGenerator
from typing import Any

import grpc

from warpcore.server import translate
from warpcore.server.domain import Finish, FinishReason, GenerationEvent, GenerationParams, TextChunk
from warpcore.server.limits import Limits
from warpcore.server.policy import ApiOverridePolicy
from warpcore.server.registry import LoadedModel, ModelRegistry
from warpcore.server.status import streaming_errors, unary_errors
from warpcore.server.streams import ActiveStreams
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

_log = logging.getLogger(__name__)
Context = grpc.aio.ServicerContext[Any, Any]
JOIN_BACKLOG = 8
"""Deltas waiting to be written beyond which they are joined into one frame."""
READ_SLICE = 16
"""Deltas read ahead, while a frame is being written, between two looks at whether it is done."""


class InferenceServicer(inference_pb2_grpc.InferenceServiceServicer):
    def __init__(
        self, registry: ModelRegistry, limits: Limits, streams: ActiveStreams, api_overrides: ApiOverridePolicy
    ) -> None:
        self._registry = registry
        self._limits = limits
        self._streams = streams
        self._api_overrides = api_overrides

    @unary_errors
    async def LoadModel(self, request: pb.LoadModelRequest, context: Context) -> pb.LoadModelResponse:
        spec = translate.load_spec(request)
        self._api_overrides.check(spec.settings)
        started = time.monotonic()
        loaded = await self._registry.load(spec)
        _log.info(
            "loaded model %s (%s %s) in %.2fs", spec.model_id, spec.backend.value, spec.name, time.monotonic() - started
        )
        return pb.LoadModelResponse(model=translate.model_message(loaded))

    @unary_errors
    async def UnloadModel(self, request: pb.UnloadModelRequest, context: Context) -> pb.UnloadModelResponse:
        unloaded = await self._registry.unload(translate.model_id(request.model_id))
        self._limits.forget(unloaded.id)
        _log.info("unloaded model %s", unloaded.id)
        return pb.UnloadModelResponse(model=translate.model_message(unloaded))

    @unary_errors
    async def ListModels(self, request: pb.ListModelsRequest, context: Context) -> pb.ListModelsResponse:
        if request.backend == pb.BACKEND_TYPE_UNSPECIFIED:
            return pb.ListModelsResponse(models=[translate.model_message(m) for m in self._registry.loaded()])
        backend = translate.backend_kind(request.backend)
        loaded = self._registry.loaded(backend)
        settings = translate.backend_settings(request.backend_config)
        self._api_overrides.check(settings)
        available = await self._registry.available(backend, settings)
        return pb.ListModelsResponse(
            models=[translate.model_message(m) for m in loaded]
            + [translate.available_model_message(backend, name) for name in available]
        )

    @streaming_errors
    async def Generate(
        self, request: pb.GenerateRequest, context: Context
    ) -> AsyncGenerator[pb.GenerateResponse, None]:
        started = time.monotonic()
        params = translate.generation_params(request, context.time_remaining(), self._limits.max_tokens)
        model = self._registry.get(request.model_id)
        async with self._limits.gate(model.id, model.backend, model.info.parallel, model.spec.admission).slot():
            stop = threading.Event()
            with self._streams.track(stop):
                async for frame in self._frames(model, params, stop, started):
                    yield frame

    async def _frames(
        self, model: LoadedModel, params: GenerationParams, stop: threading.Event, started: float
    ) -> AsyncGenerator[pb.GenerateResponse, None]:
        first_token_at: float | None = None

        def result(finish: Finish) -> pb.GenerateResponse:
            return translate.result_frame(finish, first_token_at, time.monotonic() - started)

        events = coalesced(model.adapter.generate(params, stop))
        try:
            async for event in events:
                if isinstance(event, Finish):
                    yield result(event)
                    return
                if first_token_at is None:
                    first_token_at = time.monotonic() - started
                yield pb.GenerateResponse(delta=pb.TextDelta(text=event.text))
        except asyncio.CancelledError:
            if not self._streams.ended_by_shutdown():
                raise  # the client went away: nobody to tell
        except Exception:
            if first_token_at is not None:
                # Text was sent: close the stream with its result frame before the status says why.
                yield result(Finish(FinishReason.ERROR))
            raise
        finally:
            await events.aclose()
        yield result(Finish(FinishReason.CANCELLED))


async def coalesced(events: AsyncGenerator[GenerationEvent, None]) -> AsyncGenerator[GenerationEvent, None]:
    """`events`, read ahead by a task while the caller writes the previous one. Deltas go out one per frame, as
    the backend cut them, while the writer keeps up; once more than JOIN_BACKLOG wait, they all go joined in one
    frame, so that a fast upstream costs one gRPC message per write rather than one per token.

    Text that finds the writer idle goes out at once (the first always does); order is kept, and the `Finish`
    or the failure comes after the last text. Closing this generator stops the reading and closes `events`.
    """
    texts: collections.deque[str] = collections.deque()
    ending: list[Finish | Exception] = []
    ready = asyncio.Event()
    waiting = finished = False

    async def read_ahead() -> None:
        nonlocal finished
        try:
            async for event in events:
                if isinstance(event, Finish):
                    ending.append(event)
                    continue
                texts.append(event.text)
                if waiting:  # the writer is idle: it takes this text now, before the buffered events are read
                    ready.set()
                    await asyncio.sleep(0)
                elif len(texts) % READ_SLICE == 0:
                    # Reading an upstream whose bytes are already buffered never yields to the loop: let it see
                    # whether the frame being written is done, so that the text read meanwhile goes out.
                    await asyncio.sleep(0)
        except Exception as error:  # noqa: BLE001 - handed to the writer, which raises it after the text before it
            ending.append(error)
        finally:
            finished = True
            ready.set()

    reader = asyncio.ensure_future(read_ahead())
    try:
        while True:
            if not texts and not finished:
                waiting = True
                ready.clear()
                await ready.wait()
                waiting = False
            if len(texts) > JOIN_BACKLOG:
                text = "".join(texts)
                texts.clear()
                yield TextChunk(text)
            elif texts:
                yield TextChunk(texts.popleft())
            elif finished:
                break
        for end in ending:
            if isinstance(end, Exception):
                raise end
            yield end
    finally:
        if not reader.done():
            reader.cancel()
            await asyncio.wait([reader])
        await events.aclose()
