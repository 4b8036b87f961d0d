"""The one way a rule refuses a request: INVALID_ARGUMENT naming the field, in domain terms."""

from __future__ import annotations

from warpcore.server.core.errors import InvalidArgumentError


def require(condition: bool, field: str, message: str) -> None:
    if not condition:
        raise InvalidArgumentError(message, field=field)
