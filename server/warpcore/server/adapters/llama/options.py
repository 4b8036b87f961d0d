"""A local model's settings: from the request, else the server's environment (LLAMA_* variables), else defaults."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from warpcore.server.adapters.env import bad_variable, env_bool, env_int, env_str, variables_for
from warpcore.server.adapters.llama.cpus import usable_cores
from warpcore.server.core.bounds import NUMA_NAMES, parse_numa
from warpcore.server.core.domain import LocalSettings, NumaStrategy
from warpcore.server.core.embeddings import Pooling
from warpcore.server.core.settings_rules import check_settings

VARIABLES = {
    "threads": "LLAMA_THREADS",
    "use_gpu": "LLAMA_USE_GPU",
    "gpu_layers": "LLAMA_GPU_LAYERS",
    "use_mmap": "LLAMA_USE_MMAP",
    "use_mlock": "LLAMA_USE_MLOCK",
    "numa": "LLAMA_NUMA_STRATEGY",
    "chat_format": "LLAMA_CHAT_FORMAT",
    "parallel": "LLAMA_PARALLEL",
    "prompt_cache_tokens": "LLAMA_PROMPT_CACHE_TOKENS",
}
"""The LocalSettings field each variable stands in for."""


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
        """Each field of `settings` left unset from the environment (LLAMA_* variables), else its default."""
        from_env = environment_settings(env)
        unset = [field.name for field in dataclasses.fields(settings) if getattr(settings, field.name) is None]
        merged = dataclasses.replace(settings, **{name: getattr(from_env, name) for name in unset})
        return cls(
            models_path=env_str(env, "MODELS_PATH"),
            threads=merged.threads or usable_cores(),
            gpu_layers=(-1 if merged.gpu_layers is None else merged.gpu_layers) if merged.use_gpu else 0,
            use_mmap=merged.use_mmap is not False,
            use_mlock=bool(merged.use_mlock),
            numa=NumaStrategy.DISABLED if merged.numa is None else merged.numa,
            chat_format=merged.chat_format,
            parallel=merged.parallel or 1,
            prompt_cache_tokens=merged.prompt_cache_tokens,
            embedding=bool(merged.embedding),
            pooling=merged.pooling,
            mmproj=merged.mmproj,
        )


def environment_settings(env: Mapping[str, str]) -> LocalSettings:
    """The settings the LLAMA_* variables give every local model, checked by the rules of the fields they stand in
    for (a request's or the preload file's): read, and so checked, whether or not a model uses them (LLAMA_GPU_LAYERS
    without a GPU), as a bad value is a mistake either way."""
    settings = LocalSettings(
        threads=env_int(env, VARIABLES["threads"]),
        use_gpu=env_bool(env, VARIABLES["use_gpu"]),
        gpu_layers=env_int(env, VARIABLES["gpu_layers"]),
        use_mmap=env_bool(env, VARIABLES["use_mmap"]),
        use_mlock=env_bool(env, VARIABLES["use_mlock"]),
        numa=_numa_from_env(env),
        chat_format=env_str(env, VARIABLES["chat_format"]),
        parallel=env_int(env, VARIABLES["parallel"]),
        prompt_cache_tokens=env_int(env, VARIABLES["prompt_cache_tokens"]),
    )
    with variables_for(VARIABLES):
        check_settings(settings)
    return settings


def _numa_from_env(env: Mapping[str, str]) -> NumaStrategy | None:
    name = env_str(env, VARIABLES["numa"])
    if name is None:
        return None
    strategy = parse_numa(name)
    if strategy is None:
        raise bad_variable(VARIABLES["numa"], f"one of {', '.join(NUMA_NAMES)}")
    return strategy
