"""The rules of a backend's settings (a request's backend_config, the preload file's api and local tables, and the
LLAMA_* and provider variables that stand in for them); a refusal names the field by its domain path
(`settings.threads`) and never quotes a value, which may be a key or come from the environment."""

from __future__ import annotations

from warpcore._api_settings import MAX_API_TIMEOUT_SECONDS
from warpcore._local_settings import MAX_PROMPT_CACHE_TOKENS
from warpcore.server.core.bounds import (
    CHAT_FORMAT_NAMES,
    MAX_GPU_LAYERS,
    MAX_PARALLEL,
    MAX_THREADS,
    MAX_URL_LENGTH,
    holds_credentials,
    is_http_url,
)
from warpcore.server.core.domain import ApiSettings, BackendKind, BackendSettings, LocalSettings
from warpcore.server.core.errors import InvalidArgumentError
from warpcore.server.core.rules import check_name, require


def check_settings(settings: BackendSettings | None, backend: BackendKind | None = None) -> None:
    """`settings` in range, and of the kind `backend` (when given) takes."""
    if backend is not None and settings is not None and isinstance(settings, ApiSettings) != backend.hosted:
        wanted, given = ("api", "local") if backend.hosted else ("local", "api")
        raise InvalidArgumentError(
            f"backend {backend.name} takes backend_config.{wanted}, not backend_config.{given}", field="settings"
        )
    if isinstance(settings, ApiSettings):
        _check_api(settings)
    elif isinstance(settings, LocalSettings):
        _check_local(settings)


def _check_api(api: ApiSettings) -> None:
    if api.timeout is not None:
        require(
            0 < api.timeout <= MAX_API_TIMEOUT_SECONDS,
            "settings.timeout",
            f"timeout must be positive and at most {MAX_API_TIMEOUT_SECONDS} seconds",
        )
    if api.base_url is not None:
        base_url = api.base_url
        require(
            len(base_url) <= MAX_URL_LENGTH,
            "settings.base_url",
            f"base_url must be at most {MAX_URL_LENGTH} characters",
        )
        require(is_http_url(base_url), "settings.base_url", "base_url must be an http:// or https:// URL")
        # The SDKs send the key in a header of their own, which an HTTP client will not combine with a URL's.
        require(
            not holds_credentials(base_url),
            "settings.base_url",
            "base_url must hold no credentials (user:password@); give the key in api_key",
        )
        # The SDKs add each API path to the base URL's text, after a query or a fragment too
        # (`/v1/?api-version=1models`), and the upstream's refusal of that path quotes the query back.
        require(
            "?" not in base_url and "#" not in base_url,
            "settings.base_url",
            "base_url must hold no query (?...) or fragment (#...): the API's paths are added at its end",
        )
    for name, value in (("api_key", api.api_key), ("organization", api.organization)):
        if value is not None:
            check_header_value(value, f"settings.{name}")


def check_header_value(value: str, field: str) -> None:
    """A value sent in an HTTP header (a key, an organization, an API version): non-empty printable ASCII. The
    refusal does not quote it: it may be a key."""
    name = field.rpartition(".")[2]
    require(bool(value) and value.isascii() and value.isprintable(), field, f"{name} must be non-empty printable ASCII")


def _check_local(local: LocalSettings) -> None:
    # The projector's file is named as `model` is, and checked by the same rule.
    for name, value in (("mmproj", local.mmproj), ("chat_format", local.chat_format)):
        if value:  # empty: refused by the rule of what it names
            check_name(value, f"settings.{name}")
    if local.threads is not None:
        require(1 <= local.threads <= MAX_THREADS, "settings.threads", f"threads must be between 1 and {MAX_THREADS}")
    if local.parallel is not None:
        require(
            1 <= local.parallel <= MAX_PARALLEL, "settings.parallel", f"parallel must be between 1 and {MAX_PARALLEL}"
        )
    if local.prompt_cache_tokens is not None:
        require(
            0 <= local.prompt_cache_tokens <= MAX_PROMPT_CACHE_TOKENS,
            "settings.prompt_cache_tokens",
            f"prompt_cache_tokens must be between 0 (no cache) and {MAX_PROMPT_CACHE_TOKENS}",
        )
    if local.pooling is not None:
        require(bool(local.embedding), "settings.pooling", "pooling applies only to a model loaded for embeddings")
    for setting, given in (("parallel", local.parallel), ("prompt_cache_tokens", local.prompt_cache_tokens)):
        # An embedding model runs one call at a time, its inputs decoded together, and keeps no prompt.
        require(
            given is None or not local.embedding,
            f"settings.{setting}",
            f"{setting} applies only to a model loaded for text generation, not for embeddings",
        )
    if local.gpu_layers is not None:
        require(
            -1 <= local.gpu_layers <= MAX_GPU_LAYERS,
            "settings.gpu_layers",
            f"gpu_layers must be between -1 (all) and {MAX_GPU_LAYERS}",
        )
    if local.chat_format:
        # Not quoted: it may come from the environment, whose values a refusal never quotes.
        require(
            local.chat_format in CHAT_FORMAT_NAMES,
            "settings.chat_format",
            f"chat_format must be one of {', '.join(CHAT_FORMAT_NAMES)}",
        )
