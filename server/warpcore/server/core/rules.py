"""The one way a rule refuses a request: INVALID_ARGUMENT naming the field, in domain terms; and the rule of a name."""

from __future__ import annotations

from warpcore.server.core.bounds import MAX_ID_LENGTH
from warpcore.server.core.errors import InvalidArgumentError


def require(condition: bool, field: str, message: str) -> None:
    if not condition:
        raise InvalidArgumentError(message, field=field)


def check_name(value: str, field: str) -> str:
    """A name the server may quote back in a refusal, look up on disk or log: printable, without surrounding spaces,
    at most MAX_ID_LENGTH characters (a refusal quoting one of thousands overflowed the client's limit on a status's
    size, and the client saw a transport error instead)."""
    require(len(value) <= MAX_ID_LENGTH, field, f"{field} is longer than {MAX_ID_LENGTH} characters")
    require(
        value.isprintable() and value.strip() == value, field, f"{field} must be printable, without surrounding spaces"
    )
    return value
