"""llama.cpp backend: GGUF files under MODELS_PATH, run in-process on one worker thread per model."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import random
import threading
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import llama_cpp
from llama_cpp import llama_chat_format, llama_types

from warpcore.server.adapters.env import env_bool, env_int, env_str
from warpcore.server.adapters.llama_batch import BatchScheduler, Job, LoadedWeights
from warpcore.server.adapters.llama_text import Emit, PreparedPrompt, TokenText
from warpcore.server.adapters.llama_tokenize import PromptTokenizer
from warpcore.server.adapters.model_paths import list_model_ids, resolve_model_path
from warpcore.server.domain import (
    ChatMessage,
    Finish,
    FinishReason,
    GenerationEvent,
    GenerationParams,
    LocalSettings,
    ModelInfo,
    NumaStrategy,
    Role,
)
from warpcore.server.errors import FailedPreconditionError, InvalidArgumentError, UnavailableError

_log = logging.getLogger(__name__)
DEFAULT_CONTEXT_SIZE = 4096  # tokens, when the request names none and the model was trained on more
# Sampling defaults of llama-cpp-python's create_completion, used when an option is unset.
# No vocabulary piece is longer than this (Gemma's longest is 48 bytes), so a prompt of more bytes than
# context x this cannot fit, whatever its tokens.
MAX_BYTES_PER_TOKEN = 64
DEFAULT_TEMPERATURE = 0.8
DEFAULT_TOP_P = 0.95
DEFAULT_TOP_K = 40
MAX_PARALLEL = 64

# Chat formats of llama-cpp-python that can be chosen by name.
CHAT_FORMATTERS: dict[str, llama_chat_format.ChatFormatter] = {
    "alpaca": llama_chat_format.format_alpaca,
    "chatml": llama_chat_format.format_chatml,
    "gemma": llama_chat_format.format_gemma,
    "llama-2": llama_chat_format.format_llama2,
    "llama-3": llama_chat_format.format_llama3,
    "mistral-instruct": llama_chat_format.format_mistral_instruct,
    "zephyr": llama_chat_format.format_zephyr,
}
# Formats whose template has no system turn: the system text opens the first user turn instead.
_FORMATS_WITHOUT_SYSTEM = {"gemma"}

# llama.cpp's own log lines go through Python logging (and so into JSON logs), not straight to stderr.
_native_log = logging.getLogger("llama.cpp")
_GGML_LEVELS = {1: logging.DEBUG, 2: logging.DEBUG, 3: logging.WARNING, 4: logging.ERROR}  # ggml_log_level
_last_native_level = logging.DEBUG


def _route_native_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    global _last_native_level
    if level in _GGML_LEVELS:  # 5 continues the previous line, at its level
        _last_native_level = _GGML_LEVELS[level]
    message = text.decode("utf-8", errors="replace").rstrip()
    if message and _native_log.isEnabledFor(_last_native_level):
        _native_log.log(_last_native_level, "%s", message)


_native_log_callback = llama_cpp.llama_log_callback(_route_native_log)  # kept referenced: llama.cpp holds it
llama_cpp.llama_log_set(_native_log_callback, ctypes.c_void_p(0))


@dataclass(frozen=True)
class LlamaOptions:
    """Local settings after falling back to the environment (LLAMA_* variables) and defaults."""

    models_path: str | None
    threads: int | None
    gpu_layers: int
    use_mmap: bool
    use_mlock: bool
    numa: NumaStrategy
    chat_format: str | None
    parallel: int

    @classmethod
    def resolve(cls, settings: LocalSettings, env: Mapping[str, str]) -> LlamaOptions:
        # The environment is only read for fields the request leaves unset.
        def pick(value: Any, from_env: Callable[[], Any], default: Any) -> Any:
            if value is not None:
                return value
            fallback = from_env()
            return default if fallback is None else fallback

        use_gpu = pick(settings.use_gpu, lambda: env_bool(env, "LLAMA_USE_GPU"), False)
        chat_format = pick(settings.chat_format, lambda: env_str(env, "LLAMA_CHAT_FORMAT"), None)
        if settings.chat_format is None and chat_format is not None and chat_format not in CHAT_FORMATTERS:
            raise FailedPreconditionError(
                f"LLAMA_CHAT_FORMAT must be one of {', '.join(sorted(CHAT_FORMATTERS))}", reason="BAD_ENVIRONMENT"
            )
        parallel = pick(settings.parallel, lambda: env_int(env, "LLAMA_PARALLEL"), 1)
        if not 1 <= parallel <= MAX_PARALLEL:
            raise FailedPreconditionError(
                f"parallel (LLAMA_PARALLEL) must be between 1 and {MAX_PARALLEL}", reason="BAD_ENVIRONMENT"
            )
        return cls(
            models_path=env_str(env, "MODELS_PATH"),
            threads=pick(settings.threads, lambda: env_int(env, "LLAMA_THREADS"), None),
            gpu_layers=pick(settings.gpu_layers, lambda: env_int(env, "LLAMA_GPU_LAYERS"), -1) if use_gpu else 0,
            use_mmap=pick(settings.use_mmap, lambda: env_bool(env, "LLAMA_USE_MMAP"), True),
            use_mlock=pick(settings.use_mlock, lambda: env_bool(env, "LLAMA_USE_MLOCK"), False),
            numa=pick(settings.numa, lambda: _numa_from_env(env), NumaStrategy.DISABLED),
            chat_format=chat_format,
            parallel=parallel,
        )


def _numa_from_env(env: Mapping[str, str]) -> NumaStrategy | None:
    name = env_str(env, "LLAMA_NUMA_STRATEGY")
    if name is None:
        return None
    if name.upper() not in NumaStrategy.__members__:
        raise FailedPreconditionError(
            f"LLAMA_NUMA_STRATEGY must be one of {', '.join(NumaStrategy.__members__).lower()}",
            reason="BAD_ENVIRONMENT",
        )
    return NumaStrategy[name.upper()]


class LlamaCppAdapter:
    """Serves one GGUF model. Every call into llama.cpp runs on the model's single worker thread,
    because one `Llama` object used from two threads aborts the process. With `parallel` 1 the worker's
    queue serializes generations in arrival order; above 1 the worker runs a BatchScheduler that decodes
    up to `parallel` generations together."""

    def __init__(self, settings: LocalSettings, env: Mapping[str, str] = os.environ) -> None:
        self._options = LlamaOptions.resolve(settings, env)
        if settings.chat_format is not None and settings.chat_format not in CHAT_FORMATTERS:
            raise InvalidArgumentError(
                f"unknown chat_format {settings.chat_format!r}; known: {', '.join(sorted(CHAT_FORMATTERS))}",
                field="backend_config.local.llama_cpp.chat_format",
            )
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama-cpp")
        self._started = False
        self._closing = False
        self._llama: llama_cpp.Llama | None = None
        self._scheduler: BatchScheduler | None = None
        self._tokenizer: PromptTokenizer | None = None
        self._format_chat: llama_chat_format.ChatFormatter | None = None
        self._fold_system = False

    async def load(self, model: str, context_size: int | None) -> ModelInfo:
        path = resolve_model_path(model, self._options.models_path)
        self._started = True
        # Built and kept on the worker, so a cancelled LoadModel leaves it for close() to release.
        info: ModelInfo = await self._on_worker(lambda: self._load_blocking(model, path, context_size))
        return info

    def _chat_formatter(self, llama: llama_cpp.Llama) -> llama_chat_format.ChatFormatter:
        name = self._options.chat_format
        template = llama.metadata.get("tokenizer.chat_template")
        if name is None and template:
            return llama_chat_format.Jinja2ChatFormatter(
                template=template,
                eos_token=_token_text(llama, llama.token_eos()),
                bos_token=_token_text(llama, llama.token_bos()),
            )
        if name is None:
            architecture = llama.metadata.get("general.architecture", "")
            name = "gemma" if architecture.startswith("gemma") else "llama-2"
        self._fold_system = name in _FORMATS_WITHOUT_SYSTEM
        return CHAT_FORMATTERS[name]

    async def generate(self, params: GenerationParams) -> AsyncGenerator[GenerationEvent, None]:
        if self._closing:
            raise UnavailableError("the model is being unloaded", reason="MODEL_UNLOADING")
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[GenerationEvent | BaseException] = asyncio.Queue()
        stop = threading.Event()

        def emit(event: GenerationEvent | BaseException) -> None:
            loop.call_soon_threadsafe(events.put_nowait, event)

        if self._scheduler is not None:
            self._scheduler.submit(Job(params, emit, stop))
            job = None
        else:
            job = loop.run_in_executor(self._worker, self._generate_blocking, params, emit, stop)
        try:
            while True:
                event = await events.get()
                if isinstance(event, BaseException):
                    raise event
                yield event
                if isinstance(event, Finish):
                    return
        finally:
            # Reached on completion, on error and when the caller closes the stream (cancellation):
            # the worker sees the flag before its next token, and a queued job never starts.
            stop.set()
            if job is not None:
                job.cancel()

    async def list_models(self) -> Sequence[str]:
        return await asyncio.to_thread(list_model_ids, self._options.models_path)

    async def close(self) -> None:
        self._closing = True
        if self._scheduler is not None:
            self._scheduler.close()  # its loop ends on the worker once its generations have finished
        if self._started:
            # Queued behind the generations already submitted, which therefore finish first.
            await self._on_worker(self._release)
        self._worker.shutdown(wait=False)

    async def _on_worker(self, work: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._worker, work)

    # Everything below runs on the worker thread.

    def _load_blocking(self, model: str, path: Path, context_size: int | None) -> ModelInfo:
        options = self._options
        batched = options.parallel > 1
        try:
            context_size = context_size or _default_context_size(path)
            llama = llama_cpp.Llama(
                model_path=str(path),
                # Batched, the scheduler loads the weights itself; this object only tokenizes and renders.
                vocab_only=batched,
                n_ctx=context_size,
                n_gpu_layers=options.gpu_layers,
                use_mmap=options.use_mmap,
                use_mlock=options.use_mlock,
                numa=int(options.numa),
                verbose=False,
                n_threads=options.threads,  # None: llama-cpp-python's default
            )
        except ValueError as error:
            _log.warning("llama.cpp could not load %s: %s", path, error)
            raise FailedPreconditionError(
                f"llama.cpp could not load {model!r}: it is not a GGUF model this server can run (details in the"
                " server log)",
                reason="MODEL_LOAD_FAILED",
            ) from None
        try:
            self._format_chat = self._chat_formatter(llama)
        except jinja2.TemplateError as error:
            llama.close()
            raise FailedPreconditionError(
                f"the chat template in {model!r} cannot be used ({error}); name a chat format in"
                " backend_config.local.llama_cpp.chat_format instead",
                reason="MODEL_LOAD_FAILED",
            ) from None
        self._tokenizer = PromptTokenizer(llama)
        if batched:
            try:
                self._scheduler = BatchScheduler(
                    llama,
                    LoadedWeights(path, options.gpu_layers, options.use_mmap, options.use_mlock),
                    slots=options.parallel,
                    context_size=context_size,
                    prepare=self._prepare,
                    sampling=_sampling_options,
                )
            except BaseException:
                llama.close()
                raise
            # Occupies the worker until close(); queued behind this load, so it starts right after.
            self._worker.submit(self._scheduler.run).add_done_callback(_log_scheduler_failure)
        self._llama = llama
        # llama.cpp rounds a context up (to 256 tokens); batched, each slot keeps to the size asked for.
        return ModelInfo(context_size=context_size if batched else llama.n_ctx(), parallel=options.parallel)

    def _release(self) -> None:
        self._scheduler = None  # its run() has returned and freed its context: this job was queued behind it
        if self._llama is not None:
            self._llama.close()
            self._llama = None

    def _generate_blocking(self, params: GenerationParams, emit: Emit, stop: threading.Event) -> None:
        try:
            if stop.is_set():
                return
            emit(self._decode(params, emit, stop))
        except BaseException as error:  # noqa: BLE001 - handed to the event loop, which raises it
            emit(error)

    def _decode(self, params: GenerationParams, emit: Emit, stop: threading.Event) -> Finish:
        llama = self._llama
        if llama is None:
            raise UnavailableError("the model is unloading", reason="MODEL_UNLOADING")
        prompt = self._prepare(params, llama.n_ctx(), stop)
        if params.seed is not None:
            llama.reset()  # type: ignore[no-untyped-call]  # a prompt-prefix cache hit would change seeded sampling
        llama.set_seed(params.seed if params.seed is not None else random.getrandbits(31))
        temperature, top_p, top_k = _sampling_options(params)
        text = TokenText(llama, prompt, emit)
        tokens_out = llama.generate(prompt.tokens, temp=temperature, top_p=top_p, top_k=top_k)
        reason: FinishReason | None = None
        try:
            while reason is None:
                reason = FinishReason.CANCELLED if stop.is_set() else text.feed(next(tokens_out))
        finally:
            tokens_out.close()
        return text.finish(reason)

    def _prepare(self, params: GenerationParams, context_size: int, stop: threading.Event) -> PreparedPrompt:
        """Render and tokenize the prompt, refusing one that leaves no room in a `context_size` context.
        When `stop` is set meanwhile, the tokens may be cut short: the caller then drops the generation."""
        assert self._tokenizer is not None
        prompt, add_bos, template_stops = self._render(params)
        encoded = prompt.encode("utf-8")
        field = "messages" if params.messages else "prompt"
        if len(encoded) > context_size * MAX_BYTES_PER_TOKEN:
            # Refused before tokenizing: whatever its tokens, it cannot fit.
            raise InvalidArgumentError(
                f"the prompt is {len(encoded)} bytes, more than the model's {context_size}-token context can hold;"
                " shorten it or load the model with a larger context_size",
                reason="CONTEXT_LENGTH_EXCEEDED",
                field=field,
                metadata={"prompt_bytes": str(len(encoded)), "context_size": str(context_size)},
            )
        tokens = self._tokenizer.tokenize(encoded, add_bos=add_bos, limit=context_size, stop=stop)
        room = context_size - len(tokens)
        if room < 1:
            raise InvalidArgumentError(
                f"the prompt is {len(tokens)} tokens long, which leaves no room in the model's"
                f" {context_size}-token context; shorten it or load the model with a larger context_size",
                reason="CONTEXT_LENGTH_EXCEEDED",
                field=field,
                metadata={"prompt_tokens": str(len(tokens)), "context_size": str(context_size)},
            )
        return PreparedPrompt(tokens, min(params.max_tokens, room), params.stop, template_stops)

    def _render(self, params: GenerationParams) -> tuple[str, bool, tuple[str, ...]]:
        """The prompt text, whether to add BOS, and the template's own end-of-turn strings."""
        if params.prompt is not None:
            prefix = f"{params.system}\n\n" if params.system else ""
            return prefix + params.prompt, True, ()
        assert self._format_chat is not None
        messages = _chat_messages(params.messages, params.system, fold_system=self._fold_system)
        try:
            rendered = self._format_chat(messages=messages)
        except (ValueError, jinja2.TemplateError) as error:  # templates reject e.g. misordered roles
            raise InvalidArgumentError(
                f"the model's chat template rejected these messages: {error}",
                field="messages",
                reason="CHAT_TEMPLATE_REJECTED",
            ) from None
        stops = rendered.stop if isinstance(rendered.stop, list) else [rendered.stop] if rendered.stop else []
        return rendered.prompt, not rendered.added_special, tuple(stops)


