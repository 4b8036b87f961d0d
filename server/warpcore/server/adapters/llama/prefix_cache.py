"""A model's prompt cache: the KV cells of earlier prompts' beginnings, kept under sequence ids of their own and
shared with a new generation whose prompt begins with the same tokens, so that it decodes only the rest.

Prompts enter the KV cache in fixed pieces counted from their first token (the scheduler's prefill), and a cached
beginning always ends at a piece boundary: a generation that reuses one decodes the remaining pieces exactly as it
would have without the cache, so its cells, its logits and its text are the same. Used on the model's batching
thread only, except for the counters, which others read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import llama_cpp

from warpcore.server.adapters.llama.context import NativeContext

CACHED_PREFIXES = 16
"""Beginnings one model keeps at most (each takes a llama.cpp sequence id of its own)."""


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
    sequence: int
    tokens: list[int]
    keys: list[int]
    parent: _Prefix | None
    """The prefix whose cells this one's first `shared` tokens are; kept while this one is."""
    shared: int
    children: int = 0
    last_used: int = 0

    @property
    def own_cells(self) -> int:
        return len(self.tokens) - self.shared


@dataclass(frozen=True)
class Hit:
    """The cached beginning a generation starts from: `length` tokens of `prefix` (none on a miss)."""

    prefix: _Prefix | None = None
    length: int = 0


MISS = Hit()


class PrefixCache:
    """At most `capacity` tokens' cells in at most CACHED_PREFIXES beginnings; the least recently used beginning
    that no other one builds on goes first. Cells that a running generation shares stay until it ends, whatever
    the cache drops."""

    def __init__(self, native: NativeContext, *, first_sequence: int, capacity: int, piece: int) -> None:
        self._native = native
        self.capacity = capacity
        self._piece = piece
        self._free = list(range(first_sequence + CACHED_PREFIXES - 1, first_sequence - 1, -1))
        self._by_key: dict[int, _Prefix] = {}
        self._prefixes: list[_Prefix] = []
        self._clock = 0
        self.cells = 0
        """Cells the cache holds."""
        self.hits = 0
        self.misses = 0

    def lookup(self, tokens: Sequence[int], keys: Sequence[int]) -> Hit:
        """The longest cached beginning of `tokens` that ends at a piece boundary before its last token (whose
        logits the generation needs decoded)."""
        for depth in range(min(len(keys), (len(tokens) - 1) // self._piece), 0, -1):
            prefix = self._by_key.get(keys[depth - 1])
            length = depth * self._piece
            if prefix is not None and prefix.tokens[:length] == list(tokens[:length]):
                self._touch(prefix)
                self.hits += 1
                return Hit(prefix, length)
        self.misses += 1
        return MISS

    def attach(self, hit: Hit, sequence: int) -> None:
        """Give `sequence` (empty) the cells of the hit's beginning."""
        if hit.prefix is not None:
            llama_cpp.llama_memory_seq_cp(self._native.memory, hit.prefix.sequence, sequence, 0, hit.length)

    def keep(self, sequence: int, tokens: Sequence[int], keys: Sequence[int], hit: Hit) -> None:
        """Keep the whole pieces of `sequence`'s prompt (`tokens`, all decoded), which began with `hit`: as many as
        the cache holds."""
        # The beginning it started from may have been dropped meanwhile: then none of its cells are the cache's.
        parent = hit.prefix if hit.prefix in self._prefixes else None
        shared = hit.length if parent is not None else 0
        depth = min(len(keys), (shared + self.capacity) // self._piece)
        length = depth * self._piece
        known = self._by_key.get(keys[depth - 1]) if depth else None
        if length <= hit.length or (known is not None and known.tokens == list(tokens[:length])):
            if known is not None:
                self._touch(known)
            return
        if not self._make_room(length - shared, keeping=parent):
            return
        prefix = _Prefix(self._free.pop(), list(tokens[:length]), list(keys[:depth]), parent, shared)
        llama_cpp.llama_memory_seq_cp(self._native.memory, sequence, prefix.sequence, 0, length)
        if parent is not None:
            parent.children += 1
        self._prefixes.append(prefix)
        self._by_key.update(dict.fromkeys(prefix.keys, prefix))
        self.cells += prefix.own_cells
        self._touch(prefix)

    def _touch(self, prefix: _Prefix) -> None:
        self._clock += 1
        prefix.last_used = self._clock

    def _make_room(self, cells: int, *, keeping: _Prefix | None) -> bool:
        while self.cells + cells > self.capacity or not self._free:
            leaves = [p for p in self._prefixes if p.children == 0 and p is not keeping]
            if not leaves:
                return False
            self._drop(min(leaves, key=lambda p: p.last_used))
        return True

    def _drop(self, prefix: _Prefix) -> None:
        llama_cpp.llama_memory_seq_rm(self._native.memory, prefix.sequence, -1, -1)
        self._prefixes.remove(prefix)
        self._free.append(prefix.sequence)
        self.cells -= prefix.own_cells
        parent = prefix.parent
        if parent is not None:
            parent.children -= 1
        for depth, key in enumerate(prefix.keys, start=1):
            if self._by_key.get(key) is prefix:
                if parent is not None and depth * self._piece <= prefix.shared:
                    self._by_key[key] = parent  # the same tokens, still cached there
                else:
                    del self._by_key[key]
