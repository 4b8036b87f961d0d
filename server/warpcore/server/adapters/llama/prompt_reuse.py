"""Where a generation's prompt starts from: the cells its slot still holds of the prompt it ran before, kept in
place, or a beginning the prompt cache restores; and what a prompt leaves behind when its generation ends.

A slot whose generation ends keeps the cells of its prompt, but for a short last piece (prefill.py), where they
are. The next turn of a conversation begins with that prompt and decodes only the answer and the new question,
where a beginning restored from the cache would, with a sliding window, end at a whole piece, and decode the rest
of that piece again (prefix_cache.py). The answer's cells go: decoded a token per call, they are not those a
prefill gives, and a prompt that reused them would get another text. Kept in place, the prompt's cells are those a
fresh prefill puts there, in the same cells of the stream, so the logits are bit for bit those without any cache.

Saving a beginning into the cache cuts its stream back to it, so a slot keeps its prompt only when the beginnings
still to save are its own: where this prompt ends and where the prompts before it in the slot ended, which only a
conversation coming back needs. They wait in the slot until another prompt takes it or begins like it, and are
saved then. Beginnings that other callers may share (the cache's checkpoints, where prompts part) are saved as the
prefill passes them, from a stream that then holds exactly them: in the cache while the generation runs, for
callers who come meanwhile, and none left to cut the prompt short when it ends. One that no prefill call can end at
is saved when the generation ends, and the slot then keeps nothing. Used on the model's batching thread only, but
for `ahead_in`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from warpcore.server.adapters.llama.context import MIN_CALL_ROWS, PREFILL_PIECE, NativeContext
from warpcore.server.adapters.llama.prefill import PrefillCalls
from warpcore.server.adapters.llama.prefix_cache import MISS, Hit, PrefixCache
from warpcore.server.adapters.llama.prompt import PreparedPrompt


@dataclass(frozen=True)
class Start:
    """How a generation started: the beginning it did not decode, and the beginnings to save when it ends."""

    hit: Hit
    saving_points: tuple[int, ...] = ()
    """In rising order, each at most the prompt's length."""
    own: frozenset[int] = frozenset()
    """Those of `saving_points` that only a conversation coming back needs."""
    whole_from: int = 0
    """The shortest beginning a later prompt may start from in place in this stream (see _Kept.whole_from)."""


NOT_CACHED = Start(MISS)

AHEAD_AFTER_SECONDS = 0.05
"""How long a model with nothing to do waits after a conversation's turn before decoding its answer ahead. A
program sends the next turn at once: its prompt then decodes the answer with its question, in one call rather than
two, with no call of a guess ahead of it. A person takes seconds, during which the answer decodes ahead and the
next turn's first token waits only for its question."""


@dataclass(frozen=True)
class _Kept:
    tokens: list[int]
    """Exactly the tokens whose cells the slot's stream holds: the prompt's, then those decoded ahead."""
    keys: list[int]
    unsaved: tuple[int, ...]
    """Beginnings of `tokens` still to save into the cache, in rising order."""
    ahead: tuple[int, ...] = ()
    """What a conversation's next prompt most likely continues `tokens` with: the prompt's short last piece and
    the answer, to decode while the model has nothing else to do."""
    ahead_from: float = 0.0
    """When decoding ahead may begin (time.monotonic())."""
    whole_from: int = 0
    """The shortest beginning of `tokens` a prompt may start from in place: with a sliding window, where the stream
    was restored from the cache (its local layers hold only the window's cells before that point, and a prompt
    starting earlier would miss some its window sees); else 0."""


