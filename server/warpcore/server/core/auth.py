"""The bearer token every front door checks, compared in constant time."""

from __future__ import annotations

import hmac


def token_matches(presented: bytes, expected: bytes) -> bool:
    """Whether the presented credential is the expected one, in time that does not depend on how much of it
    matched (a plain `==` stops at the first differing byte, so its timing tells a guesser how far they got)."""
    return hmac.compare_digest(presented, expected)


def bearer(token: str) -> bytes:
    """The `authorization` value that carries `token`."""
    return f"Bearer {token}".encode()
