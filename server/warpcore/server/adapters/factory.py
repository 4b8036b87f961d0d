"""The one place that knows which adapter serves which backend."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from typing import Any

from warpcore.server.adapters.base import Adapter
from warpcore.server.domain import ApiSettings, BackendKind, BackendSettings, LocalSettings
from warpcore.server.errors import InvalidArgumentError

AdapterFactory = Callable[[BackendKind, BackendSettings | None], Adapter]

# Every adapter is built from its settings and the environment that fills their unset fields. Adapter modules
# are imported on first use: the vendor SDKs take seconds to import, which a server must not spend before it
# can serve (see import_adapters).
_BACKENDS: dict[BackendKind, tuple[type[ApiSettings] | type[LocalSettings], str]] = {
    BackendKind.OPENAI: (ApiSettings, "warpcore.server.adapters.openai_api:OpenAIAdapter"),
    BackendKind.ANTHROPIC: (ApiSettings, "warpcore.server.adapters.anthropic_api:AnthropicAdapter"),
    BackendKind.LLAMA_CPP: (LocalSettings, "warpcore.server.adapters.llama_cpp:LlamaCppAdapter"),
}
_CONFIG_FIELD = {ApiSettings: "api", LocalSettings: "local"}


def create_adapter(
    backend: BackendKind, settings: BackendSettings | None, env: Mapping[str, str] = os.environ
) -> Adapter:
    """A new adapter for `backend`; `settings=None` takes every setting from `env`."""
    settings_type, adapter_path = _BACKENDS[backend]
    if settings is None:
        settings = settings_type()
    elif not isinstance(settings, settings_type):
        raise InvalidArgumentError(
            f"backend {backend.name} takes backend_config.{_CONFIG_FIELD[settings_type]},"
            f" not backend_config.{_CONFIG_FIELD[type(settings)]}",
            field="backend_config",
        )
    return _adapter_type(adapter_path)(settings, env)


def _adapter_type(path: str) -> Callable[[Any, Mapping[str, str]], Adapter]:
    module, name = path.split(":")
    adapter_type: Callable[[Any, Mapping[str, str]], Adapter] = getattr(importlib.import_module(module), name)
    return adapter_type


def import_adapters() -> None:
    """Import every adapter now (blocking: run it on a thread once serving), so no request waits for it."""
    for _, path in _BACKENDS.values():
        _adapter_type(path)
