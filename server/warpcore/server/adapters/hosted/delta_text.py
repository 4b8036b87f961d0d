"""The text of an API's stream events, as deltas carry it: strings, each character whole.

JSON writes a character beyond the Basic Multilingual Plane as the two escaped halves of its UTF-16 form
("\\ud83d\\ude00"), and a stream may send the halves in two events: decoded apart, each is a lone surrogate, which no
UTF-8 text (a gRPC string, an SSE event) can carry."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any, TypeVar

from warpcore.server.core.bounds import MAX_TOKEN_COUNT
from warpcore.server.core.domain import ReasoningChunk, TextChunk, ToolCallDelta

Delta = TextChunk | ReasoningChunk | ToolCallDelta
"""What an API's stream events add to the answer."""
REPLACEMENT = "\ufffd"
"""What a half without its partner becomes, as bytes a UTF-8 decoder cannot read do."""
_SURROGATE = re.compile("[\ud800-\udfff]")
_Delta = TypeVar("_Delta")
_Key = tuple[type, int]


def string_field(value: object) -> str:
    """An event's field that holds text; anything else makes it an event of the wrong shape (a TypeError, which the
    adapters report as the upstream's malformed stream)."""
    if not isinstance(value, str):
        raise TypeError("a field that is not a string")
    return value


def count_field(value: object) -> int:
    """An event's count of tokens: absent or null is 0, unknown, as compatible servers may leave it; anything but a
    whole number from 0 to MAX_TOKEN_COUNT makes it an event of the wrong shape (a ValueError)."""
    if value is None:
        return 0
    if type(value) is not int or not 0 <= value <= MAX_TOKEN_COUNT:
        raise ValueError(f"a token count that is no whole number from 0 to {MAX_TOKEN_COUNT}")
    return value


def reported_count(value: object) -> int | None:
    """An event's count of tokens as `count_field` reads it, but None, not reported, when absent or null."""
    return None if value is None else count_field(value)


def whole_characters(text: str) -> str:
    """`text` with each pair of halves made the character it encodes, and each half without its partner made
    REPLACEMENT."""
    if _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def _piece(delta: object) -> tuple[_Key, str] | None:
    """The kind of text `delta` carries (each tool call's arguments a kind of their own) and that text."""
    if type(delta) is TextChunk:
        return (TextChunk, delta.refusal), delta.text
    if type(delta) is ReasoningChunk:
        return (ReasoningChunk, 0), delta.text
    if type(delta) is ToolCallDelta:
        return (ToolCallDelta, delta.index), delta.arguments
    return None


def _carries_nothing(delta: object) -> bool:
    """Whether a delta whose only character was kept back says nothing more."""
    if type(delta) is TextChunk:
        return not (delta.text or delta.logprobs)
    if type(delta) is ReasoningChunk:
        return not (delta.text or delta.signature or delta.redacted)
    return type(delta) is ToolCallDelta and not (delta.arguments or delta.id or delta.name)


class SurrogateMender:
    """One stream's deltas with every character whole: a piece of text, reasoning or a call's arguments that ends
    with a first half keeps it back for the next piece of its kind."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: dict[_Key, str] = {}

    def mend(self, deltas: Sequence[_Delta]) -> Sequence[_Delta]:
        """`deltas` as they are, unless a half waits or one of them holds a surrogate."""
        if not self._held and not any(_SURROGATE.search(piece[1]) for piece in map(_piece, deltas) if piece):
            return deltas
        mended: list[_Delta] = []
        for delta in deltas:
            piece = _piece(delta)
            if piece is None:
                mended.append(delta)
                continue
            key, text = piece
            mended += self._unpaired(but=key[0])  # a half that waited past the end of its kind's run
            text = self._held.pop(key, "") + text
            if text and "\ud800" <= text[-1] <= "\udbff":
                self._held[key], text = text[-1], text[:-1]
            field = "arguments" if key[0] is ToolCallDelta else "text"
            whole: _Delta = dataclasses.replace(delta, **{field: whole_characters(text)})  # type: ignore[type-var]
            if not _carries_nothing(whole):
                mended.append(whole)
        return mended

    def unpaired(self) -> list[TextChunk | ReasoningChunk | ToolCallDelta]:
        """A REPLACEMENT for each first half still waiting when the stream ends."""
        return self._unpaired()

    def _unpaired(self, but: type | None = None) -> list[Any]:
        """A REPLACEMENT for each first half waiting in a piece of another kind than `but` (of any, without): text
        whose half waits when a call begins, say, would get its next piece after the call's."""
        ends: list[TextChunk | ReasoningChunk | ToolCallDelta] = []
        for key in [key for key in self._held if key[0] is not but]:
            del self._held[key]
            kind, number = key
            if kind is TextChunk:
                ends.append(TextChunk(REPLACEMENT, refusal=bool(number)))
            elif kind is ReasoningChunk:
                ends.append(ReasoningChunk(REPLACEMENT))
            else:
                ends.append(ToolCallDelta(number, arguments=REPLACEMENT))
        return ends
