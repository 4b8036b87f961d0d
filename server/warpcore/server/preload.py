"""Models to load at start, from a TOML file whose secrets are references to environment variables."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from warpcore._api_settings import NOT_AN_ENV_NAME, is_env_name, key_from_env, shown_env_name
from warpcore._keep_alive import SPELLINGS, parse_keep_alive
from warpcore.server.core.bounds import NUMA_NAMES, POOLING_NAMES, parse_numa, parse_pooling
from warpcore.server.core.domain import Admission, ApiSettings, BackendKind, BackendSettings, LoadSpec, LocalSettings
from warpcore.server.core.errors import InvalidArgumentError
from warpcore.server.core.validation import check_load

_MODEL_KEYS = {
    "id",
    "backend",
    "model",
    "context_size",
    "api",
    "local",
    "max_streams",
    "max_queue",
    "keep_alive",
    "lazy",
}
# The least each admission limit may be: a model must run at least one generation, and may queue none.
_ADMISSION_MINIMUM = {"max_streams": 1, "max_queue": 0}
_API_TYPES: dict[str, type | tuple[type, ...]] = {
    "api_key_env": str,
    "base_url": str,
    "organization": str,
    "timeout": (int, float),
    "embedding": bool,
    "unlisted": bool,
}
_LOCAL_TYPES: dict[str, type | tuple[type, ...]] = {
    "threads": int,
    "use_gpu": bool,
    "gpu_layers": int,
    "use_mmap": bool,
    "use_mlock": bool,
    "numa_strategy": str,
    "chat_format": str,
    "parallel": int,
    "prompt_cache_tokens": int,
    "embedding": bool,
    "pooling": str,
    "mmproj": str,
}


class ConfigError(ValueError):
    """The preload file cannot be used; the message names the file, the entry and the key."""


def _table(value: object, where: str, types: Mapping[str, type | tuple[type, ...]]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table")
    for key, item in value.items():
        if key == "api_key":
            raise ConfigError(
                f"{where}.api_key: keys are never written in the file; name the environment variable"
                " that holds it with api_key_env"
            )
        if key not in types:
            raise ConfigError(f"{where}.{key} is not a known setting; known: {', '.join(sorted(types))}")
        expected = types[key]
        if not isinstance(item, expected) or (expected is int and isinstance(item, bool)):
            raise ConfigError(f"{where}.{key} has the wrong type")
    return value


def _api_settings(table: dict[str, Any], where: str, env: Mapping[str, str]) -> ApiSettings:
    api_key = None
    if "api_key_env" in table:
        name = table["api_key_env"]
        if not is_env_name(name):
            raise ConfigError(f"{where}.api_key_env {NOT_AN_ENV_NAME}")
        try:
            api_key = key_from_env(env, name, f"{where}.api_key_env")
        except ValueError as error:
            raise ConfigError(str(error)) from None
        if api_key is None:
            raise ConfigError(f"{where}.api_key_env names a variable {shown_env_name(name)} that is not set")
    return ApiSettings(
        api_key=api_key,
        organization=table.get("organization"),
        base_url=table.get("base_url"),
        timeout=float(table["timeout"]) if "timeout" in table else None,
        embedding=table.get("embedding"),
        unlisted=table.get("unlisted", False),
    )


def _local_settings(table: dict[str, Any], where: str) -> LocalSettings:
    numa = None
    if "numa_strategy" in table:
        numa = parse_numa(table["numa_strategy"])
        if numa is None:
            raise ConfigError(f"{where}.numa_strategy must be one of {', '.join(NUMA_NAMES)}")
    pooling = None
    if "pooling" in table:
        pooling = parse_pooling(table["pooling"])
        if pooling is None:
            raise ConfigError(f"{where}.pooling must be one of {', '.join(POOLING_NAMES)}")
    fields = {key: value for key, value in table.items() if key not in ("numa_strategy", "pooling")}
    return LocalSettings(numa=numa, pooling=pooling, **fields)


def _admission(entry: dict[str, Any], where: str) -> Admission | None:
    for key, least in _ADMISSION_MINIMUM.items():
        value = entry.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < least):
            raise ConfigError(f"{where}.{key} must be an integer of at least {least}")
    if not _ADMISSION_MINIMUM.keys() & entry.keys():
        return None
    return Admission(max_streams=entry.get("max_streams"), max_queue=entry.get("max_queue"))


def _keep_alive(entry: dict[str, Any], where: str) -> float | None:
    """A string as the server's --keep-alive takes it, or a number read as its text would be (90, 1.5, -1); its range
    is a load's (check_load)."""
    value = entry.get("keep_alive")
    if value is None:
        return None
    # A bool's text (True) is no keep_alive, nor a float's in an exponent (1e-07): one grammar for both.
    seconds = parse_keep_alive(str(value)) if isinstance(value, str | int | float) else None
    if seconds is None:
        raise ConfigError(f"{where}.keep_alive must be {SPELLINGS}")
    return seconds


