"""Protobuf to domain values and back for what goes beyond generating text: Embed, CountTokens, image parts,
the log-probabilities of deltas and a model's capabilities."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Sequence

from warpcore._media import PDF
from warpcore.server.core.capabilities import Capabilities
from warpcore.server.core.content import CacheBreakpoint, ContentPart, DocumentPart, ImagePart, TextPart
from warpcore.server.core.domain import TextChunk
from warpcore.server.core.embeddings import Embeddings, EmbedParams
from warpcore.server.core.rules import require
from warpcore.server.core.tokens import TokenCount
from warpcore.v1 import capabilities_pb2 as capb
from warpcore.v1 import content_pb2 as cpb
from warpcore.v1 import embeddings_pb2 as epb
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import tokens_pb2 as tpb

_FLOAT32_DIGITS = 9  # significant digits that tell every single-precision number from its neighbours
_CACHE_BREAKPOINTS: dict[int, CacheBreakpoint] = {
    cpb.CACHE_BREAKPOINT_UNSPECIFIED: CacheBreakpoint.NONE,
    cpb.CACHE_BREAKPOINT_SHORT: CacheBreakpoint.SHORT,
    cpb.CACHE_BREAKPOINT_LONG: CacheBreakpoint.LONG,
}


def as_written(value: float) -> float:
    """A proto `float` as the shortest decimal that is the same single-precision number (0.7, not the
    0.699999988079071 it holds): what the caller wrote, for an upstream API to be sent as it would have been sent
    directly; llama.cpp, which takes single precision, gets the same number either way."""
    for digits in range(1, _FLOAT32_DIGITS + 1):
        shortest = float(f"{value:.{digits}g}")
        with contextlib.suppress(OverflowError):  # rounded past single precision's largest number
            if struct.unpack("f", struct.pack("f", shortest))[0] == value:
                return shortest
    return value  # NaN, which validation refuses


def cache_breakpoint(value: int, field: str) -> CacheBreakpoint:
    mark = _CACHE_BREAKPOINTS.get(value)
    require(mark is not None, field, f"{field} must be CACHE_BREAKPOINT_SHORT, CACHE_BREAKPOINT_LONG or unset")
    assert mark is not None
    return mark


def content_parts(parts: Sequence[cpb.ContentPart], where: str) -> tuple[ContentPart, ...]:
    out: list[ContentPart] = []
    for number, part in enumerate(parts):
        kind = part.WhichOneof("part")
        require(kind is not None, f"{where}.parts[{number}]", "a content part needs its text, image or document")
        cache = cache_breakpoint(part.cache_breakpoint, f"{where}.parts[{number}].cache_breakpoint")
        if kind == "text":
            out.append(TextPart(part.text, cache))
        elif kind == "image":
            image = part.image
            data, url = (image.data, "") if image.WhichOneof("source") == "data" else (b"", image.url)
            out.append(ImagePart(data=data, media_type=image.media_type, url=url, cache=cache))
        else:
            document = part.document
            data, url = (document.data, "") if document.WhichOneof("source") == "data" else (b"", document.url)
            # An empty media type is the only one there is (the proto's documented default).
            media_type = document.media_type or PDF
            out.append(DocumentPart(data=data, media_type=media_type, url=url, name=document.name, cache=cache))
    return tuple(out)


def text_delta(chunk: TextChunk) -> pb.GenerateResponse:
    """A text delta, with its tokens' log-probabilities when asked for."""
    logprobs = [
        tpb.TokenLogprob(
            token=token.text,
            bytes=token.token,
            logprob=token.logprob,
            top_logprobs=[tpb.TopLogprob(token=top.text, bytes=top.token, logprob=top.logprob) for top in token.top],
        )
        for token in chunk.logprobs
    ]
    return pb.GenerateResponse(delta=pb.TextDelta(text=chunk.text, refusal=chunk.refusal, logprobs=logprobs))


def embed_params(request: epb.EmbedRequest, time_remaining: float | None, max_response_bytes: int) -> EmbedParams:
    options = request.options
    return EmbedParams(
        inputs=tuple(request.inputs),
        dimensions=options.dimensions if options.HasField("dimensions") else None,
        normalize=options.normalize if options.HasField("normalize") else True,
        truncate=options.truncate,
        truncate_option="options.truncate",
        timeout=time_remaining,
        max_response_bytes=max_response_bytes,
    )


def embed_response(embeddings: Embeddings) -> epb.EmbedResponse:
    return epb.EmbedResponse(
        embeddings=[epb.Embedding(values=vector) for vector in embeddings.vectors],
        prompt_tokens=embeddings.prompt_tokens,
        upstream_request_id=embeddings.upstream_request_id,
    )


def token_count_response(count: TokenCount) -> pb.CountTokensResponse:
    tokens = [tpb.Token(id=token.id, piece=token.piece) for token in count.tokens]
    return pb.CountTokensResponse(count=tpb.TokenCount(prompt_tokens=count.prompt_tokens, tokens=tokens))


def capabilities_message(capabilities: Capabilities) -> capb.ModelCapabilities:
    return capb.ModelCapabilities(
        generate=capabilities.generate,
        embed=capabilities.embed,
        count_tokens=capabilities.count_tokens,
        images=capabilities.images,
        logprobs=capabilities.logprobs,
        tools=capabilities.tools,
        documents=capabilities.documents,
    )
