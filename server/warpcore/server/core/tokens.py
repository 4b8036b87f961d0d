"""Tokens as callers see them: a prompt's exact size (CountTokens, or early in a generation) and generated tokens'
log-probabilities."""

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


@dataclass(frozen=True)
class PromptUsage:
    """A generation's prompt size, sent at most once, before any delta, by a backend that knows it before the end
    (its Finish repeats it), counted as the Finish counts it: `prompt_tokens` includes the cached ones."""

    prompt_tokens: int
    cached_prompt_tokens: int = 0
    cache_creation_tokens: int = 0


@dataclass(frozen=True)
class TopLogprob:
    token: bytes
    logprob: float

    @property
    def text(self) -> str:
        return token_text(self.token)


@dataclass(frozen=True)
class TokenLogprob:
    """A generated token's log-probability under the model (before sampling options reshaped it), and the
    most likely tokens at its place, most likely first."""

    token: bytes
    logprob: float
    top: tuple[TopLogprob, ...] = ()

    @property
    def text(self) -> str:
        return token_text(self.token)


def token_text(token: bytes) -> str:
    """A token as text: one that begins or ends inside a character gets replacement characters for the bytes it
    holds of it (its exact bytes go beside the text, wherever a token is shown)."""
    return token.decode("utf-8", errors="replace")
