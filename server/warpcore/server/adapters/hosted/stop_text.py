"""A request's stop sequences held on a hosted model's answer. They are sent to the API, but many OpenAI-compatible
servers honour `stop` loosely and stream on past one: the answer's text is scanned as a local model's is, and ends
before the first stop sequence, which ends the stream. Reasoning, a call's arguments and a refusal are not scanned;
each parts two runs of the answer's text, so text held back as the possible start of a stop sequence comes before it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

from warpcore.server.adapters.hosted.delta_text import Delta
from warpcore.server.core.domain import TextChunk
from warpcore.server.core.stop_scanner import StopScanner
from warpcore.server.core.tokens import PromptUsage, TokenLogprob

Piece = Delta | PromptUsage
Mend = Callable[[Sequence[Piece]], Sequence[Piece]]


class StopSequenceReachedError(Exception):
    """Raised once the text before a stop sequence is passed on: reading the stream ends there, the answer complete."""

    def __init__(self, sequence: str) -> None:
        super().__init__(sequence)
        self.sequence = sequence


class StopCut:
    """One stream's deltas with its answer text cut before the first stop sequence. The logprobs of a token go with
    the text that holds it whole (a piece of text held back keeps its tokens back); those of the tokens that complete
    a stop sequence are no part of the answer."""

    __slots__ = ("_reached", "_scanner", "_stops", "_tokens", "_uncovered")

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = bool(stops)
        self._scanner = StopScanner(stops)
        self._reached = False
        self._tokens: list[TokenLogprob] = []
        """The logprobs of the tokens whose text is not all passed on yet."""
        self._uncovered = 0
        """Bytes of text passed on that none of the tokens passed on spells."""

    def after(self, mend: Mend) -> Callable[[Sequence[Piece]], Iterable[Piece]]:
        """`mend`'s deltas, cut (the scanner reads whole characters); without stop sequences, `mend` itself: the hosted
        stream is the gateway's busiest path, and a request that gives none costs nothing more per event."""
        if not self._stops:
            return mend
        return lambda deltas: self.cut(mend(deltas))

    def cut(self, deltas: Iterable[Piece]) -> Iterator[Piece]:
        """`deltas` up to a stop sequence, then StopSequenceReachedError; text that could begin one is held back."""
        for delta in deltas:
            if type(delta) is not TextChunk or delta.refusal:
                yield from self.rest(())
                yield delta
                continue
            self._tokens += delta.logprobs
            text, found = self._scanner.feed(delta.text)
            if text:
                yield self._chunk(text)
            if found is not None:
                self._reached = True
                raise StopSequenceReachedError(found)

    def rest(self, deltas: Sequence[Piece]) -> list[Piece]:
        """The text held back as the possible start of a stop sequence, with every token not passed on yet, then
        `deltas` (a stream's last, its halves of characters that never got their partners): the run of text is over.
        Nothing once a stop sequence was reached: all that came after it."""
        if self._reached:
            return []
        held = self._scanner.flush()
        ended: list[Piece] = [TextChunk(held, tuple(self._tokens))] if held or self._tokens else []
        self._tokens.clear()
        self._uncovered = 0
        return [*ended, *deltas]

    def _chunk(self, text: str) -> TextChunk:
        """`text` with the tokens it completes."""
        self._uncovered += len(text.encode())
        whole = 0
        for token in self._tokens:
            if len(token.token) > self._uncovered:
                break
            self._uncovered -= len(token.token)
            whole += 1
        tokens = tuple(self._tokens[:whole])
        del self._tokens[:whole]
        return TextChunk(text, tokens)
