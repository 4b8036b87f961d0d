"""How a prompt's tokens are cut into llama.cpp calls, and so which of its beginnings the prompt cache may serve.

A call of at least MIN_CALL_ROWS rows gives each row the same KV cells and logits however the prompt around it was
cut, where the load-time probe confirms it (invariance.py): then prompts are cut freely, a lone one into few large
calls (each call costs a fixed time beside its rows), and any beginning decoded that way serves a later prompt,
provided the rest it leaves is at least MIN_CALL_ROWS long. Otherwise prompts go in PREFILL_PIECE pieces counted
from their first token, the same whatever else runs, and only beginnings ending where a piece does can be served."""

from __future__ import annotations

from dataclasses import dataclass

from warpcore.server.adapters.llama.context import LONE_PREFILL_PIECE, MIN_CALL_ROWS, PREFILL_PIECE


@dataclass(frozen=True)
class PrefillCalls:
    free: bool
    """Whether calls of MIN_CALL_ROWS rows or more may be cut anywhere (the model passed the probe)."""

    @property
    def least_rest(self) -> int:
        """The fewest prompt tokens a cached beginning may leave to decode: the last one's logits are needed, and
        cut freely the rest must fill a call of MIN_CALL_ROWS rows, as it would have without the cache."""
        return MIN_CALL_ROWS if self.free else 1

    def end(self, prefilled: int, stop: int, *, alone: bool) -> int:
        """Where the call that decodes the prompt from `prefilled` on ends. `stop` is where one must end (an image
        or the prompt's end). `alone`: no other generation waits for its next token, so the call may be longer than
        a piece."""
        if not self.free:
            return min(prefilled + PREFILL_PIECE, stop)
        end = min(stop, prefilled + (LONE_PREFILL_PIECE if alone else PREFILL_PIECE))
        if 0 < stop - end < MIN_CALL_ROWS:  # leave the next call rows enough
            end = stop - MIN_CALL_ROWS
        return end
