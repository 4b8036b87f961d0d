"""OpenAI chat completions beyond text: what a request may not ask of the API, a turn's image and document parts,
and the log-probabilities a choice streams."""

from __future__ import annotations

import base64
from typing import Any

from warpcore.server.adapters.hosted.refusals import answer_refused, refused
from warpcore.server.core.content import DocumentPart, TextPart
from warpcore.server.core.domain import ChatMessage, GenerationParams
from warpcore.server.core.tokens import TokenLogprob, TopLogprob

DOCUMENT_NAME = "document.pdf"
"""The file name a document without a name goes by (the API wants one with a file's data)."""


def content(message: ChatMessage) -> str | list[dict[str, Any]]:
    """A message's text, or its content parts as the chat completions API takes them: images as image_url parts,
    documents as file parts, bytes as data URLs."""
    if not message.parts:
        return message.content
    parts: list[dict[str, Any]] = [{"type": "text", "text": message.content}] if message.content else []
    for part in message.parts:
        if isinstance(part, TextPart):
            parts.append({"type": "text", "text": part.text})
        elif isinstance(part, DocumentPart):
            file = {"file_data": _data_url(part.media_type, part.data), "filename": part.name or DOCUMENT_NAME}
            parts.append({"type": "file", "file": file})
        else:
            parts.append({"type": "image_url", "image_url": {"url": part.url or _data_url(part.media_type, part.data)}})
    return parts


OPENAI_MAX_STOP_SEQUENCES = 4
"""OpenAI's own limit (core/bounds.py has the gateway's)."""


def check_request(params: GenerationParams, *, openai_itself: bool) -> None:
    """Refuses, before anything is sent, what the chat completions API cannot take: OpenAI's own API (`openai_itself`)
    no top_k and at most 4 stop sequences, which the compatible servers a base URL may name instead (llama.cpp's,
    vLLM's, LiteLLM's) take; no API a prefill or a reasoning budget; a document given by URL."""
    if params.top_k is not None and openai_itself:
        raise refused("top_k", "top_k is not supported by OpenAI's API; leave it unset")
    if params.continues_last(api_continues=False):
        raise answer_refused(
            params,
            "the OpenAI API answers after a last assistant message and cannot continue it (prefill)",
            "unset or false",
        )
    if len(params.stop) > OPENAI_MAX_STOP_SEQUENCES and openai_itself:
        raise refused("stop", f"OpenAI's API accepts at most {OPENAI_MAX_STOP_SEQUENCES} stop sequences")
    if params.reasoning is not None and params.reasoning.budget_tokens is not None:
        raise refused("reasoning.budget_tokens", "the OpenAI API takes a reasoning effort, not a budget")
    _check_documents(params)


def _check_documents(params: GenerationParams) -> None:
    """Refuses a document given by URL: the chat completions API takes a file's data."""
    for index, message in enumerate(params.messages):
        for number, part in enumerate(message.parts):
            if isinstance(part, DocumentPart) and part.url:
                field = f"messages[{index}].parts[{number}]"
                raise refused(field, f"{field}: the OpenAI chat API takes a document's data, not its url")


def _data_url(media_type: str, data: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


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
