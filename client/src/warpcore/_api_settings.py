"""Rules of a hosted API's settings, in one place for the server (a LoadModel's ApiConfig, its config file's
[models.api] table) and for the warpcore command (`load`'s and `models`' --api-key-env and --api-timeout), which
refuses as a usage error before any call what the server would refuse. It sits outside warpcore.client, as
_keep_alive does, so that the server reads it without importing grpc."""

from __future__ import annotations

import re
from collections.abc import Mapping

MAX_API_TIMEOUT_SECONDS = 86400
"""The longest an upstream may take to connect and to send each piece of its answer (ApiConfig.timeout): a day."""
NOT_AN_ENV_NAME = "is no environment variable's name (letters, digits and _)"
"""Why a name the key's environment variable is given by is refused; the name is not quoted: it may be the key
itself, written where its variable's name goes."""
_ENV_NAME = re.compile("[A-Za-z_][A-Za-z0-9_]*")
_CONVENTIONAL_ENV_NAME = re.compile("[A-Z_][A-Z0-9_]*")


def is_env_name(name: str) -> bool:
    """Whether `name` may name an environment variable, as a shell writes one."""
    return _ENV_NAME.fullmatch(name) is not None


def shown_env_name(name: str) -> str:
    """An environment variable's name as a message may show it: as given when named as variables are, in capitals; a
    key may be a variable's name too (gsk_..., sk_live_...), written where its variable's name goes."""
    return name if _CONVENTIONAL_ENV_NAME.fullmatch(name) else "(not quoted: it may be a key)"


def sendable_key(text: str, source: str) -> str:
    """The API key in `text` without the whitespace around it (the last newline of a key file, or of
    `$(cat key-file)`), which no header carries. ValueError naming `source`, never quoting the key, for one that is
    blank (sent, it would be `Authorization: Bearer ` upstream) or that no header can carry (printable ASCII)."""
    key = text.strip()
    if not key:
        raise ValueError(f"{source} is empty: put the key in it")
    if not (key.isascii() and key.isprintable()):
        raise ValueError(f"the key in {source} is not printable ASCII, as an API key is")
    return key


def key_from_env(env: Mapping[str, str], name: str, named_by: str | None = None) -> str | None:
    """The API key in the environment variable `name` (`sendable_key`), or None when it is not set: one rule for
    every variable a key is read from, the provider's own (OPENAI_API_KEY, `named_by` None) and one named to hold a
    key (api_key_env, --api-key-env; `named_by` says where, or is empty). A named one set but blank is refused: the
    operator meant to give a key there. The provider's own set but blank is unset (a compose file passes an unset
    variable on as empty): a model that needs it is refused as without a key, never called with an empty one."""
    value = env.get(name)
    if value is None or (named_by is None and not value.strip()):
        return None
    where = f" ({named_by})" if named_by else ""
    return sendable_key(value, f"environment variable {shown_env_name(name)}{where}")
