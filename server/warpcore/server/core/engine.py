"""The data plane every front door drives: load, unload, list and generate, with admission limits, tracking for
shutdown, coalescing, timings and metrics measured where the work happens."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass

from warpcore.server.core.coalescing import coalesced
from warpcore.server.core.domain import (
    BackendKind,
    BackendSettings,
    Finish,
    FinishReason,
    GenerationParams,
    LoadSpec,
    ReasoningChunk,
    TextChunk,
    ToolCallDelta,
)
from warpcore.server.core.drain import ActiveStreams
from warpcore.server.core.embeddings import Embeddings, EmbedParams
from warpcore.server.core.limits import Limits
from warpcore.server.core.metrics import Metrics
from warpcore.server.core.policy import ApiOverridePolicy
from warpcore.server.core.registry import LoadedModel, ModelRegistry
from warpcore.server.core.tokens import TokenCount
from warpcore.server.core.validation import (
    check_embedding,
    check_generation,
    check_id,
    check_load,
    check_settings,
)

_log = logging.getLogger("warpcore.server")


@dataclass(frozen=True)
class GenerationResult:
    """How a generation ended, and its timings in seconds from the request."""

    finish: Finish
    time_to_first_token: float | None
    total: float


GenerationOutput = TextChunk | ReasoningChunk | ToolCallDelta | GenerationResult


class Engine:
    def __init__(
        self, registry: ModelRegistry, limits: Limits, metrics: Metrics, api_overrides: ApiOverridePolicy
    ) -> None:
        self.registry = registry
        self.limits = limits
        self.metrics = metrics
        self.streams = ActiveStreams()
        self._api_overrides = api_overrides

    async def load(self, spec: LoadSpec, *, from_operator: bool = False) -> LoadedModel:
        """Load a model; the operator's own models (the preload file) may name any API endpoint."""
        check_load(spec)
        if not from_operator:
            self._api_overrides.check(spec.settings)
        started = time.monotonic()
        loaded = await self.registry.load(spec)
        _log.info("loaded model %s (%s %s) in %.2fs", spec.model_id, spec.backend.value, spec.name, _since(started))
        return loaded

    async def unload(self, model_id: str) -> LoadedModel:
        unloaded = await self.registry.unload(check_id(model_id, "model_id"))
        self.limits.forget(unloaded.id)
        _log.info("unloaded model %s", unloaded.id)
        return unloaded

    def loaded(self, backend: BackendKind | None = None) -> list[LoadedModel]:
        return self.registry.loaded(backend)

    async def available(self, backend: BackendKind, settings: BackendSettings | None) -> Sequence[str]:
        """Models `backend` could load, asked of the backend with `settings` (or the server's environment)."""
        check_settings(settings, backend)
        self._api_overrides.check(settings)
        return await self.registry.available(backend, settings)

    async def generate(self, model_id: str, params: GenerationParams) -> AsyncGenerator[GenerationOutput, None]:
        """Deltas (text, reasoning, tool calls), then one GenerationResult; a failure after a delta ends with an
        ERROR result, then raises."""
        started = time.monotonic()
        check_id(model_id, "model_id")
        check_generation(params, self.limits.max_tokens)
        model = self.registry.get(model_id)
        stop = threading.Event()
        first_token_at: float | None = None

        def result(finish: Finish) -> GenerationResult:
            total = _since(started)
            if first_token_at is not None:
                self.metrics.observe_generation(
                    model.backend.value, model.id, first_token_at, total, finish.completion_tokens
                )
            return GenerationResult(finish, first_token_at, total)

        # One generator from the adapter's events to the front door: every layer costs each token a resumption.
        async with self._admitted(model, stop):
            events = coalesced(model.adapter.generate(params, stop))
            try:
                async for event in events:
                    if isinstance(event, Finish):
                        yield result(event)
                        return
                    if first_token_at is None:
                        first_token_at = _since(started)
                    yield event
            except asyncio.CancelledError:
                if not self.streams.ended_by_shutdown():
                    raise  # the caller went away: nobody to tell
            except Exception:
                if first_token_at is not None:
                    # Text was sent: close the stream with its result before the error says why.
                    yield result(Finish(FinishReason.ERROR))
                raise
            finally:
                await events.aclose()
            yield result(Finish(FinishReason.CANCELLED))

    async def embed(self, model_id: str, params: EmbedParams) -> Embeddings:
        """One vector per input, in input order; unit length unless `params.normalize` is off. Admitted through the
        model's gate like a generation: it takes the same cores."""
        check_id(model_id, "model_id")
        check_embedding(params)
        model = self.registry.get(model_id)
        async with self._admitted(model, threading.Event()):
            embeddings = await model.adapter.embed(params)
        if not params.normalize:
            return embeddings
        return dataclasses.replace(embeddings, vectors=tuple(_unit(vector) for vector in embeddings.vectors))

    async def count_tokens(self, model_id: str, params: GenerationParams, include_tokens: bool) -> TokenCount:
        """The exact prompt tokens `generate(model_id, params)` would use, computed by the backend that would."""
        check_id(model_id, "model_id")
        check_generation(params, self.limits.max_tokens)
        return await self.registry.get(model_id).adapter.count_tokens(params, include_tokens)

    @contextlib.asynccontextmanager
    async def _admitted(self, model: LoadedModel, stop: threading.Event) -> AsyncIterator[None]:
        """Counted as in flight, through the model's admission gate, and tracked for shutdown."""
        self.metrics.active_streams.inc()
        try:
            async with self.limits.gate(model.id, model.backend, model.info.parallel, model.spec.admission).slot():
                with self.streams.track(stop):
                    yield
        finally:
            self.metrics.active_streams.dec()


def _since(started: float) -> float:
    return time.monotonic() - started


def _unit(vector: tuple[float, ...]) -> tuple[float, ...]:
    """`vector` scaled to Euclidean length 1; a zero vector stays as it is."""
    length = math.sqrt(math.fsum(component * component for component in vector))
    return vector if length == 0 else tuple(component / length for component in vector)
