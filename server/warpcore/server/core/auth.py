"""The bearer token every front door checks, compared in constant time."""

from __future__ import annotations

import hmac


def token_matches(presented: bytes, expected: bytes) -> bool:
    """Whether the presented credential is the expected one, in time that does not depend on how much of it
    matched (a plain `==` stops at the first differing byte, so its timing tells a guesser how far they got)."""
    return hmac.compare_digest(presented, expected)


def header_bytes(value: str) -> bytes:
    """A header value's bytes. HTTP servers hand over the bytes that are no UTF-8 as surrogate escapes, which a
    plain encode() refuses: a wrong token must be refused as wrong, not fail the check."""
    return value.encode("utf-8", "surrogateescape")


def bearer_token(authorization: str | bytes) -> bytes:
    """The token an `authorization` value carries in the Bearer scheme, whose name is case-insensitive (RFC 9110,
    section 11.1: "bearer" and "BEARER" too); empty for any other value."""
    value = header_bytes(authorization) if isinstance(authorization, str) else bytes(authorization)
    scheme, _, token = value.strip().partition(b" ")
    return token.strip() if scheme.lower() == b"bearer" else b""
