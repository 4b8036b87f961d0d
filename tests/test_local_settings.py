"""LocalBackendConfig fields win; unset ones fall back to LLAMA_* variables, then to defaults."""

from __future__ import annotations

import pytest

from warpcore.server.adapters.llama.chat import CHAT_FORMATTERS
from warpcore.server.adapters.llama.cpus import usable_cores
from warpcore.server.adapters.llama.options import LlamaOptions
from warpcore.server.core.bounds import CHAT_FORMAT_NAMES
from warpcore.server.core.domain import LocalSettings, NumaStrategy
from warpcore.server.core.errors import FailedPreconditionError


def test_defaults_without_config_or_environment() -> None:
    options = LlamaOptions.resolve(LocalSettings(), {})
    assert options == LlamaOptions(
        models_path=None,
        threads=usable_cores(),
        gpu_layers=0,
        use_mmap=True,
        use_mlock=False,
        numa=NumaStrategy.DISABLED,
        chat_format=None,
        parallel=1,
        prompt_cache_tokens=None,
    )


def test_environment_fills_unset_fields() -> None:
    env = {
        "MODELS_PATH": "/models",
        "LLAMA_THREADS": "3",
        "LLAMA_USE_GPU": "true",
        "LLAMA_GPU_LAYERS": "12",
        "LLAMA_USE_MMAP": "0",
        "LLAMA_USE_MLOCK": "yes",
        "LLAMA_NUMA_STRATEGY": "distribute",
        "LLAMA_CHAT_FORMAT": "chatml",
        "LLAMA_PARALLEL": "4",
        "LLAMA_PROMPT_CACHE_TOKENS": "0",
    }
    options = LlamaOptions.resolve(LocalSettings(), env)
    assert options == LlamaOptions("/models", 3, 12, False, True, NumaStrategy.DISTRIBUTE, "chatml", 4, 0)


def test_config_wins_over_environment() -> None:
    settings = LocalSettings(threads=1, use_gpu=True, gpu_layers=4, use_mmap=True, numa=NumaStrategy.ISOLATE)
    env = {"LLAMA_THREADS": "8", "LLAMA_GPU_LAYERS": "99", "LLAMA_USE_MMAP": "false", "LLAMA_NUMA_STRATEGY": "mirror"}
    options = LlamaOptions.resolve(settings, env)
    assert (options.threads, options.gpu_layers, options.use_mmap, options.numa) == (1, 4, True, NumaStrategy.ISOLATE)


def test_gpu_layers_are_zero_unless_the_gpu_is_used() -> None:
    assert LlamaOptions.resolve(LocalSettings(use_gpu=False, gpu_layers=20), {}).gpu_layers == 0
    assert LlamaOptions.resolve(LocalSettings(use_gpu=True), {}).gpu_layers == -1


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LLAMA_THREADS", "many"),
        ("LLAMA_THREADS", "0"),
        ("LLAMA_USE_GPU", "maybe"),
        ("LLAMA_PARALLEL", "0"),
        ("LLAMA_PARALLEL", "65"),
        ("LLAMA_GPU_LAYERS", "abc"),  # checked even with no GPU in use, where it changes nothing
        ("LLAMA_GPU_LAYERS", "-7"),  # refused in a request, a config file, and now here too
        ("LLAMA_GPU_LAYERS", "99999999999999999999"),
        ("LLAMA_PROMPT_CACHE_TOKENS", "-1"),
        ("LLAMA_CHAT_FORMAT", "bogus"),
    ],
)
def test_bad_environment_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(FailedPreconditionError, match=name):
        LlamaOptions.resolve(LocalSettings(), {name: value})


def test_bad_numa_strategy_lists_the_choices() -> None:
    with pytest.raises(FailedPreconditionError, match="distribute"):
        LlamaOptions.resolve(LocalSettings(), {"LLAMA_NUMA_STRATEGY": "sideways"})


def test_every_chat_format_a_load_may_name_is_rendered() -> None:
    # The names are checked before anything loads (core/settings_rules.py), without llama.cpp: one list for both.
    assert tuple(CHAT_FORMATTERS) == CHAT_FORMAT_NAMES
