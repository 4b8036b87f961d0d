"""A model's prompt cache: the KV cells of earlier prompts' beginnings, saved from a sequence's own KV stream and
restored into the stream of a new generation whose prompt begins with the same tokens, so that it decodes only the
rest.

A beginning is saved when its generation ends, from the stream cut back to its last token, and only where
prefill.py says the cells are those of any other way to the same tokens. Restored into an empty stream, its
cells take the places a fresh prefill gives them, bit for bit, and the rest decodes as it would have without the
cache: the logits, and with them the text, are the same. Used on the model's batching thread only, except for the
counters, which others read."""

from __future__ import annotations

import collections
import ctypes
from collections.abc import Sequence
from dataclasses import dataclass

import llama_cpp

from warpcore.server.adapters.llama.context import NativeContext
from warpcore.server.adapters.llama.prefill import PrefillCalls


def piece_keys(tokens: Sequence[int], piece: int) -> list[int]:
    """One key per whole piece of `tokens`: key i stands for the first (i + 1) x `piece` tokens."""
    keys: list[int] = []
    key = 0
    for start in range(0, len(tokens) - piece + 1, piece):
        key = hash((key, tuple(tokens[start : start + piece])))
        keys.append(key)
    return keys


@dataclass(eq=False)
class _Prefix:
    tokens: list[int]
    keys: list[int]
    """The piece keys of its whole pieces."""
    state: ctypes.Array[ctypes.c_uint8]
    """llama.cpp's saved state of a sequence holding exactly `tokens`."""
    last_used: int = 0
    shared: bool = False
    """Whether another prompt has begun with it since it was saved (a hit, or the same beginning saved again)."""


@dataclass(frozen=True)
class Hit:
    """The cached beginning a generation starts from: the first `length` tokens of `prefix` (none on a miss)."""

    prefix: _Prefix | None = None
    length: int = 0


MISS = Hit()


