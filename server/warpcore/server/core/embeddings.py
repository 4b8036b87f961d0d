"""The values of an Embed call: texts in, one vector each."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Pooling(enum.IntEnum):
    """llama.cpp's LLAMA_POOLING_TYPE_* values that give one vector per text."""

    MEAN = 1
    CLS = 2
    LAST = 3


@dataclass(frozen=True)
class EmbedParams:
    """One Embed call: texts in, one vector each."""

    inputs: tuple[str, ...]
    dimensions: int | None = None
    normalize: bool = True
    truncate: bool = False
    """Cut an input longer than the context rather than refuse it."""
    timeout: float | None = None


@dataclass(frozen=True)
class Embeddings:
    vectors: tuple[tuple[float, ...], ...]
    """vectors[i] belongs to inputs[i]."""
    prompt_tokens: int = 0
    upstream_request_id: str = ""
