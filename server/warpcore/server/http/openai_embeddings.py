"""OpenAI embeddings requests into Embed calls and their vectors back: `input` as text or texts, `dimensions`, and
`encoding_format` float or base64 (little-endian float32, what the openai SDK asks for unless told otherwise)."""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass
from typing import Any

from warpcore.server.core.bounds import quoted
from warpcore.server.core.embeddings import Embeddings, EmbedParams
from warpcore.server.core.engine import Engine
from warpcore.server.core.errors import WarpcoreError
from warpcore.server.http import openai_ignored
from warpcore.server.http.fields import Json, integer, refuse, text
from warpcore.server.http.members import OPENAI_EMBEDDINGS

_ENCODINGS = ("float", "base64")
_INPUTS = "inputs"
"""The domain's name of the texts, which this dialect calls `input`."""


@dataclass(frozen=True)
class EmbeddingsRequest:
    model: str
    params: EmbedParams
    encoding: str


def embeddings_request(body: Json) -> EmbeddingsRequest:
    """`user` is checked and ignored, as the door checks and ignores it in chat; an unknown field is refused."""
    OPENAI_EMBEDDINGS.check(body)
    openai_ignored.check_user(body)
    encoding = text(body, "encoding_format") or "float"
    if encoding not in _ENCODINGS:
        raise refuse("encoding_format", f"unknown encoding {quoted(encoding)}; expected float or base64")
    params = EmbedParams(inputs=_inputs(body.get("input")), dimensions=integer(body, "dimensions"))
    return EmbeddingsRequest(text(body, "model", required=True) or "", params, encoding)


def _inputs(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if value is None:
        raise refuse("input", "is required")
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        # Token-id inputs (arrays of integers) are tokens of OpenAI's tokenizers, meaningless to other models.
        raise refuse("input", "must be a string or an array of strings; token-id inputs are not supported")
    return tuple(value)


async def embed(engine: Engine, request: EmbeddingsRequest) -> Embeddings:
    """The engine's vectors, its refusals naming the request's fields as this dialect does."""
    try:
        return await engine.embed(request.model, request.params)
    except WarpcoreError as error:
        if error.field is not None and error.field.startswith(_INPUTS):
            # Only a leading name is the field: "inputs" later in the message is the word ("send at most 8 inputs").
            named = "input" + error.field.removeprefix(_INPUTS)
            error.message, error.field = error.message_naming(named), named
        raise


def _encoded(vector: tuple[float, ...], encoding: str) -> Any:
    if encoding == "float":
        return list(vector)
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def embeddings_response(request: EmbeddingsRequest, embeddings: Embeddings) -> dict[str, Any]:
    data = [
        {"object": "embedding", "index": index, "embedding": _encoded(vector, request.encoding)}
        for index, vector in enumerate(embeddings.vectors)
    ]
    usage = {"prompt_tokens": embeddings.prompt_tokens, "total_tokens": embeddings.prompt_tokens}
    return {"object": "list", "data": data, "model": request.model, "usage": usage}
