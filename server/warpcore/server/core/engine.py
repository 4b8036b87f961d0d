"""The data plane every front door drives: load, unload, list and generate, with admission limits, tracking for
shutdown, coalescing, timings and metrics measured where the work happens."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass

from warpcore.server.adapters.base import QueuesGenerations
from warpcore.server.core.access import record_cancelled
from warpcore.server.core.bounds import read_off_loop_when_large
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
    UpstreamOpened,
)
from warpcore.server.core.drain import ActiveStreams
from warpcore.server.core.embeddings import Embeddings, EmbedParams, check_dimensions, check_response_room, normalized
from warpcore.server.core.errors import DeadlinePassedError, PermissionDeniedError
from warpcore.server.core.limits import Limits, shutting_down
from warpcore.server.core.metrics import Metrics
from warpcore.server.core.model_ids import canonical_model_id
from warpcore.server.core.policy import ApiOverridePolicy
from warpcore.server.core.pulls import PulledFile, PullProgress, Pulls
from warpcore.server.core.registry import LoadedModel, ModelRegistry
from warpcore.server.core.residency import Dormant, Residency, ResidencyPolicy
from warpcore.server.core.settings_rules import check_settings
from warpcore.server.core.stalled import StalledReader
from warpcore.server.core.tokens import PromptUsage, TokenCount
from warpcore.server.core.validation import (
    check_embedding,
    check_generation,
    check_id,
    check_load,
    check_model_id,
    check_revision,
    checking_size,
)


@dataclass(frozen=True)
class GenerationResult:
    """How a generation ended, and its timings in seconds from the request."""

    finish: Finish
    time_to_first_token: float | None
    total: float


GenerationOutput = PromptUsage | TextChunk | ReasoningChunk | ToolCallDelta | GenerationResult


class Engine:
    def __init__(
        self,
        registry: ModelRegistry,
        limits: Limits,
        metrics: Metrics,
        api_overrides: ApiOverridePolicy,
        residency: ResidencyPolicy | None = None,
        pulls: Pulls | None = None,
    ) -> None:
        self.registry = registry
        self.limits = limits
        self.metrics = metrics
        self.streams = ActiveStreams()
        arriving = pulls.check_not_pulling if pulls is not None else lambda name: None
        self.residency = Residency(registry, limits, residency or ResidencyPolicy(), arriving)
        registry.loads.append(metrics.model_loaded)
        registry.freed.append(metrics.forget_model)
        metrics.unloads = self.residency.unloads
        self._api_overrides = api_overrides
        self._pulls = pulls

    async def load(self, spec: LoadSpec, *, from_operator: bool = False) -> LoadedModel:
        """Load a model; the operator's own models (the preload file) may name any API endpoint."""
        spec = check_load(spec)
        if not from_operator:
            self._api_overrides.check(spec.settings)
        with self.streams.track():
            if from_operator or not self.residency.knows(spec.model_id):  # a held id hides what it hides already
                await self.registry.refuse_hiding(spec)
            return await self.residency.load(spec, operator=from_operator)

    def declare(self, spec: LoadSpec, *, loads_at_start: bool = False) -> None:
        """Know an operator's model without loading it: the first Generate naming it loads it; or, `loads_at_start`,
        a Generate naming it waits for the load the start makes of it (`load` with `from_operator`), after the loads
        before it."""
        self.residency.declare(check_load(spec), loads_at_start=loads_at_start)

    async def unload(self, model_id: str) -> LoadedModel | LoadSpec:
        model_id = check_model_id(model_id)
        with self.streams.track():
            return await self.residency.unload(model_id)

    def loaded(self, backend: BackendKind | None = None) -> list[LoadedModel]:
        return self.registry.loaded(backend)

    def unloading(self, backend: BackendKind | None = None) -> list[LoadedModel]:
        """Models being unloaded for good (UnloadModel): their running generations finish, new ones are refused,
        they hold their memory. One leaving for idleness or room is dormant already: the next Generate loads it."""
        return [model for model in self.registry.unloading(backend) if model.id not in self.residency.dormant]

    def loading(self, backend: BackendKind | None = None) -> list[LoadSpec]:
        """Models being loaded (or waiting for room, or for their turn at start): a Generate naming one waits."""
        entries = {**self.residency.expected.loads, **self.residency.loading}
        return [entry.spec for entry in entries.values() if backend in (None, entry.spec.backend)]

    def servable(self) -> dict[str, LoadSpec]:
        """The models a call may name, by id: loaded, being loaded (the call waits for it) and dormant (the call
        loads it); not one UnloadModel is unloading, which calls are refused on."""
        specs = {model.id: model.spec for model in self.registry.loaded()}
        for spec in [*self.loading(), *(entry.spec for entry in self.dormant())]:
            specs.setdefault(spec.model_id, spec)
        return specs

    def refuse_queued(self) -> None:
        """The server is shutting down: calls still waiting, at a model's admission gate or for a slot of the
        model's own, or for a startup model whose load has not begun, will never run here; they are refused now, for
        their callers to retry on another replica."""
        self.limits.close()
        self.residency.expected.refuse(shutting_down)
        for model in self.registry.resident():
            if isinstance(model.adapter, QueuesGenerations):
                model.adapter.refuse_waiting(shutting_down)

    def dormant(self, backend: BackendKind | None = None) -> list[Dormant]:
        """Models known but not loaded, loaded by the first Generate naming them."""
        return [entry for entry in self.residency.dormant.values() if backend in (None, entry.spec.backend)]

    async def available(self, backend: BackendKind, settings: BackendSettings | None) -> Sequence[str]:
        """Models `backend` could load, asked of the backend with `settings` (or the server's environment)."""
        check_settings(settings, backend)
        self._api_overrides.check(settings)
        with self.streams.track():
            return await self.registry.available(backend, settings)

    async def pull(self, model: str, revision: str | None) -> AsyncGenerator[PullProgress | PulledFile, None]:
        """Download a model file onto this server's disk: progress, then the file. Writing to the disk is the
        operator's to allow (None pulls: not allowed), whatever the request: checked first, so that no refusal of a
        request's fields reads as though a right one could be pulled, and naming no field (a BadRequest would say to
        fix one)."""
        if self._pulls is None:
            raise PermissionDeniedError(
                "this server does not pull models: its operator allows it with --allow-pull (WARPCORE_ALLOW_PULL=1)",
                reason="PULL_DENIED",
            )
        model = canonical_model_id(check_id(model, "model"))  # two spellings of a file: one download
        if revision is not None:
            check_revision(revision)
        with self.streams.track():
            async for frame in self._pulls.pull(model, revision):
                yield frame

    async def _check(self, params: GenerationParams) -> None:
        """Check a generation's request; on a thread when it is large enough (many messages, long tool-call
        arguments to parse) that the event loop would stall meanwhile."""
        await read_off_loop_when_large(checking_size(params), check_generation, params, self.limits.max_tokens)

    async def generate(self, model_id: str, params: GenerationParams) -> AsyncGenerator[GenerationOutput, None]:
        """The prompt's usage when the backend knows it early, deltas (text, reasoning, tool calls), then one
        GenerationResult; a failure after a delta ends with an ERROR result, then raises."""
        started = time.monotonic()
        model_id = check_model_id(model_id)
        stop = threading.Event()
        first_token_at: float | None = None
        prompt: PromptUsage | None = None  # the prompt's usage, once the backend tells it early
        upstream_request_id = ""  # a hosted backend's, once its upstream answered
        answered = False  # a result is out: a caller that closes the stream now has had how it ended
        served: LoadedModel | None = None  # the model, once admitted: what its caller's prompt is counted against
        try:
            await self._check(params)
            # One generator from the adapter's events to the front door: every layer costs each token a resumption.
            async with self._admitted(model_id, stop) as model:
                served = model

                def result(finish: Finish) -> GenerationResult:
                    nonlocal answered
                    total, answered = _since(started), True
                    self.metrics.observe_generation(model, finish, first_token_at, total)
                    return GenerationResult(finish, first_token_at, total)

                events = coalesced(model.adapter.generate(params, stop))
                failed: Finish | None = None  # an adapter's ERROR finish, with what was used before the failure
                reader = StalledReader(self.limits.stalled_reader_timeout)
                try:
                    reader.start()
                    async for event in events:
                        if isinstance(event, Finish):
                            if event.failure is None:
                                yield result(event)
                                return
                            failed = event
                            break
                        if isinstance(event, UpstreamOpened):  # for the access log alone
                            upstream_request_id = event.request_id
                            continue
                        if first_token_at is None:  # a backend tells the prompt's usage before its first token
                            if type(event) is PromptUsage:  # the prompt's size is no token
                                prompt = event
                            else:
                                first_token_at = _since(started)
                        reader.given += 1
                        yield event
                        reader.taken += 1
                except asyncio.CancelledError:
                    if not self.streams.ended_by_shutdown():
                        raise  # the caller went away: nobody to tell
                except DeadlinePassedError as error:  # met before the backend's first event (a hosted upstream's)
                    failed = Finish(FinishReason.ERROR, failure=error)
                except Exception:
                    if first_token_at is not None:
                        # Text was sent: close the stream with its result before the error says why.
                        yield result(Finish(FinishReason.ERROR))
                    raise
                finally:
                    reader.stop()
                    await events.aclose()
                if failed is not None and (failure := failed.failure) is not None:
                    if isinstance(failure, DeadlinePassedError):  # the caller's end, as the door's own would be
                        failed = dataclasses.replace(failed, reason=FinishReason.CANCELLED)
                    if first_token_at is not None:
                        yield result(failed)
                    elif failed.reason is FinishReason.CANCELLED:  # no text, so no result: the line still tells it
                        record_cancelled(prompt, upstream_request_id)
                        self.metrics.count_prompt(model, prompt)
                    raise failure
                # Cut by the shutdown before the backend could end with its own counts: what it told of the prompt.
                told = prompt or PromptUsage(0)
                yield result(
                    Finish(
                        FinishReason.CANCELLED,
                        None if prompt is None else prompt.prompt_tokens,
                        cached_prompt_tokens=told.cached_prompt_tokens,
                        cache_creation_tokens=told.cache_creation_tokens,
                        upstream_request_id=upstream_request_id,
                    )
                )
        except (asyncio.CancelledError, GeneratorExit):
            # Its caller went or its deadline passed, wherever it was: queued, waiting for its model's load, running.
            if not answered and not self.streams.ended_by_shutdown():
                record_cancelled(prompt, upstream_request_id)
                self.metrics.count_prompt(served, prompt)
            raise

    async def embed(self, model_id: str, params: EmbedParams) -> Embeddings:
        """One vector per input, in input order; unit length unless `params.normalize` is off. Admitted through the
        model's gate like a generation: it takes the same cores."""
        model_id = check_model_id(model_id)
        check_embedding(params)
        async with self._admitted(model_id) as model:
            check_response_room(params, params.dimensions or model.info.embedding_dimensions)
            embeddings = await model.adapter.embed(params)
            self.metrics.count_embedding(model, embeddings.prompt_tokens)
        check_dimensions(params, embeddings)
        return normalized(embeddings) if params.normalize else embeddings

    async def count_tokens(self, model_id: str, params: GenerationParams, include_tokens: bool) -> TokenCount:
        """The exact prompt tokens `generate(model_id, params)` would use, computed by the backend that would."""
        model_id = check_model_id(model_id)
        await self._check(params)
        with self.streams.track():
            async with self.residency.using(model_id) as model:
                return await model.adapter.count_tokens(params, include_tokens)

    @contextlib.asynccontextmanager
    async def _admitted(self, model_id: str, stop: threading.Event | None = None) -> AsyncIterator[LoadedModel]:
        """Counted as in flight, the model held loaded (loaded first if dormant; counted waiting until it is ready),
        through its admission gate, and tracked for shutdown from the start (a wait for a load included), then with
        `stop`, a generation's flag."""
        self.metrics.active_streams.inc()
        try:
            with self.streams.track():
                async with self.residency.using(model_id, queued=True) as model:
                    gate = self.limits.gate(model.id, model.backend, model.info.parallel, model.spec.admission)
                    async with gate.slot():
                        # Once stopped, a local model's generation ends at its next decode step; a hosted one's only
                        # as its upstream sends, which may be never.
                        ends = stop is not None and not model.backend.hosted
                        with self.streams.track(stop, ends_when_stopped=ends):
                            yield model
        finally:
            self.metrics.active_streams.dec()


def _since(started: float) -> float:
    return time.monotonic() - started
