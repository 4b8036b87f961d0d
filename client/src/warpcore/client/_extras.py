"""Translation for what goes beyond generating text: image parts, log-probabilities, capabilities, Embed and
CountTokens; shared by both clients."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from warpcore.client._checks import UINT32_MAX, whole
from warpcore.client._messages import Cache, Document, Part, Text
from warpcore.client._types import (
    EmbedResponse,
    Token,
    TokenCount,
    TokenLogprob,
    TopLogprob,
)
from warpcore.v1 import content_pb2 as cpb
from warpcore.v1 import embeddings_pb2 as epb
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import tokens_pb2 as tpb

_POOLING = {"mean": epb.POOLING_MEAN, "cls": epb.POOLING_CLS, "last": epb.POOLING_LAST}


def pooling(name: str | None) -> epb.Pooling.ValueType:
    if name is None:
        return epb.POOLING_UNSPECIFIED
    try:
        return _POOLING[name.lower()]
    except KeyError:
        raise ValueError(f"unknown pooling {name!r}; choose one of {', '.join(_POOLING)}") from None


_CACHE_BREAKPOINTS = {
    None: cpb.CACHE_BREAKPOINT_UNSPECIFIED,
    "short": cpb.CACHE_BREAKPOINT_SHORT,
    "long": cpb.CACHE_BREAKPOINT_LONG,
}


def cache_breakpoint(cache: Cache | None) -> cpb.CacheBreakpoint.ValueType:
    if cache not in _CACHE_BREAKPOINTS:
        raise ValueError(f'a cache breakpoint is "short", "long" or None, not {cache!r}')
    return _CACHE_BREAKPOINTS[cache]


def content_parts(parts: Iterable[Part]) -> list[cpb.ContentPart]:
    """Strings and Text values as text parts, Image and Document values as image and document parts (by bytes or by
    URL)."""
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(cpb.ContentPart(text=part))
        elif isinstance(part, Text):
            out.append(cpb.ContentPart(text=part.text, cache_breakpoint=cache_breakpoint(part.cache)))
        elif isinstance(part, Document):
            document = cpb.DocumentPart(name=part.name)
            if part.url:
                document.url = part.url
            else:
                document.data, document.media_type = part.data, part.media_type
            out.append(cpb.ContentPart(document=document, cache_breakpoint=cache_breakpoint(part.cache)))
        else:
            image = (
                cpb.ImagePart(url=part.url) if part.url else cpb.ImagePart(data=part.data, media_type=part.media_type)
            )
            out.append(cpb.ContentPart(image=image, cache_breakpoint=cache_breakpoint(part.cache)))
    return out


def logprobs_from(scored: Iterable[tpb.TokenLogprob]) -> tuple[TokenLogprob, ...]:
    return tuple(
        TokenLogprob(
            token.token,
            token.bytes,
            token.logprob,
            tuple(TopLogprob(top.token, top.bytes, top.logprob) for top in token.top_logprobs),
        )
        for token in scored
    )


MAX_EMBED_INPUTS = 2048
"""The most texts one Embed call takes (EmbedRequest.inputs in embeddings.proto)."""


def embed_request(
    model_id: str,
    inputs: str | Sequence[str],
    dimensions: int | None,
    normalize: bool | None,
    truncate: bool | None,
) -> epb.EmbedRequest:
    """One text or several; None leaves an option to the server."""
    if isinstance(inputs, bytes | bytearray) or not isinstance(inputs, str | Iterable):
        raise TypeError(f"inputs is a str or an iterable of str, not {type(inputs).__name__}")
    texts = [inputs] if isinstance(inputs, str) else list(inputs)
    if odd := [text for text in texts if not isinstance(text, str)]:
        raise TypeError(f"inputs is a str or an iterable of str, not of {type(odd[0]).__name__}")
    if dimensions is not None:
        whole("dimensions", dimensions, 0, UINT32_MAX, "uint32")
    options = epb.EmbedOptions(dimensions=dimensions, normalize=normalize, truncate=truncate)
    return epb.EmbedRequest(model_id=model_id, inputs=texts, options=options)


def embed_from(response: epb.EmbedResponse) -> EmbedResponse:
    return EmbedResponse(
        embeddings=[list(embedding.values) for embedding in response.embeddings],
        prompt_tokens=response.prompt_tokens,
        upstream_request_id=response.upstream_request_id,
    )


def count_from(response: pb.CountTokensResponse) -> TokenCount:
    count = response.count
    return TokenCount(count.prompt_tokens, [Token(token.id, token.piece) for token in count.tokens])
