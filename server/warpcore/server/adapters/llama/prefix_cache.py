"""A model's prompt cache: the KV cells of earlier prompts' beginnings, saved from a sequence's own KV stream and
restored into the stream of a new generation whose prompt begins with the same tokens, so that it decodes only the
rest.

Prompts enter the KV cache in fixed pieces counted from their first token (the scheduler's prefill), and a beginning
is saved right after the decode of a piece, when the stream holds exactly the pieces so far. Restored into an empty
stream, its cells take the places a fresh prefill gives them, bit for bit, and the remaining pieces decode as they
would have without the cache: the logits, and with them the text, are the same. Used on the model's batching thread
only, except for the counters, which others read."""

from __future__ import annotations

import collections
import ctypes
from collections.abc import Sequence
from dataclasses import dataclass

import llama_cpp

from warpcore.server.adapters.llama.context import NativeContext


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
    saved there too, so that the callers after it find all of their common beginning."""

    def __init__(self, native: NativeContext, *, capacity: int, piece: int, window: int) -> None:
        self._native = native
        self.capacity = capacity
        self._piece = piece
        self._whole_only = window > 0
        self._checkpoint = max(window // piece, 1) * piece
        self._by_key: dict[int, _Prefix] = {}
        self._shared: collections.Counter[int] = collections.Counter()
        """With a sliding window: how many saved beginnings have each piece key, to find where a prompt parts."""
        self._prefixes: list[_Prefix] = []
        self._clock = 0
        self.cells = 0
        """Tokens whose cells the cache holds."""
        self.hits = 0
        self.misses = 0

    def lookup(self, tokens: Sequence[int], keys: Sequence[int]) -> Hit:
        """The longest cached beginning of `tokens` that ends at a piece boundary before its last token (whose
        logits the generation needs decoded)."""
        for depth in range(min(len(keys), (len(tokens) - 1) // self._piece), 0, -1):
            prefix = self._by_key.get(keys[depth - 1])
            length = depth * self._piece
            if prefix is None or (self._whole_only and len(prefix.tokens) != length):
                continue
            if prefix.tokens[:length] == list(tokens[:length]):
                self._touch(prefix)
                prefix.shared = True
                self.hits += 1
                return Hit(prefix, length)
        self.misses += 1
        return MISS

    def restore(self, hit: Hit, sequence: int) -> None:
        """Put the hit's beginning into `sequence`'s empty stream."""
        if hit.prefix is None:
            return
        state = hit.prefix.state
        if llama_cpp.llama_state_seq_set_data(self._native.ctx, state, len(state), sequence) != len(state):
            raise RuntimeError("llama.cpp could not restore a cached prompt")
        if hit.length < len(hit.prefix.tokens):
            self._native.forget(sequence, hit.length)

    def saving_points(self, keys: Sequence[int], hit: Hit) -> tuple[int, ...]:
        """After how many decoded prompt tokens to save the beginning, in order: at the most whole pieces the cache
        can hold, and with a sliding window every `window` tokens before and where the prompt parts from a saved
        one; only past the hit."""
        last = min(len(keys), self.capacity // self._piece) * self._piece
        points: set[int] = {last}
        if self._whole_only:
            points.update(range(self._checkpoint, last, self._checkpoint))
            shared = next((depth for depth in range(len(keys), 0, -1) if keys[depth - 1] in self._shared), 0)
            points.add(min(shared * self._piece, last))
        return tuple(sorted(point for point in points if point > hit.length))

    def save(self, sequence: int, tokens: Sequence[int], keys: Sequence[int], hit: Hit) -> None:
        """Keep the beginning `sequence` holds now: exactly its first `len(keys)` pieces of `tokens`."""
        depth = len(keys)
        length = depth * self._piece
        known = self._by_key.get(keys[-1])
        if known is not None and known.tokens == list(tokens[:length]):
            self._touch(known)
            known.shared = True
            return
        if not self._whole_only and hit.prefix in self._prefixes and hit.length == len(hit.prefix.tokens):
            self._drop(hit.prefix)  # superseded: this one begins with all of it
        while self.cells + length > self.capacity and self._prefixes:
            self._drop(self._to_drop())
        size = llama_cpp.llama_state_seq_get_size(self._native.ctx, sequence)
        state = (ctypes.c_uint8 * size)()
        if llama_cpp.llama_state_seq_get_data(self._native.ctx, state, size, sequence) != size:
            return  # not kept; the generation goes on regardless
        prefix = _Prefix(list(tokens[:length]), list(keys[:depth]), state)
        self._prefixes.append(prefix)
        self._by_key.update(dict.fromkeys(prefix.keys[-1:] if self._whole_only else prefix.keys, prefix))
        if self._whole_only:
            self._shared.update(prefix.keys)
        self.cells += length
        self._touch(prefix)

    def _to_drop(self) -> _Prefix:
        unshared = [prefix for prefix in self._prefixes if not prefix.shared]
        shared_cells = self.cells - sum(len(prefix.tokens) for prefix in unshared)
        candidates = unshared if unshared and shared_cells <= self.capacity // 2 else self._prefixes
        return min(candidates, key=lambda prefix: prefix.last_used)

    def _touch(self, prefix: _Prefix) -> None:
        self._clock += 1
        prefix.last_used = self._clock

    def _drop(self, prefix: _Prefix) -> None:
        self._prefixes.remove(prefix)
        self.cells -= len(prefix.tokens)
        if self._whole_only:
            self._shared -= collections.Counter(prefix.keys)  # keys no saved beginning has any more go
        for depth, key in enumerate(prefix.keys):
            if self._by_key.get(key) is not prefix:
                continue
            del self._by_key[key]
            if not self._whole_only:  # another beginning may share these first pieces: it serves them from now on
                others = (other for other in self._prefixes if depth < len(other.keys) and other.keys[depth] == key)
                if (other := next(others, None)) is not None:
                    self._by_key[key] = other