def _spec(entry: object, where: str, env: Mapping[str, str]) -> LoadSpec:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = entry.keys() - _MODEL_KEYS
    if unknown:
        raise ConfigError(
            f"{where}: unknown keys {', '.join(sorted(unknown))}; known: {', '.join(sorted(_MODEL_KEYS))}"
        )
    backends = {kind.value: kind for kind in BackendKind}
    backend = backends.get(entry.get("backend"))  # type: ignore[arg-type]
    if backend is None:
        raise ConfigError(f"{where}.backend must be one of {', '.join(backends)}")
    model = entry.get("model")
    if not isinstance(model, str) or not model:
        raise ConfigError(f"{where}.model must be a non-empty string")
    context_size = entry.get("context_size")
    if context_size is not None and (not isinstance(context_size, int) or isinstance(context_size, bool)):
        raise ConfigError(f"{where}.context_size must be an integer")
    if "api" in entry and "local" in entry:
        raise ConfigError(f"{where}: give an api table or a local table, not both")
    settings: BackendSettings | None = None
    if "local" in entry:
        settings = _local_settings(_table(entry["local"], f"{where}.local", _LOCAL_TYPES), f"{where}.local")
    elif "api" in entry:
        settings = _api_settings(_table(entry["api"], f"{where}.api", _API_TYPES), f"{where}.api", env)
    lazy = entry.get("lazy", False)
    if not isinstance(lazy, bool):
        raise ConfigError(f"{where}.lazy must be true or false")
    model_id = entry.get("id", model)
    if not isinstance(model_id, str) or not model_id:
        raise ConfigError(f"{where}.id must be a non-empty string")
    spec = LoadSpec(
        model_id=model_id,
        backend=backend,
        name=model,
        settings=settings,
        context_size=context_size,
        admission=_admission(entry, where),
        keep_alive=_keep_alive(entry, where),
        lazy=lazy,
        key_from_server=isinstance(settings, ApiSettings) and settings.api_key is not None,
    )
    try:
        # The rules of a LoadModel request, so a file cannot load what a request may not; and its spelling of ids,
        # so that two entries naming one file under one id are seen to be one.
        return check_load(spec)
    except InvalidArgumentError as error:
        raise ConfigError(f"{where}.{_key(error.field or '', backend)}: {error.message}") from None


def _key(field: str, backend: BackendKind) -> str:
    """The file's key for a domain field path: settings live in the model's api or local table."""
    table = "api" if backend.hosted else "local"
    return {
        "model_id": "id",
        "model_type": f"{table}.embedding",
        "settings": table,
        "settings.numa": "local.numa_strategy",
    }.get(field, field.replace("settings.", f"{table}."))


def read_preload(path: Path, env: Mapping[str, str]) -> list[LoadSpec]:
    """The models a config file lists, checked before anything is loaded."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path} is not UTF-8 text (byte {error.start} is not), as a TOML file must be") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    unknown = data.keys() - {"models"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level keys {', '.join(sorted(unknown))}; expected [[models]] tables")
    entries = data.get("models", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: models must be an array of tables ([[models]])")
    specs = [_spec(entry, f"{path}: models[{index}]", env) for index, entry in enumerate(entries)]
    ids = [spec.model_id for spec in specs]
    duplicates = sorted({model_id for model_id in ids if ids.count(model_id) > 1})
    if duplicates:
        raise ConfigError(f"{path}: model ids listed twice: {', '.join(duplicates)}")
    return specs
