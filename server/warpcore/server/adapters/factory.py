"""The one place that knows which adapter serves which backend."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

from warpcore.server.adapters.base import Adapter
from warpcore.server.adapters.env import env_url
from warpcore.server.core.domain import ApiSettings, BackendKind, BackendSettings, LocalSettings
from warpcore.server.core.pulls import Download, PulledFile, PullProgressCallback
from warpcore.server.heap import keep_imported

AdapterFactory = Callable[[BackendKind, BackendSettings | None], Adapter]
AdapterType = Callable[[Any, Mapping[str, str]], Adapter]
"""An adapter class: built from its backend's settings and the environment that fills their unset fields."""

# Each adapter module is imported the first time its backend is used, never before: the vendor SDKs take up to two
# CPU-seconds to import, which a server must spend neither before it can serve nor, on a thread, while it serves its
# first requests. A server that never uses a backend never imports it.


def _openai() -> AdapterType:
    from warpcore.server.adapters.hosted.openai import OpenAIAdapter

    return OpenAIAdapter


def _anthropic() -> AdapterType:
    from warpcore.server.adapters.hosted.anthropic import AnthropicAdapter

    return AnthropicAdapter


def _llama_cpp() -> AdapterType:
    from warpcore.server.adapters.llama.adapter import LlamaCppAdapter

    return LlamaCppAdapter


_ADAPTERS: dict[BackendKind, Callable[[], AdapterType]] = {
    BackendKind.OPENAI: _openai,
    BackendKind.ANTHROPIC: _anthropic,
    BackendKind.LLAMA_CPP: _llama_cpp,
}


_IMPORTED: set[BackendKind] = set()


def adapter_type(backend: BackendKind) -> AdapterType:
    """The adapter class of `backend`, its module imported on the first call (blocking: seconds for an SDK), and
    then kept out of the collector's walks (heap.py)."""
    adapter = _ADAPTERS[backend]()
    if backend not in _IMPORTED:
        _IMPORTED.add(backend)
        keep_imported()
    return adapter


def create_adapter(
    backend: BackendKind, settings: BackendSettings | None, env: Mapping[str, str] = os.environ
) -> Adapter:
    """A new adapter for `backend` (settings of the kind it takes, core/validation.py); `settings=None` takes every
    setting from `env`."""
    if settings is None:
        settings = ApiSettings() if backend.hosted else LocalSettings()
    return adapter_type(backend)(settings, env)


def check_environment(env: Mapping[str, str]) -> None:
    """The variables every load of a backend reads (LLAMA_*, OPENAI_*, ANTHROPIC_*) checked by the rules of the
    settings they stand in for, for the server to refuse a bad one as it starts rather than at the first load that
    reads it. No backend's module is imported: these checks are theirs, in modules of their own."""
    from warpcore.server.adapters.hosted.config import PROVIDERS, environment_settings
    from warpcore.server.adapters.llama.options import environment_settings as llama_environment

    llama_environment(env)
    for names in PROVIDERS.values():
        environment_settings(env, names)


def check_unloaded(backend: BackendKind, settings: BackendSettings | None, env: Mapping[str, str]) -> None:
    """What a load of `backend` with `settings` (and `env`) would refuse before it loads anything, its files aside
    (llama/model_paths.py checks them), without importing the backend: for a model declared lazy, whose load
    comes with its first call."""
    from warpcore.server.adapters.hosted.config import PROVIDERS, resolve_api
    from warpcore.server.adapters.llama.options import LlamaOptions

    if backend.hosted:
        resolve_api(settings if isinstance(settings, ApiSettings) else ApiSettings(), env, PROVIDERS[backend])
    else:
        LlamaOptions.resolve(settings if isinstance(settings, LocalSettings) else LocalSettings(), env)


def hub_download(env: Mapping[str, str] = os.environ) -> Download:
    """How this server pulls model files (hf: ids, into MODELS_PATH, settings from `env`, HF_ENDPOINT checked
    now); huggingface_hub is imported by the first pull, on its thread."""
    env_url(env, "HF_ENDPOINT")

    def download(model: str, revision: str | None, progress: PullProgressCallback, stop: threading.Event) -> PulledFile:
        from warpcore.server.adapters.llama.hub import pull_file

        return pull_file(model, revision, env, progress, stop)

    return download
