"""Deltas cut into pieces a gRPC frame can carry. A backend may hand over any length of text at once (an upstream's
single event, or the deltas joined for a caller that reads slower than its backend streams), where grpc refuses to
send a message over the server's --max-message-bytes and ends the call with no result frame."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from warpcore.server.core.domain import ReasoningChunk, TextChunk, ToolCallDelta

Delta = TextChunk | ReasoningChunk | ToolCallDelta
_SHARE = 8
"""A piece's characters take at most this fraction of a frame's bytes: UTF-8 spends up to 4 bytes on a character,
and the rest of the frame (a call's id and name, the prompt's usage, log-probabilities) keeps the other half."""


def piece_chars(max_message_bytes: int) -> int:
    """The most characters of text one frame carries, under the server's limit on a message."""
    return max(1, max_message_bytes // _SHARE)


def pieces(delta: Delta, max_chars: int) -> Sequence[Delta]:
    """`delta` alone when its text fits, else cut in order: a call's id and name on its first piece, a text's
    log-probabilities and a reasoning block's signature on its last."""
    text = delta.arguments if isinstance(delta, ToolCallDelta) else delta.text
    if len(text) <= max_chars:
        return (delta,)
    cuts = [text[start : start + max_chars] for start in range(0, len(text), max_chars)]
    if isinstance(delta, ToolCallDelta):
        rest = [ToolCallDelta(delta.index, arguments=cut) for cut in cuts[1:]]
        return [dataclasses.replace(delta, arguments=cuts[0]), *rest]
    head: list[Delta] = [
        TextChunk(cut, refusal=delta.refusal) if isinstance(delta, TextChunk) else ReasoningChunk(cut)
        for cut in cuts[:-1]
    ]
    return [*head, dataclasses.replace(delta, text=cuts[-1])]
