"""A local model's settings: from the request, else the server's environment (LLAMA_* variables), else defaults."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from warpcore.server.adapters.env import env_bool, env_int, env_str
from warpcore.server.adapters.llama.chat import CHAT_FORMAT_FIELD, CHAT_FORMATTERS
from warpcore.server.adapters.llama.cpus import usable_cores
from warpcore.server.core.bounds import MAX_PARALLEL, MAX_PROMPT_CACHE_TOKENS, MAX_THREADS, NUMA_NAMES, parse_numa
from warpcore.server.core.domain import LocalSettings, NumaStrategy
from warpcore.server.core.embeddings import Pooling
from warpcore.server.core.errors import FailedPreconditionError, InvalidArgumentError

Value = TypeVar("Value")


@dataclass(frozen=True)
class LlamaOptions:
    models_path: str | None
    threads: int
    """For generation and prompts alike."""
    gpu_layers: int
    use_mmap: bool
    use_mlock: bool
    numa: NumaStrategy
    chat_format: str | None
    parallel: int
    prompt_cache_tokens: int | None
    """None: as many as the model's context holds."""
    embedding: bool = False
    pooling: Pooling | None = None
    mmproj: str | None = None

    def cached_prompt_tokens(self, context_size: int) -> int:
        """The prompt cache's capacity in tokens for a context of `context_size` (0: no cache)."""
        return context_size if self.prompt_cache_tokens is None else self.prompt_cache_tokens

    @classmethod
    def resolve(cls, settings: LocalSettings, env: Mapping[str, str]) -> LlamaOptions:
        # The environment is only read for fields the request leaves unset.
        def pick(value: Value | None, from_env: Callable[[], Value | None], default: Value) -> Value:
            if value is not None:
                return value
            fallback = from_env()
            return default if fallback is None else fallback

        if settings.chat_format is not None and settings.chat_format not in CHAT_FORMATTERS:
            raise InvalidArgumentError(
                f"unknown chat_format {settings.chat_format!r}; known: {', '.join(sorted(CHAT_FORMATTERS))}",
                field=CHAT_FORMAT_FIELD,
            )
        chat_format = settings.chat_format or env_str(env, "LLAMA_CHAT_FORMAT")
        if chat_format is not None and chat_format not in CHAT_FORMATTERS:
            raise _bad_environment(f"LLAMA_CHAT_FORMAT must be one of {', '.join(sorted(CHAT_FORMATTERS))}")
        parallel = pick(settings.parallel, lambda: env_int(env, "LLAMA_PARALLEL"), 1)
        if not 1 <= parallel <= MAX_PARALLEL:
            raise _bad_environment(f"parallel (LLAMA_PARALLEL) must be between 1 and {MAX_PARALLEL}")
        cache_tokens = settings.prompt_cache_tokens
        if cache_tokens is None:
            cache_tokens = env_int(env, "LLAMA_PROMPT_CACHE_TOKENS")
            if cache_tokens is not None and not 0 <= cache_tokens <= MAX_PROMPT_CACHE_TOKENS:
                raise _bad_environment(f"LLAMA_PROMPT_CACHE_TOKENS must be between 0 and {MAX_PROMPT_CACHE_TOKENS}")
        use_gpu = pick(settings.use_gpu, lambda: env_bool(env, "LLAMA_USE_GPU"), False)
        # Read (and so checked) whether or not a GPU is used: a bad value is a mistake either way.
        gpu_layers = pick(settings.gpu_layers, lambda: env_int(env, "LLAMA_GPU_LAYERS"), -1)
        return cls(
            models_path=env_str(env, "MODELS_PATH"),
            threads=_threads(settings, env),
            gpu_layers=gpu_layers if use_gpu else 0,
            use_mmap=pick(settings.use_mmap, lambda: env_bool(env, "LLAMA_USE_MMAP"), True),
            use_mlock=pick(settings.use_mlock, lambda: env_bool(env, "LLAMA_USE_MLOCK"), False),
            numa=pick(settings.numa, lambda: _numa_from_env(env), NumaStrategy.DISABLED),
            chat_format=chat_format,
            parallel=parallel,
            prompt_cache_tokens=cache_tokens,
            embedding=bool(settings.embedding),
            pooling=settings.pooling,
            mmproj=settings.mmproj,
        )


def _threads(settings: LocalSettings, env: Mapping[str, str]) -> int:
    if settings.threads is not None:
        return settings.threads
    threads = env_int(env, "LLAMA_THREADS")
    if threads is None:
        return usable_cores()
    if not 1 <= threads <= MAX_THREADS:
        raise _bad_environment(f"LLAMA_THREADS must be between 1 and {MAX_THREADS}")
    return threads


def _numa_from_env(env: Mapping[str, str]) -> NumaStrategy | None:
    name = env_str(env, "LLAMA_NUMA_STRATEGY")
    if name is None:
        return None
    strategy = parse_numa(name)
    if strategy is None:
        raise _bad_environment(f"LLAMA_NUMA_STRATEGY must be one of {', '.join(NUMA_NAMES)}")
    return strategy


def _bad_environment(message: str) -> FailedPreconditionError:
    return FailedPreconditionError(message, reason="BAD_ENVIRONMENT")
