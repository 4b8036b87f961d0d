"""The seam every backend implements: load one model, stream generations, embed, count tokens, list models,
close."""

from __future__ import annotations

import threading
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Protocol, runtime_checkable

from warpcore.server.core.domain import GenerationEvent, GenerationParams, ModelInfo
from warpcore.server.core.embeddings import Embeddings, EmbedParams
from warpcore.server.core.errors import WarpcoreError
from warpcore.server.core.occupancy import PromptCacheStats
from warpcore.server.core.tokens import TokenCount


class Adapter(Protocol):
    """One backend, configured once, serving at most one loaded model.

    Adapters raise `warpcore.server.core.errors.WarpcoreError` subclasses and know nothing of gRPC.
    """

    async def load(self, model: str, context_size: int | None) -> ModelInfo:
        """Make `model` ready for `generate`."""
        ...

    def generate(self, params: GenerationParams, stop: threading.Event) -> AsyncGenerator[GenerationEvent, None]:
        """Stream text chunks, then exactly one `Finish`. Closing the iterator stops the work; so does `stop` (set by
        the server's shutdown), after which the generation ends soon with a CANCELLED `Finish` counting its usage."""
        ...

    async def embed(self, params: EmbedParams) -> Embeddings:
        """One vector per input, in input order, as the backend gives it (the engine normalizes); a model or backend
        that cannot embed raises FailedPreconditionError saying what to do instead."""
        ...

    async def count_tokens(self, params: GenerationParams, include_tokens: bool) -> TokenCount:
        """The prompt tokens `generate(params)` would use, exactly; FailedPreconditionError where the backend has no
        exact count."""
        ...

    async def list_models(self) -> Sequence[str]:
        """Names of the models this backend can load."""
        ...

    async def close(self) -> None:
        """Release the model and any connection; waits for running generations."""
        ...


@runtime_checkable
class CachesPrompts(Protocol):
    """An adapter that keeps a prompt cache of its own (llama.cpp); hosted APIs cache on the provider's side."""

    def prompt_cache_stats(self) -> PromptCacheStats | None:
        """None while no model that generates is loaded; all 0 for one whose cache is off, so that its series last
        from its load until its memory is freed, as every per-model series does."""
        ...


@runtime_checkable
class QueuesGenerations(Protocol):
    """An adapter whose generations may wait inside it for a slot of the model's own (llama.cpp's decode slots)."""

    def refuse_waiting(self, refusal: Callable[[], WarpcoreError]) -> None:
        """The server is shutting down, or the model is being unloaded: generations that have not started yet, and
        any submitted from now on, end at once with the error `refusal` makes, for their callers to retry."""
        ...


@runtime_checkable
class EstimatesMemory(Protocol):
    """An adapter that can tell what a model will hold in this process before loading it (llama.cpp); a hosted
    model holds nothing here."""

    async def estimate_memory(self, model: str, context_size: int | None) -> int:
        """The `ModelInfo.memory_bytes` that `load(model, context_size)` would report, near enough, without loading;
        raises what `load` would for a model whose files it cannot find, or that llama.cpp cannot read."""
        ...
