"""llama.cpp backend: a GGUF model under MODELS_PATH, served in-process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import llama_cpp

from warpcore.server.adapters.llama.chat import ChatTemplate
from warpcore.server.adapters.llama.constraint import check_servable, output_constraint
from warpcore.server.adapters.llama.context import (
    PREFILL_PIECE,
    LoadedWeights,
    NativeContext,
    default_context_size,
    estimated_memory,
    return_freed_memory,
)
from warpcore.server.adapters.llama.embedding import EmbeddingContext, model_pooling
from warpcore.server.adapters.llama.invariance import splits_freely
from warpcore.server.adapters.llama.job import Flow, Job
from warpcore.server.adapters.llama.model_paths import MMPROJ_FIELD, ModelFile, list_model_ids, open_model_file
from warpcore.server.adapters.llama.native_log import route_native_log
from warpcore.server.adapters.llama.native_threads import on_passing_thread
from warpcore.server.adapters.llama.options import LlamaOptions
from warpcore.server.adapters.llama.prefill import PrefillCalls
from warpcore.server.adapters.llama.prefix_cache import PrefixCache
from warpcore.server.adapters.llama.prompt import PromptPreparer
from warpcore.server.adapters.llama.refusals import loaded_for_embeddings, unloadable, unloading
from warpcore.server.adapters.llama.scheduler import BatchScheduler
from warpcore.server.adapters.llama.tokenizer import PromptTokenizer
from warpcore.server.adapters.llama.vision import Projector
from warpcore.server.core.capabilities import Capabilities
from warpcore.server.core.domain import Finish, GenerationEvent, GenerationParams, LocalSettings, ModelInfo
from warpcore.server.core.embeddings import Embeddings, EmbedParams
from warpcore.server.core.errors import FailedPreconditionError, InvalidArgumentError, WarpcoreError
from warpcore.server.core.occupancy import PromptCacheStats
from warpcore.server.core.tokens import TokenCount

_log = logging.getLogger(__name__)


class LlamaCppAdapter:
    """Serves one GGUF model. Calls into llama.cpp run on one thread at a time, never two at once, because one
    llama.cpp object used from two threads aborts the process: the worker loads and releases, and in between the
    model's batching thread runs a BatchScheduler that decodes up to `parallel` generations together. With
    `parallel` 1 it serves them one at a time in arrival order, through the same code, so that the text of a request
    never depends on the model's `parallel` setting."""

    def __init__(self, settings: LocalSettings, env: Mapping[str, str] = os.environ) -> None:
        route_native_log()
        self._options = LlamaOptions.resolve(settings, env)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama-cpp")
        # Prompts are rendered and tokenized here, one at a time, never on the batching thread: a long prompt
        # takes a while to tokenize, and the running generations' next tokens must not wait for it.
        self._prompts = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama-cpp-prompt")
        self._preparer: PromptPreparer | None = None
        self._context_size = 0
        self._started = False
        self._closing = False
        self._vocabulary: llama_cpp.Llama | None = None
        self._scheduler: BatchScheduler | None = None
        self._embedder: EmbeddingContext | None = None
        self._projector: Projector | None = None

    async def load(self, model: str, context_size: int | None) -> ModelInfo:
        self._started = True
        # Built and kept on the worker, so a cancelled LoadModel leaves it for close() to release.
        info: ModelInfo = await self._on_worker(lambda: self._load_blocking(model, context_size))
        return info

    async def estimate_memory(self, model: str, context_size: int | None) -> int:
        def estimate() -> int | None:
            with self._files(model) as (file, _):
                return estimated_memory(file, context_size, self._options)

        estimate_bytes: int | None = await self._on_worker(estimate)
        if estimate_bytes is None:
            raise unloadable(model)
        return estimate_bytes

    @contextlib.contextmanager
    def _files(self, model: str) -> Iterator[tuple[ModelFile, ModelFile | None]]:
        """The model's file and its projector's, each one the server may read inside MODELS_PATH, open within: opened
        and closed by the worker's work that reads them, however it ends (model_paths.py says why they are open)."""
        with contextlib.ExitStack() as files:
            file = files.enter_context(open_model_file(model, self._options.models_path))
            mmproj = None
            if self._options.mmproj is not None:
                if self._options.embedding:
                    raise InvalidArgumentError(
                        "a model loaded for embeddings reads text only; load it without mmproj",
                        field=MMPROJ_FIELD,
                        reason="MULTIMODAL_UNSUPPORTED",
                    )
                mmproj = files.enter_context(
                    open_model_file(self._options.mmproj, self._options.models_path, MMPROJ_FIELD)
                )
            yield file, mmproj

    async def generate(self, params: GenerationParams, stop: threading.Event) -> AsyncGenerator[GenerationEvent, None]:
        preparer, scheduler = self._serving(params)
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[GenerationEvent | BaseException] = asyncio.Queue()
        flow = Flow()

        def emit(event: GenerationEvent | BaseException) -> None:
            flow.given += 1
            loop.call_soon_threadsafe(events.put_nowait, event)

        try:
            constraint = await output_constraint(params, scheduler.vocabulary_size)
            prompt = await loop.run_in_executor(self._prompts, preparer.prepare, params, self._context_size, stop)
            scheduler.submit(Job(params, prompt, emit, stop, constraint, flow))
            while True:
                event = await events.get()
                flow.taken += 1
                if isinstance(event, BaseException):
                    raise event
                yield event
                if isinstance(event, Finish):
                    return
        finally:
            # Reached on completion, on error and when the caller closes the stream (cancellation): the
            # scheduler drops the generation before its next step, and a queued one never starts.
            stop.set()
            scheduler.withdraw()

    async def embed(self, params: EmbedParams) -> Embeddings:
        if not self._options.embedding:
            raise FailedPreconditionError(
                "this model was loaded to generate text, so it cannot embed; load it again under another model_id"
                " with backend_config.local.llama_cpp.embedding set to true",
                field="model_id",
                reason="MODEL_NOT_LOADED_FOR_EMBEDDINGS",
            )
        embedder = self._embedder
        if self._closing or embedder is None:
            raise unloading()
        stop = threading.Event()
        try:
            embeddings: Embeddings = await self._on_worker(lambda: embedder.embed(params, stop))
        finally:
            stop.set()  # a cancelled call's work ends in its current batch; a finished one's is done already
        return embeddings

    async def count_tokens(self, params: GenerationParams, include_tokens: bool) -> TokenCount:
        preparer, scheduler = self._serving(params)
        await output_constraint(params, scheduler.vocabulary_size)  # refused as the generation would be
        count: TokenCount = await asyncio.get_running_loop().run_in_executor(
            self._prompts, preparer.count, params, self._context_size, include_tokens
        )
        return count

    def _serving(self, params: GenerationParams) -> tuple[PromptPreparer, BatchScheduler]:
        """What prepares and runs `params`, refusing a request this model cannot serve (generate and count_tokens
        take the same ones)."""
        if self._options.embedding:
            raise loaded_for_embeddings()
        check_servable(params)
        preparer, scheduler = self._preparer, self._scheduler
        if self._closing or preparer is None or scheduler is None:
            raise unloading()
        return preparer, scheduler

    def prompt_cache_stats(self) -> PromptCacheStats | None:
        if self._scheduler is None:
            return None
        cache = self._scheduler.cache
        return PromptCacheStats(cache.hits, cache.misses, cache.cells, cache.capacity) if cache else PromptCacheStats()

    def refuse_waiting(self, refusal: Callable[[], WarpcoreError]) -> None:
        if self._scheduler is not None:
            self._scheduler.refuse_waiting(refusal)

    async def list_models(self) -> Sequence[str]:
        return await asyncio.to_thread(list_model_ids, self._options.models_path)

    async def close(self) -> None:
        self._closing = True
        if self._scheduler is not None:
            self._scheduler.close()  # refuses new generations at once; those submitted finish first
        if self._started:
            # Queued behind a load still running, so that what it built is released too.
            await self._on_worker(self._release)
        self._worker.shutdown(wait=False)

    async def _on_worker(self, work: Callable[[], Any]) -> Any:
        """`work()` after what the worker was given before, on a thread that ends with it (native_threads.py)."""
        return await asyncio.get_running_loop().run_in_executor(self._worker, on_passing_thread, work)

    # Everything below runs on the worker.

    def _load_blocking(self, model: str, context_size: int | None) -> ModelInfo:
        with self._files(model) as (file, mmproj):
            return self._load_files(model, file, mmproj, context_size)

    def _load_files(self, model: str, file: ModelFile, mmproj: ModelFile | None, context_size: int | None) -> ModelInfo:
        options = self._options
        try:
            context_size = context_size or default_context_size(file)
            # Tokenizes and renders chat templates; the weights are the native context's.
            vocabulary = llama_cpp.Llama(
                model_path=str(file.path),
                vocab_only=True,
                n_ctx=context_size,
                numa=int(options.numa),
                verbose=False,
            )
        except ValueError as error:
            _log.warning("llama.cpp could not load %s: %s", model, error)
            raise unloadable(model) from None
        weights = LoadedWeights(file.path, options.gpu_layers, options.use_mmap, options.use_mlock)
        if options.embedding:
            try:
                pooling = model_pooling(vocabulary, options.pooling)
                self._embedder = EmbeddingContext(
                    weights, vocabulary, pooling=pooling, context_size=context_size, threads=options.threads
                )
            except BaseException:
                vocabulary.close()
                raise
            self._vocabulary = vocabulary
            return ModelInfo(
                context_size=context_size,
                memory_bytes=self._embedder.memory_bytes,
                capabilities=Capabilities(generate=False, embed=True),
                embedding_dimensions=self._embedder.dimensions,
            )
        try:
            cache_tokens = options.cached_prompt_tokens(context_size)
            native = NativeContext(
                weights,
                slots=options.parallel,
                context_size=context_size,
                threads=options.threads,
                batch_threads=options.threads,  # llama-cpp-python's default would be every CPU of the machine
            )
            try:
                if mmproj is not None:
                    # On the weights, not the vocabulary: llama.cpp checks the projector's width against theirs.
                    self._projector = Projector(
                        mmproj.path, native.model, threads=options.threads, use_gpu=options.gpu_layers != 0
                    )
                marker = self._projector.marker if self._projector is not None else None
                template = ChatTemplate(vocabulary, model, options.chat_format, marker)
                tokenizer = PromptTokenizer(vocabulary)
                preparer = PromptPreparer(template, tokenizer, self._projector, keeps_prompts=bool(cache_tokens))
                calls = PrefillCalls(free=splits_freely(native, context_size))
                cache = None
                if cache_tokens:
                    window = native.sliding_window
                    cache = PrefixCache(native, calls, capacity=cache_tokens, piece=PREFILL_PIECE, window=window)
                scheduler = BatchScheduler(native, vocabulary, calls, slots=options.parallel, cache=cache)
            except BaseException:
                self._free_projector()
                native.free()
                raise
        except BaseException:
            vocabulary.close()
            raise
        self._vocabulary, self._scheduler, self._preparer = vocabulary, scheduler, preparer
        self._context_size = context_size
        # Each slot keeps to the context asked for, whatever llama.cpp rounds the shared cache up to.
        return ModelInfo(
            context_size=context_size,
            parallel=options.parallel,
            memory_bytes=native.memory_bytes(cache_tokens),
            occupancy=scheduler.occupancy,
            capabilities=Capabilities(count_tokens=True, logprobs=True, tools=True, images=self._projector is not None),
        )

    def _release(self) -> None:
        # Prompts still being prepared use the vocabulary, and with images the projector and the native model's
        # vocabulary: they finish first; the closed scheduler then refuses them.
        self._prompts.shutdown(wait=True)
        if self._scheduler is not None:
            self._scheduler.close()
            self._scheduler.join()  # its generations finish, then it frees the native context
        self._scheduler = None
        if self._embedder is not None:
            self._embedder.free()
            self._embedder = None
        self._free_projector()  # after the generations it encoded images for; freeing it reads no model
        if self._vocabulary is not None:
            self._vocabulary.close()
            self._vocabulary = None
        return_freed_memory()

    def _free_projector(self) -> None:
        if self._projector is not None:
            self._projector.free()
            self._projector = None
