"""OpenAI chat completions beyond text: a turn's image parts, and the log-probabilities a choice streams."""

from __future__ import annotations

import base64
from typing import Any

from warpcore.server.core.content import TextPart
from warpcore.server.core.domain import ChatMessage
from warpcore.server.core.tokens import TokenLogprob, TopLogprob


def content(message: ChatMessage) -> str | list[dict[str, Any]]:
    """A message's text, or its content parts as the chat completions API takes them: images as image_url parts,
    bytes as data URLs."""
    if not message.parts:
        return message.content
    parts: list[dict[str, Any]] = [{"type": "text", "text": message.content}] if message.content else []
    for part in message.parts:
        if isinstance(part, TextPart):
            parts.append({"type": "text", "text": part.text})
        else:
            url = part.url or f"data:{part.media_type};base64,{base64.b64encode(part.data).decode()}"
            parts.append({"type": "image_url", "image_url": {"url": url}})
    return parts


def token_logprobs(scored: Any) -> tuple[TokenLogprob, ...]:
    """The tokens of a choice's `logprobs.content` (none when the choice has no logprobs)."""
    return tuple(_token_logprob(token) for token in (scored or {}).get("content") or ())


def _token_logprob(scored: Any) -> TokenLogprob:
    """One entry of a choice's logprobs.content: the token's bytes (its text when the API gives none), its
    logprob and its top_logprobs."""
    top = tuple(TopLogprob(_token_bytes(other), float(other["logprob"])) for other in scored.get("top_logprobs") or ())
    return TokenLogprob(_token_bytes(scored), float(scored["logprob"]), top)


def _token_bytes(scored: Any) -> bytes:
    raw = scored.get("bytes")
    return bytes(raw) if raw is not None else str(scored["token"]).encode()
