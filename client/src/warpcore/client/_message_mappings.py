"""Chat turns given as mappings, as the vendors' SDKs take them: a role and a content, the content a str or a list of
text parts and images (OpenAI's image_url parts, Anthropic's image blocks); what else a turn holds goes in a
Message."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from warpcore._media import DATA_URL_FORM, data_url, is_data_url
from warpcore.client._extras import content_parts
from warpcore.client._messages import Image
from warpcore.client._tools import chat_role
from warpcore.v1 import inference_pb2 as pb

SYSTEM_SEPARATOR = "\n\n"
"""Between the texts of a system message, which carries no parts: the blank line inference.proto joins system text
with."""
USE_MESSAGE = "use warpcore.client.Message for tool calls, documents, cache breakpoints and reasoning"


def mapping_message(message: Mapping[str, Any]) -> pb.ChatMessage:
    """The protocol's turn for a {"role": ..., "content": ...} mapping. A content of parts keeps them in order, its
    first text as the message's content; a system message's texts are joined, as the server joins system text."""
    if set(message) != {"role", "content"}:
        keys = sorted(message)
        raise TypeError(
            f"a message given as a mapping has a role and a content, no more; {USE_MESSAGE} (got keys {keys})"
        )
    role, content = chat_role(message["role"]), message["content"]
    if isinstance(content, str):
        return pb.ChatMessage(role=role, content=content)
    if not isinstance(content, Sequence) or isinstance(content, bytes | bytearray):
        raise TypeError(f"a message's content is a str or a list of parts, not {type(content).__name__}")
    parts = [_part(part, f"content[{index}]") for index, part in enumerate(content)]
    texts = [part for part in parts if isinstance(part, str)]
    if role == pb.ROLE_SYSTEM and len(texts) == len(parts):
        return pb.ChatMessage(role=role, content=SYSTEM_SEPARATOR.join(texts))
    if parts and isinstance(first := parts[0], str):
        return pb.ChatMessage(role=role, content=first, parts=content_parts(parts[1:]))
    return pb.ChatMessage(role=role, parts=content_parts(parts))


def _part(part: object, where: str) -> str | Image:
    if not isinstance(part, Mapping):
        raise TypeError(f"{where} is a mapping, a text or an image part, not {type(part).__name__}")
    kind = part.get("type")
    if kind == "text":
        _members(part, {"type", "text"}, where)
        return _text(part, "text", where)
    if kind == "image_url":  # OpenAI's
        _members(part, {"type", "image_url"}, where)
        image = _mapping(part, "image_url", where)
        # `detail` (how finely OpenAI looks) has no place in the protocol: dropped, as the HTTP door drops it.
        _members(image, {"url"}, f"{where}.image_url", optional={"detail"})
        url = _text(image, "url", f"{where}.image_url")
        return _data_url_image(url, f"{where}.image_url.url") if is_data_url(url) else Image.from_url(url)
    if kind == "image":  # Anthropic's
        _members(part, {"type", "source"}, where)
        return _source_image(_mapping(part, "source", where), f"{where}.source")
    raise TypeError(f"{where} is a text or an image part, not of type {kind!r}; {USE_MESSAGE}")


def _source_image(source: Mapping[str, Any], where: str) -> Image:
    kind = source.get("type")
    if kind == "base64":
        _members(source, {"type", "media_type", "data"}, where)
        return Image(_decoded(_text(source, "data", where), f"{where}.data"), _text(source, "media_type", where))
    if kind == "url":
        _members(source, {"type", "url"}, where)
        return Image.from_url(_text(source, "url", where))
    raise ValueError(f"{where}.type is base64 or url, not {kind!r}")


def _data_url_image(url: str, where: str) -> Image:
    """As the HTTP door reads one (warpcore._media)."""
    parsed = data_url(url)
    if parsed is None:
        raise ValueError(f"{where}: a data URL is {DATA_URL_FORM}")
    media_type, data = parsed
    return Image(_decoded(data, where), media_type)


def _decoded(data: str, where: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except binascii.Error:
        raise ValueError(f"{where} is not base64") from None


def _members(
    owner: Mapping[str, Any], required: AbstractSet[str], where: str, optional: AbstractSet[str] = frozenset()
) -> None:
    """TypeError for a member missing, or one with no place here (it would be dropped in silence)."""
    if missing := sorted(required - set(owner)):
        raise TypeError(f"{where} has no {', '.join(missing)}")
    if extra := sorted(set(owner) - required - optional):
        raise TypeError(f"{where} has {', '.join(extra)}, which a mapping cannot carry; {USE_MESSAGE}")


def _mapping(owner: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = owner[key]
    if not isinstance(value, Mapping):
        raise TypeError(f"{where}.{key} is a mapping, not {type(value).__name__}")
    return value


def _text(owner: Mapping[str, Any], key: str, where: str) -> str:
    value = owner[key]
    if not isinstance(value, str):
        raise TypeError(f"{where}.{key} is a str, not {type(value).__name__}")
    return value
