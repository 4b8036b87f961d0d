"""The one place that knows which adapter serves which backend."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from warpcore.server.adapters.base import Adapter
from warpcore.server.domain import ApiSettings, BackendKind, BackendSettings, LocalSettings
from warpcore.server.errors import InvalidArgumentError

AdapterFactory = Callable[[BackendKind, BackendSettings | None], Adapter]
AdapterType = Callable[[Any, Mapping[str, str]], Adapter]
"""An adapter class: built from its backend's settings and the environment that fills their unset fields."""

# Each adapter module is imported the first time its backend is used, never before: the vendor SDKs take up to two
# CPU-seconds to import, which a server must spend neither before it can serve nor, on a thread, while it serves its
# first requests. A server that never uses a backend never imports it.


def _openai() -> AdapterType:
    from warpcore.server.adapters.openai_api import OpenAIAdapter

    return OpenAIAdapter


def _anthropic() -> AdapterType:
    from warpcore.server.adapters.anthropic_api import AnthropicAdapter

    return AnthropicAdapter


def _llama_cpp() -> AdapterType:
    from warpcore.server.adapters.llama.adapter import LlamaCppAdapter

    return LlamaCppAdapter


_BACKENDS: dict[BackendKind, tuple[type[ApiSettings] | type[LocalSettings], Callable[[], AdapterType]]] = {
    BackendKind.OPENAI: (ApiSettings, _openai),
    BackendKind.ANTHROPIC: (ApiSettings, _anthropic),
    BackendKind.LLAMA_CPP: (LocalSettings, _llama_cpp),
}
_CONFIG_FIELD = {ApiSettings: "api", LocalSettings: "local"}


def adapter_type(backend: BackendKind) -> AdapterType:
    """The adapter class of `backend`, its module imported on the first call (blocking: seconds for an SDK)."""
    return _BACKENDS[backend][1]()


def create_adapter(
    backend: BackendKind, settings: BackendSettings | None, env: Mapping[str, str] = os.environ
) -> Adapter:
    """A new adapter for `backend`; `settings=None` takes every setting from `env`."""
    settings_type, _ = _BACKENDS[backend]
    if settings is None:
        settings = settings_type()
    elif not isinstance(settings, settings_type):
        raise InvalidArgumentError(
            f"backend {backend.name} takes backend_config.{_CONFIG_FIELD[settings_type]},"
            f" not backend_config.{_CONFIG_FIELD[type(settings)]}",
            field="backend_config",
        )
    return adapter_type(backend)(settings, env)
