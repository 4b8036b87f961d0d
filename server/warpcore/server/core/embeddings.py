"""The values of an Embed call: texts in, one vector each."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from warpcore.server.core.errors import InvalidArgumentError


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
    truncate_option: str | None = None
    """How the caller's door names `truncate`, for a refusal to advise it; None where the door has none (the OpenAI
    embeddings API)."""
    timeout: float | None = None
    max_response_bytes: int | None = None
    """The most bytes the door's response may take (gRPC's message size), None for no bound."""


@dataclass(frozen=True)
class Embeddings:
    vectors: tuple[tuple[float, ...], ...]
    """vectors[i] belongs to inputs[i]."""
    prompt_tokens: int = 0
    upstream_request_id: str = ""


VALUE_BYTES = 4  # a vector's values are 32-bit floats
VECTOR_FRAMING_BYTES = 8  # the most a response spends on each vector beside its values (its field tags and lengths)


def response_too_large(count: int, dimensions: int, size: int, limit: int) -> InvalidArgumentError:
    """The refusal of `count` vectors of `dimensions` values that take `size` bytes, over the door's `limit`."""
    most = limit // (VALUE_BYTES * dimensions + VECTOR_FRAMING_BYTES)
    return InvalidArgumentError(
        f"{count} vectors of {dimensions} dimensions take {size} bytes, more than one response may carry ({limit}"
        f" bytes, the server's max message size); send at most {most} inputs per call",
        field="inputs",
        reason="RESPONSE_TOO_LARGE",
        metadata={"inputs": str(count), "dimensions": str(dimensions), "max_response_bytes": str(limit)},
    )


def check_response_room(params: EmbedParams, dimensions: int) -> None:
    """Refuse, before any work, inputs whose vectors' values alone would not fit in the door's response."""
    limit = params.max_response_bytes
    values_bytes = len(params.inputs) * dimensions * VALUE_BYTES
    if limit is not None and dimensions and values_bytes > limit:
        raise response_too_large(len(params.inputs), dimensions, values_bytes, limit)
