"""The one place that knows which adapter serves which backend."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from warpcore.server.adapters.anthropic_api import AnthropicAdapter
from warpcore.server.adapters.base import Adapter
from warpcore.server.adapters.llama_cpp import LlamaCppAdapter
from warpcore.server.adapters.openai_api import OpenAIAdapter
from warpcore.server.domain import ApiSettings, BackendKind, BackendSettings, LocalSettings
from warpcore.server.errors import InvalidArgumentError

AdapterFactory = Callable[[BackendKind, BackendSettings | None], Adapter]

# Every adapter is built from its settings and the environment that fills their unset fields.
_BACKENDS: dict[
    BackendKind, tuple[type[ApiSettings] | type[LocalSettings], Callable[[Any, Mapping[str, str]], Adapter]]
] = {
    BackendKind.OPENAI: (ApiSettings, OpenAIAdapter),
    BackendKind.ANTHROPIC: (ApiSettings, AnthropicAdapter),
    BackendKind.LLAMA_CPP: (LocalSettings, LlamaCppAdapter),
}
_CONFIG_FIELD = {ApiSettings: "api", LocalSettings: "local"}


def create_adapter(
    backend: BackendKind, settings: BackendSettings | None, env: Mapping[str, str] = os.environ
) -> Adapter:
    """A new adapter for `backend`; `settings=None` takes every setting from `env`."""
    settings_type, adapter_type = _BACKENDS[backend]
    if settings is None:
        settings = settings_type()
    elif not isinstance(settings, settings_type):
        raise InvalidArgumentError(
            f"backend {backend.name} takes backend_config.{_CONFIG_FIELD[settings_type]},"
            f" not backend_config.{_CONFIG_FIELD[type(settings)]}",
            field="backend_config",
        )
    return adapter_type(settings, env)
