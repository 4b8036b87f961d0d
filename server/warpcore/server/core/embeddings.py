"""The values of an Embed call: texts in, one vector each."""

from __future__ import annotations

import dataclasses
import enum
import math
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
    hops: tuple[str, ...] = ()
    """The warpcore servers the request passed through before this one (core/hops.py), for an upstream call."""


@dataclass(frozen=True)
class Embeddings:
    vectors: tuple[tuple[float, ...], ...]
    """vectors[i] belongs to inputs[i]."""
    prompt_tokens: int = 0
    upstream_request_id: str = ""


VALUE_BYTES = 4  # a vector's values are 32-bit floats
VECTOR_FRAMING_BYTES = 8  # the most a response spends on each vector beside its values (its field tags and lengths)
RESPONSE_FRAMING_BYTES = 160
"""The most a response spends beside its vectors: a token count, and a request id of at most bounds.MAX_REQUEST_ID
bytes."""


def response_bytes(count: int, dimensions: int) -> int:
    """The most bytes a response of `count` vectors of `dimensions` values takes."""
    return count * (VALUE_BYTES * dimensions + VECTOR_FRAMING_BYTES) + RESPONSE_FRAMING_BYTES


def response_too_large(count: int, dimensions: int, size: int, limit: int) -> InvalidArgumentError:
    """The refusal of `count` vectors of `dimensions` values that take `size` bytes, over the door's `limit`."""
    most = max(limit - RESPONSE_FRAMING_BYTES, 0) // (VALUE_BYTES * dimensions + VECTOR_FRAMING_BYTES)
    return InvalidArgumentError(
        f"{count} vectors of {dimensions} dimensions take {size} bytes, more than one response may carry ({limit}"
        f" bytes, the server's max message size); send at most {most} inputs per call",
        field="inputs",
        reason="RESPONSE_TOO_LARGE",
        metadata={
            "inputs": str(count),
            "dimensions": str(dimensions),
            "max_response_bytes": str(limit),
            "max_inputs": str(most),  # what a client that splits its inputs needs
        },
    )


def check_response_room(params: EmbedParams, dimensions: int) -> None:
    """Refuse, before any work, inputs whose vectors might not fit in the door's response: counted at the most
    their framing may take, so that no work done is then refused for its size."""
    limit = params.max_response_bytes
    size = response_bytes(len(params.inputs), dimensions)
    if limit is not None and dimensions and size > limit:
        raise response_too_large(len(params.inputs), dimensions, size, limit)


def vectors_flaw(vectors: tuple[tuple[float, ...], ...]) -> str | None:
    """What makes `vectors` no answer to pass on (an upstream chose them): an empty one, lengths that differ, or a
    value that is no finite number (no JSON number either); None when they are sound."""
    lengths = {len(vector) for vector in vectors}
    if 0 in lengths:
        return "an empty vector"
    if len(lengths) > 1:
        return f"vectors of different lengths ({', '.join(map(str, sorted(lengths)))})"
    if not all(math.isfinite(value) for vector in vectors for value in vector):
        return "a value that is no finite number"
    return None


def check_dimensions(params: EmbedParams, embeddings: Embeddings) -> None:
    """Refuse vectors of another length than the `dimensions` asked for: an OpenAI-compatible server that cannot
    shorten its vectors (llama.cpp's) ignores the option, and a caller would index vectors of the wrong size."""
    wanted = params.dimensions
    lengths = sorted({len(vector) for vector in embeddings.vectors} - {wanted})
    if wanted is not None and lengths:
        raise InvalidArgumentError(
            f"this model gives vectors of {lengths[0]} dimensions, not the {wanted} asked for (it cannot change their"
            " length); leave dimensions unset",
            field="dimensions",
            reason="OPTION_UNSUPPORTED",
        )


def normalized(embeddings: Embeddings) -> Embeddings:
    """Each vector scaled to Euclidean length 1; a zero vector stays as it is."""
    return dataclasses.replace(embeddings, vectors=tuple(_unit(vector) for vector in embeddings.vectors))


def _unit(vector: tuple[float, ...]) -> tuple[float, ...]:
    length = math.sqrt(math.fsum(component * component for component in vector))
    return vector if length == 0 else tuple(component / length for component in vector)
