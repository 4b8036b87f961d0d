"""What a local model is doing now and what its prompt cache has done, as its backend reports them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Occupancy:
    """What a local model is doing now, kept up to date by its backend (read by metrics scrapes, on their thread)."""

    running: int = 0
    """Generations decoding."""
    waiting: int = 0
    """Generations admitted to the model, waiting for a slot of its context."""
    cells_used: int = 0
    """KV cache cells holding a token of a running generation."""
    cells: int = 0
    """KV cache cells in all."""


@dataclass(frozen=True)
class PromptCacheStats:
    """A model's prompt cache so far: lookups that found a cached beginning or none, and the cells it holds; all 0
    for a cache that is off."""

    hits: int = 0
    misses: int = 0
    cells: int = 0
    capacity: int = 0
