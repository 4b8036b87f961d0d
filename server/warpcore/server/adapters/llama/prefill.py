"""How a prompt's tokens are cut into llama.cpp calls, and so which of its beginnings the prompt cache may serve.

A call of at least MIN_CALL_ROWS rows gives each row the same KV cells and logits however the prompt around it was
cut, where the load-time probe confirms it (invariance.py): then prompts are cut freely, a lone one into few large
calls (each call costs a fixed time beside its rows), and any beginning decoded that way serves a later prompt,
provided the rest it leaves makes calls that long. Only a last piece shorter than that goes alone, as it did in
pieces, so a prompt's text is the one PREFILL_PIECE pieces gave it. Otherwise prompts go in PREFILL_PIECE pieces
counted from their first token, the same whatever else runs, and only beginnings ending where a piece does can be
served."""

from __future__ import annotations

from dataclasses import dataclass

from warpcore.server.adapters.llama.context import LONE_PREFILL_PIECE, MIN_CALL_ROWS, PREFILL_PIECE


@dataclass(frozen=True)
class PrefillCalls:
    free: bool
    """Whether calls of MIN_CALL_ROWS rows or more may be cut anywhere (the model passed the probe)."""

    def end(self, prefilled: int, length: int, *, alone: bool) -> int:
        """Where the call that decodes the prompt from `prefilled` on ends, toward `length` (where one must end: an
        image or the prompt's end). `alone`: no other generation waits for its next token, so the call may be
        longer than a piece."""
        if not self.free:
            return min(prefilled + PREFILL_PIECE, length)
        stop = self._short_last_piece(length)
        if prefilled >= stop:
            stop = length
        end = min(stop, prefilled + (LONE_PREFILL_PIECE if alone else PREFILL_PIECE))
        if 0 < stop - end < MIN_CALL_ROWS:  # leave the next call rows enough
            end = stop - MIN_CALL_ROWS
        return end

    def usable(self, cached: int, length: int) -> int:
        """How much of a cached beginning `cached` tokens long a prompt of `length` tokens may start from, so that
        the rest decodes into the cells and logits it gets without the cache: in pieces, up to a piece boundary
        before its last token; cut freely, up to where the rest makes calls of MIN_CALL_ROWS rows or more, its
        short last piece apart."""
        if not self.free:
            return min(cached, length - 1) // PREFILL_PIECE * PREFILL_PIECE
        short = self._short_last_piece(length)
        if short == length:
            return max(min(cached, length - MIN_CALL_ROWS), 0)
        usable = min(cached, short)
        return max(short - MIN_CALL_ROWS, 0) if 0 < short - usable < MIN_CALL_ROWS else usable

    def may_stop_at(self, prefilled: int, point: int, length: int) -> bool:
        """Whether a call from `prefilled` may end at `point`, before where `end` puts it, and the prompt still get
        the cells and logits it gets without the stop: cut freely, when that call and the rest keep calls of
        MIN_CALL_ROWS rows or more, its short last piece apart; in pieces, never (a piece ends where it ends)."""
        stop = self._short_last_piece(length)
        fits = point == stop or stop - point >= MIN_CALL_ROWS
        return self.free and point - prefilled >= MIN_CALL_ROWS and point <= stop and fits

    def canonical(self, length: int) -> int:
        """How many of a prompt's first tokens, once it is decoded, have the cells any other way of decoding them
        would give: cut freely, all but a short last piece (a call of fewer than MIN_CALL_ROWS rows gives its rows
        other cells); in pieces, its whole pieces."""
        return self._short_last_piece(length) if self.free else length // PREFILL_PIECE * PREFILL_PIECE

    @staticmethod
    def _short_last_piece(length: int) -> int:
        """Where a prompt's last piece begins if it is shorter than MIN_CALL_ROWS, else `length`. Decoded alone, as
        in pieces, it gets the cells and logits pieces give it: a prompt cut freely gets the text it always had."""
        start = (length - 1) // PREFILL_PIECE * PREFILL_PIECE
        return start if 0 < length - start < MIN_CALL_ROWS else length


PIECES = PrefillCalls(free=False)
"""Every prompt in pieces from its first token, or from an image's end: a prompt with images, or a model that fails
the probe."""