class PrefixCache:
    """Beginnings of at most `capacity` tokens in all. When a new one needs room, the least recently used goes first;
    but while those that other prompts have begun with hold at most half the cache, the least recently used of the
    others goes first: the long prompts of callers arriving together, each saved last, do not push out what they
    share. (Without a bound, what many shared once would keep the cache from what comes after.)

    Without a sliding window, a saved beginning serves every shorter one too (restored, then cut), so a beginning
    that a longer one extends is dropped when the longer one is kept. With one (`window` tokens, Gemma's local
    layers), llama.cpp saves only the cells a sequence's window still sees: cut shorter, the local layers would miss
    the cells before the cut. A beginning then serves only prompts that begin with all of it, and a prompt is also
    saved every `window` tokens on the way, so that prompts which part from it later, as callers sharing a system
    prompt do, still find most of their common beginning; and where a prompt parts from one already saved, it is
    saved there too, so that the callers after it find all of their common beginning.

    Cut freely (prefill.py) and without a sliding window, a prompt is kept whole but for a short last piece, so
    that the next turn of a conversation decodes only what came after it; otherwise up to its last whole piece.
    With a window, llama.cpp restores the window's cells to the front of an empty stream: the local layers then add
    them up in another order unless the shift is a whole number of SIMD widths, which ends at whole pieces make
    it."""

    def __init__(self, native: NativeContext, calls: PrefillCalls, *, capacity: int, piece: int, window: int) -> None:
        self._native = native
        self._calls = calls
        self.capacity = capacity
        self._piece = piece
        self.window = window
        self._whole_only = window > 0
        self._checkpoint = max(window // piece, 1) * piece
        self._by_key: dict[int, list[_Prefix]] = {}
        """The saved beginnings under each piece key: all of theirs, or with a sliding window their last."""
        self._shared: collections.Counter[int] = collections.Counter()
        """With a sliding window: how many saved beginnings have each piece key, to find where a prompt parts."""
        self._prefixes: list[_Prefix] = []
        self._clock = 0
        self.cells = 0
        """Tokens whose cells the cache holds."""
        self.hits = 0
        self.misses = 0

    def lookup(self, tokens: Sequence[int], keys: Sequence[int], *, beyond: int = 0) -> Hit:
        """The longest cached beginning of `tokens` that prefill.py lets it start from, if longer than `beyond`
        tokens (what the prompt has from elsewhere, counted as a hit)."""
        limit = self._calls.usable(len(tokens), len(tokens))
        if limit < self._piece:
            return MISS  # too short for any beginning the cache keeps to serve (its last token is decoded): no lookup
        for depth in range(min(len(keys), limit // self._piece), beyond // self._piece, -1):
            best = max(
                (self._served(prefix, tokens) for prefix in self._by_key.get(keys[depth - 1], ())),
                key=lambda hit: hit.length,
                default=MISS,
            )
            if best.length > beyond and best.prefix is not None:
                self._touch(best.prefix)
                best.prefix.shared = True
                self.hits += 1
                return best
        if beyond:
            self.hits += 1
        else:
            self.misses += 1
        return MISS

    def _served(self, prefix: _Prefix, tokens: Sequence[int]) -> Hit:
        """How much of `prefix` can serve `tokens`."""
        saved = prefix.tokens
        if self._whole_only:
            whole = self._calls.usable(len(saved), len(tokens)) == len(saved)
            return Hit(prefix, len(saved)) if whole and saved == list(tokens[: len(saved)]) else MISS
        common = next(
            (n for n, (a, b) in enumerate(zip(saved, tokens, strict=False)) if a != b), min(len(saved), len(tokens))
        )
        length = self._calls.usable(common, len(tokens))
        return Hit(prefix, length) if length > 0 else MISS

    def restore(self, hit: Hit, sequence: int) -> None:
        """Put the hit's beginning into `sequence`'s empty stream."""
        if hit.prefix is None:
            return
        state = hit.prefix.state
        if llama_cpp.llama_state_seq_set_data(self._native.ctx, state, len(state), sequence) != len(state):
            raise RuntimeError("llama.cpp could not restore a cached prompt")
        if hit.length < len(hit.prefix.tokens):
            self._native.forget(sequence, hit.length)

    def end_point(self, length: int, keys: Sequence[int]) -> int:
        """Where the beginning a prompt of `length` tokens (whose whole pieces have `keys`) keeps of itself ends:
        at the most the cache can hold, the whole prompt but a short last piece where it may be, else whole pieces."""
        whole = min(len(keys), self.capacity // self._piece) * self._piece
        if self._calls.free and not self._whole_only:
            return min(self._calls.canonical(length), self.capacity)
        return whole

    def saving_points(self, tokens: Sequence[int], keys: Sequence[int], hit: Hit) -> tuple[int, ...]:
        """After how many decoded prompt tokens to save the beginning, in order: at its end point, and with a sliding
        window every `window` tokens before and where the prompt parts from a saved one; only past the hit."""
        last = self.end_point(len(tokens), keys)
        points: set[int] = {last}
        if self._whole_only:
            points.update(range(self._checkpoint, last, self._checkpoint))
            shared = next((depth for depth in range(len(keys), 0, -1) if keys[depth - 1] in self._shared), 0)
            points.add(min(shared * self._piece, last))
        return tuple(sorted(point for point in points if hit.length < point <= len(tokens)))

    def save(self, sequence: int, tokens: Sequence[int], keys: Sequence[int], points: Sequence[int]) -> None:
        """Keep the beginnings of `tokens` (whose whole pieces have `keys`) that end at `points`, in rising order,
        from `sequence`'s stream, which holds at least that many of them: cut down to each point in turn, the last
        first. The cells a stream holds never change once decoded, and with a sliding window llama.cpp keeps every
        cell (swa_full), so each beginning is the one a stream holding exactly those tokens would give. Room for
        them all is made first, so that none pushes out another, nor the beginnings of `tokens` saved before."""
        new: list[int] = []
        for point in points:
            if point < self._piece:
                continue  # shorter than a piece: no key to find it by
            known = self._known(tokens[:point], keys[point // self._piece - 1])
            if known is None:
                new.append(point)
            else:
                known.shared = True
                self._touch(known)
        new = _fitting(new, self.capacity)
        if not new:
            return
        beginnings = self._beginnings_of(tokens[: new[-1]], keys)
        if not self._whole_only:
            for superseded in beginnings:
                self._drop(superseded)  # the longest new one serves all it served
            beginnings = []
        while self.cells + sum(new) > self.capacity and len(self._prefixes) > len(beginnings):
            # Those saved on the way (the prompt's checkpoints, which others share) go last.
            self._drop(self._to_drop(sparing=beginnings))
        if self.cells + sum(new) > self.capacity:
            # Only the prompt's own beginnings are left: of them and the new ones, those `_fitting` keeps.
            lengths = _fitting(sorted([len(prefix.tokens) for prefix in beginnings] + new), self.capacity)
            for beginning in beginnings:
                if len(beginning.tokens) not in lengths:
                    self._drop(beginning)
            new = [point for point in new if point in lengths]
        kept: list[_Prefix] = []
        for point in reversed(new):
            self._native.forget(sequence, point)
            if (prefix := self._keep(sequence, tokens[:point], keys[: point // self._piece])) is not None:
                kept.append(prefix)
        for prefix in reversed(kept):  # the longest used last: the first to keep when room runs short
            self._touch(prefix)

    def _beginnings_of(self, tokens: Sequence[int], keys: Sequence[int]) -> list[_Prefix]:
        """The saved beginnings that `tokens` (whose whole pieces have `keys`) begin with, each found under its last
        key."""
        return [
            prefix
            for depth in range(1, len(tokens) // self._piece + 1)
            for prefix in self._by_key.get(keys[depth - 1], ())
            if len(prefix.keys) == depth and prefix.tokens == list(tokens[: len(prefix.tokens)])
        ]

    def _known(self, tokens: Sequence[int], last_key: int) -> _Prefix | None:
        return next((known for known in self._by_key.get(last_key, ()) if known.tokens == list(tokens)), None)

    def _keep(self, sequence: int, tokens: Sequence[int], keys: Sequence[int]) -> _Prefix | None:
        """Save the beginning `sequence` holds now: exactly `tokens`, whose whole pieces have `keys`."""
        size = llama_cpp.llama_state_seq_get_size(self._native.ctx, sequence)
        state = (ctypes.c_uint8 * size)()
        if llama_cpp.llama_state_seq_get_data(self._native.ctx, state, size, sequence) != size:
            return None  # not kept; the generation is over regardless
        prefix = _Prefix(list(tokens), list(keys), state)
        self._prefixes.append(prefix)
        for key in self._index(prefix):
            self._by_key.setdefault(key, []).append(prefix)
        if self._whole_only:
            self._shared.update(prefix.keys)
        self.cells += len(tokens)
        return prefix

    def _index(self, prefix: _Prefix) -> list[int]:
        return prefix.keys[-1:] if self._whole_only else prefix.keys

    def _to_drop(self, sparing: Sequence[_Prefix]) -> _Prefix:
        """The beginning to drop for room: by the policy above, among those not `sparing` while there are others."""
        prefixes = [prefix for prefix in self._prefixes if prefix not in sparing] or self._prefixes
        unshared = [prefix for prefix in prefixes if not prefix.shared]
        shared_cells = sum(len(prefix.tokens) for prefix in self._prefixes if prefix.shared)
        candidates = unshared if unshared and shared_cells <= self.capacity // 2 else prefixes
        return min(candidates, key=lambda prefix: prefix.last_used)

    def _touch(self, prefix: _Prefix) -> None:
        self._clock += 1
        prefix.last_used = self._clock

    def _drop(self, prefix: _Prefix) -> None:
        self._prefixes.remove(prefix)
        self.cells -= len(prefix.tokens)
        if self._whole_only:
            self._shared -= collections.Counter(prefix.keys)  # keys no saved beginning has any more go
        for key in self._index(prefix):
            under = self._by_key[key]
            under.remove(prefix)
            if not under:
                del self._by_key[key]


def _fitting(points: list[int], capacity: int) -> list[int]:
    """Of the beginnings ending at `points` (rising), those kept when all cannot fit in `capacity` tokens: the
    longest, which a conversation's next turn begins with, then each shorter one that still fits, the longest first.
    (With a sliding window a beginning serves only prompts that begin with all of it: a shorter one that fits serves
    prompts the longest cannot, such as the system prompt alone.)"""
    kept: list[int] = []
    room = capacity
    for point in reversed(points):
        if point <= room:
            kept.append(point)
            room -= point
    return kept[::-1]
