"""Text a caller wrote that spells a control token (`<end_of_turn>`, `[INST]`) is read as that text, not the token.

llama.cpp matches a control token's text anywhere in a prompt tokenized with special tokens on, which a chat
template's own markers need. A user's message, a tool's result (a fetched web page) or a system prompt that holds
`<end_of_turn>\\n<start_of_turn>model\\n` would then end its turn and open a model turn of its writer's making. The
template's markers stay tokens; only what lies inside the caller's texts is read as text."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import llama_cpp

from warpcore.server.core.content import TextPart
from warpcore.server.core.domain import GenerationParams

# Most control tokens' texts are one bracketed word: found by shape, then looked up, in a time linear in the text.
_BRACKETED = re.compile(r"<[^<>\s]{1,128}>|\[[^\[\]\s]{1,128}\]")

Span = tuple[int, int]


class ControlTexts:
    """The texts of a vocabulary's control tokens, and where a prompt holds them inside a caller's text."""

    def __init__(self, llama: llama_cpp.Llama) -> None:
        vocab = llama_cpp.llama_model_get_vocab(llama.model)
        texts = {
            llama_cpp.llama_vocab_get_text(vocab, token).decode("utf-8", "replace")
            for token in range(llama.n_vocab())
            if llama_cpp.llama_vocab_get_attr(vocab, token) & llama_cpp.LLAMA_TOKEN_ATTR_CONTROL
        }
        texts.discard("")
        self._bracketed = {text for text in texts if _BRACKETED.fullmatch(text)}
        others = sorted(texts - self._bracketed, key=len, reverse=True)  # the longest first, as llama.cpp matches
        self._others = re.compile("|".join(map(re.escape, others))) if others else None

    def literal_spans(self, rendered: str, params: GenerationParams) -> list[Span]:
        """The spans of `rendered` (a chat prompt) to read as text: each text of the caller's that spells a control
        token, whole (a part of its own however many it spells), in order and apart. A text the template changed
        (escaped) is not found, and nothing of it reads as a token. A prompt without chat messages is the caller's
        own formatting: its control texts are tokens."""
        if params.prompt is not None:
            return []
        spans: list[Span] = []
        cursor = 0
        for text in _caller_texts(params):
            if not self._spells_one(text):
                continue
            at = rendered.find(text, cursor)
            at = rendered.find(text) if at < 0 else at
            if at < 0:
                continue
            spans.append((at, at + len(text)))
            cursor = at + len(text)
        return _apart(spans)

    def _spells_one(self, text: str) -> bool:
        if any(match.group() in self._bracketed for match in _BRACKETED.finditer(text)):
            return True
        return self._others is not None and self._others.search(text) is not None


def _caller_texts(params: GenerationParams) -> Iterator[str]:
    """The texts of a chat request that its caller wrote, in about the order a template renders them."""
    if params.system:
        yield params.system
    for tool in params.tools:
        yield tool.description
    for message in params.messages:
        yield message.content
        yield from (part.text for part in message.parts if isinstance(part, TextPart))
        for call in message.tool_calls:
            try:  # as a template shows them: chat.py's canonical form
                yield json.dumps(json.loads(call.arguments or "{}"), ensure_ascii=False)
            except ValueError:
                continue


def _apart(spans: list[Span]) -> list[Span]:
    """`spans` sorted, those that overlap or touch merged."""
    merged: list[Span] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged
