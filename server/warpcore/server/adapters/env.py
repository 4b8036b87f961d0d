"""Read typed settings from the server's environment, naming the variable when a value is bad."""

from __future__ import annotations

from collections.abc import Mapping

from warpcore.server.core.bounds import parse_bool
from warpcore.server.core.errors import FailedPreconditionError


def _bad(name: str, expected: str) -> FailedPreconditionError:
    return FailedPreconditionError(f"environment variable {name} must be {expected}", reason="BAD_ENVIRONMENT")


def env_str(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def env_bool(env: Mapping[str, str], name: str) -> bool | None:
    value = env_str(env, name)
    if value is None:
        return None
    parsed = parse_bool(value)
    if parsed is None:
        raise _bad(name, "true or false")
    return parsed


def env_int(env: Mapping[str, str], name: str) -> int | None:
    value = env_str(env, name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise _bad(name, "an integer") from None


def env_float(env: Mapping[str, str], name: str) -> float | None:
    value = env_str(env, name)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise _bad(name, "a number") from None
