"""Read typed settings from the server's environment, naming the variable when a value is bad (and never quoting
it: a variable may hold a key, or a URL with credentials)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

from warpcore._api_settings import key_from_env
from warpcore.server.core.bounds import holds_credentials, is_http_url, parse_bool
from warpcore.server.core.errors import FailedPreconditionError, InvalidArgumentError


def bad_variable(name: str, expected: str) -> FailedPreconditionError:
    return FailedPreconditionError(f"environment variable {name} must be {expected}", reason="BAD_ENVIRONMENT")


def env_str(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def env_key(env: Mapping[str, str], name: str) -> str | None:
    """The API key in the variable `name` by the rule of every key read from the environment (key_from_env)."""
    try:
        return key_from_env(env, name)
    except ValueError as error:
        raise FailedPreconditionError(str(error), reason="BAD_ENVIRONMENT") from None


def env_bool(env: Mapping[str, str], name: str) -> bool | None:
    value = env_str(env, name)
    if value is None:
        return None
    parsed = parse_bool(value)
    if parsed is None:
        raise bad_variable(name, "true or false")
    return parsed


def env_int(env: Mapping[str, str], name: str) -> int | None:
    value = env_str(env, name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise bad_variable(name, "an integer") from None


def env_float(env: Mapping[str, str], name: str) -> float | None:
    value = env_str(env, name)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise bad_variable(name, "a number") from None


def env_url(env: Mapping[str, str], name: str) -> str | None:
    """The hub mirror's URL in `name` (HF_ENDPOINT); a provider's base URL is checked as a request's base_url is."""
    value = env_str(env, name)
    if value is not None and not is_http_url(value):
        raise bad_variable(name, "an http:// or https:// URL")
    if value is not None and holds_credentials(value):
        raise FailedPreconditionError(
            f"environment variable {name} must hold no credentials (user:password@); give the token in HF_TOKEN",
            reason="BAD_ENVIRONMENT",
        )
    return value


@contextlib.contextmanager
def variables_for(fields: Mapping[str, str]) -> Iterator[None]:
    """Values read from the environment checked by the rules of the request fields they stand in for
    (core/settings_rules.py): a refusal names the variable of its field (`fields`: field -> variable), not the field."""
    try:
        yield
    except InvalidArgumentError as error:
        variable = fields[(error.field or "").removeprefix("settings.")]
        raise FailedPreconditionError(
            f"environment variable {variable}: {error.message}", reason="BAD_ENVIRONMENT"
        ) from None
