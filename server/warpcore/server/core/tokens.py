"""The values of a CountTokens call: a prompt's exact size, and its tokens when asked for."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Token:
    id: int
    piece: bytes


@dataclass(frozen=True)
class TokenCount:
    prompt_tokens: int
    tokens: tuple[Token, ...] = ()
    """Only when asked for, and where the backend can give them."""
