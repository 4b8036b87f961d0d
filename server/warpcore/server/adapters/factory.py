"""The one place that knows which adapter serves which backend."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from warpcore.server.adapters.base import Adapter
from warpcore.server.domain import ApiSettings, BackendKind, BackendSettings, LocalSettings
from warpcore.server.errors import InvalidArgumentError

AdapterFactory = Callable[[BackendKind, BackendSettings | None], Adapter]


def _llama_cpp(settings: BackendSettings, env: Mapping[str, str]) -> Adapter:
    from warpcore.server.adapters.llama_cpp import LlamaCppAdapter

    assert isinstance(settings, LocalSettings)
    return LlamaCppAdapter(settings, env)


_BACKENDS: dict[BackendKind, tuple[type[ApiSettings] | type[LocalSettings], Callable[..., Adapter]]] = {
    BackendKind.LLAMA_CPP: (LocalSettings, _llama_cpp),
}
_CONFIG_FIELD = {ApiSettings: "api", LocalSettings: "local"}


def create_adapter(
    backend: BackendKind, settings: BackendSettings | None, env: Mapping[str, str] = os.environ
) -> Adapter:
    """A new adapter for `backend`; `settings=None` takes every setting from `env`."""
    if backend not in _BACKENDS:
        raise InvalidArgumentError(f"backend {backend.name} is not available on this server", field="backend")
    settings_type, build = _BACKENDS[backend]
    if settings is None:
        settings = settings_type()
    elif not isinstance(settings, settings_type):
        raise InvalidArgumentError(
            f"backend {backend.name} takes backend_config.{_CONFIG_FIELD[settings_type]},"
            f" not backend_config.{_CONFIG_FIELD[type(settings)]}",
            field="backend_config",
        )
    return build(settings, env)