def _log_scheduler_failure(done: Future[None]) -> None:
    if not done.cancelled() and (error := done.exception()) is not None:
        _log.error("the batch scheduler stopped: %r", error, exc_info=error)


def _sampling_options(params: GenerationParams) -> tuple[float, float, int]:
    """Temperature, top_p and top_k, with llama-cpp-python's defaults for those left unset."""
    return (
        params.temperature if params.temperature is not None else DEFAULT_TEMPERATURE,
        params.top_p if params.top_p is not None else DEFAULT_TOP_P,
        params.top_k if params.top_k is not None else DEFAULT_TOP_K,
    )


def _default_context_size(path: Path) -> int:
    """The model's trained context, capped so that the KV cache of large-context models stays small."""
    vocab_only = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    try:
        trained = int(vocab_only.metadata.get(f"{vocab_only.metadata['general.architecture']}.context_length", 0))
    finally:
        vocab_only.close()
    return min(trained, DEFAULT_CONTEXT_SIZE) if trained > 0 else DEFAULT_CONTEXT_SIZE


def _token_text(llama: llama_cpp.Llama, token: int) -> str:
    return llama.detokenize([token], special=True).decode("utf-8", errors="replace") if token >= 0 else ""


def _chat_messages(
    messages: Sequence[ChatMessage], system: str | None, *, fold_system: bool
) -> list[llama_types.ChatCompletionRequestMessage]:
    """Messages in llama-cpp-python's shape; system text opens the first user turn if the format has no system turn."""
    system_parts = [system] if system else []
    system_parts += [message.content for message in messages if message.role is Role.SYSTEM]
    turns: list[Any] = [
        {"role": message.role.value, "content": message.content}
        for message in messages
        if message.role is not Role.SYSTEM
    ]
    if system_parts and fold_system and turns and turns[0]["role"] == "user":
        turns[0] = {"role": "user", "content": "\n\n".join([*system_parts, turns[0]["content"]])}
    elif system_parts:
        turns.insert(0, {"role": "system", "content": "\n\n".join(system_parts)})
    return turns