class PromptReuse:
    """The prompts a model's free slots keep, and the prompt cache behind them."""

    def __init__(self, native: NativeContext, calls: PrefillCalls, cache: PrefixCache, *, context_size: int) -> None:
        self._native = native
        self._calls = calls
        self.cache = cache
        self._context_size = context_size
        self._kept: dict[int, _Kept] = {}

    def holds(self, slot: int) -> bool:
        """Whether `slot`'s stream keeps a prompt: then its cells must stay when its generation is released."""
        return slot in self._kept

    def start(self, slot: int, tokens: Sequence[int], keys: Sequence[int]) -> Start:
        """Put into `slot`'s stream the longest beginning of `tokens` there is (none without `keys`: a prompt kept
        out of the cache), the rest of the stream empty."""
        for other, held in list(self._kept.items()):
            if other != slot and held.unsaved and keys and _common(held.tokens, tokens) >= held.unsaved[0]:
                # This prompt shares a beginning that slot still waits to save: saved now, the cache may serve it.
                self.cache.save(other, held.tokens, held.keys, held.unsaved)
                self._native.forget(other, held.unsaved[0])
                self._kept[other] = _Kept(held.tokens[: held.unsaved[0]], held.keys, (), whole_from=held.whole_from)
        kept = self._kept.pop(slot, None)
        in_place = self._calls.usable(_common(kept.tokens, tokens), len(tokens)) if kept and keys else 0
        if in_place < PREFILL_PIECE or (kept is not None and in_place < kept.whole_from):
            in_place = 0  # a few tokens (a BOS) in common save nothing worth a hit; see _Kept.whole_from
        hit = self.cache.lookup(tokens, keys, beyond=in_place) if keys else MISS
        carried: tuple[int, ...] = ()
        if kept is not None and hit.prefix is None and in_place:
            self.cache.save(slot, kept.tokens, kept.keys, tuple(point for point in kept.unsaved if point > in_place))
            carried = tuple(point for point in kept.unsaved if point <= in_place)
            self._native.forget(slot, in_place)
            hit = Hit(None, in_place)
            whole_from = kept.whole_from
        else:
            if kept is not None:
                self.cache.save(slot, kept.tokens, kept.keys, kept.unsaved)
            self._native.forget(slot)
            self.cache.restore(hit, slot)
            whole_from = hit.length if self.cache.window else 0
        if not keys:
            return NOT_CACHED
        points = self.cache.saving_points(tokens, keys, hit)
        own = {*carried, self.cache.end_point(len(tokens), keys)}
        return Start(hit, tuple(sorted({*points, *carried})), frozenset(own), whole_from)

    def call_end(self, start: Start, prefilled: int, end: int, length: int) -> int:
        """Where the prefill call from `prefilled` ends: at `end`, or before it at a beginning to save as the prefill
        passes it, where prefill.py lets a call stop."""
        for point in start.saving_points:
            if prefilled < point < end and point not in start.own and self._calls.may_stop_at(prefilled, point, length):
                return point
        return end

    def passed(self, slot: int, prompt: PreparedPrompt, start: Start, prefilled: int) -> Start:
        """After a prefill call of `prompt` that ended at `prefilled`: save the beginning to save there, unless only
        its conversation needs it, and say how the generation started without it."""
        if prefilled not in start.saving_points or prefilled in start.own:
            return start
        self.cache.save(slot, prompt.tokens, prompt.piece_keys, (prefilled,))
        return replace(start, saving_points=tuple(point for point in start.saving_points if point != prefilled))

    def end(
        self,
        slot: int,
        tokens: Sequence[int],
        keys: Sequence[int],
        start: Start,
        prefilled: int,
        answer: Sequence[int] = (),
    ) -> None:
        """When a generation that started so ends, having decoded `prefilled` prompt tokens and sampled `answer`
        (none: it did not end normally): keep its prompt in the slot while the beginnings left to save are its own,
        else save them now. A prompt that began like an earlier one, as a conversation's turns do, is also to be
        decoded ahead with its answer. The slot's other cells are the caller's to release.

        With a sliding window, llama.cpp keeps every cell of a stream for the local layers too (swa_full), and they
        attend over all of them at every later step, where a stream restored from the cache holds only the window's.
        So a prompt that decoded more than a window's cells is not kept: the next turn restores its end, and decodes
        the rest faster than it would after all of them."""
        points = tuple(point for point in start.saving_points if point <= prefilled)
        kept = self._calls.canonical(len(tokens))
        waiting = tuple(point for point in points if point < kept)  # saved now, each would cut the prompt short
        window = self.cache.window
        compact = not window or prefilled - start.hit.length <= window
        if answer and keys and kept and prefilled == len(tokens) and compact and start.own.issuperset(waiting):
            self.cache.save(slot, tokens, keys, tuple(point for point in points if point >= kept))
            self._native.forget(slot, kept)
            ahead = (*tokens[kept:], *answer) if start.hit.length and self._calls.free else ()
            due = time.monotonic() + AHEAD_AFTER_SECONDS
            self._kept[slot] = _Kept(list(tokens[:kept]), list(keys), waiting, ahead, due, start.whole_from)
        else:
            self.cache.save(slot, tokens, keys, points)

    def ahead_in(self) -> float | None:
        """Seconds until a kept prompt may be decoded ahead, if one waits to be (read from any thread)."""
        due = [kept.ahead_from for kept in list(self._kept.values()) if kept.ahead]
        return min(due) - time.monotonic() if due else None

    def decode_ahead(self) -> None:
        """Decode the next piece of what a kept prompt's conversation most likely sends next, into its slot, in a
        call of MIN_CALL_ROWS rows or more (prefill.py), so that the cells are those the next prompt's own prefill
        would give. A generation that comes meanwhile waits for this one call at most."""
        slot, kept = min(
            ((slot, kept) for slot, kept in self._kept.items() if kept.ahead), key=lambda k: k[1].ahead_from
        )
        start, ahead = len(kept.tokens), kept.ahead[: self._context_size - 1 - len(kept.tokens)]
        rows = min(len(ahead), PREFILL_PIECE)
        if 0 < len(ahead) - rows < MIN_CALL_ROWS:
            rows = len(ahead) - MIN_CALL_ROWS  # the next call keeps its rows
        if rows < MIN_CALL_ROWS:
            self._kept[slot] = replace(kept, ahead=())  # too little left for a call of its own
            return
        for position, token in enumerate(ahead[:rows], start):
            self._native.put(token, position, slot, logits=False)
        if self._native.decode():
            self._kept[slot] = replace(kept, tokens=[*kept.tokens, *ahead[:rows]], ahead=ahead[rows:])
        else:
            self._native.forget(slot, start)
            self._kept[slot] = replace(kept, ahead=())


def _common(saved: Sequence[int], tokens: Sequence[int]) -> int:
    """How many first tokens the two have in common."""
    return next(
        (n for n, (a, b) in enumerate(zip(saved, tokens, strict=False)) if a != b), min(len(saved), len(tokens))
    )
