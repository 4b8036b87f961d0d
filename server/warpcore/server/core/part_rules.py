"""The rules for the parts of chat messages beyond their text: images and documents go in user turns only, of a type
both hosted APIs take, by their bytes or an https URL, within each kind's count and size limits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from warpcore.server.core.bounds import (
    DOCUMENT_MEDIA_TYPES,
    IMAGE_MEDIA_TYPES,
    MAX_DOCUMENT_BYTES,
    MAX_DOCUMENTS,
    MAX_IMAGE_BYTES,
    MAX_IMAGES,
    is_http_url,
)
from warpcore.server.core.content import DocumentPart, ImagePart
from warpcore.server.core.domain import GenerationParams, Role
from warpcore.server.core.errors import ContentTooLargeError
from warpcore.server.core.rules import require


@dataclass(frozen=True)
class _Kind:
    noun: str
    most: int
    largest: int
    media_types: tuple[str, ...]


_KINDS = {
    ImagePart: _Kind("image", MAX_IMAGES, MAX_IMAGE_BYTES, IMAGE_MEDIA_TYPES),
    DocumentPart: _Kind("document", MAX_DOCUMENTS, MAX_DOCUMENT_BYTES, DOCUMENT_MEDIA_TYPES),
}

# How the bytes of a file of each media type begin (its format's signature): a file of another type, or none, is
# refused here rather than by the provider, after the upload, or by a local model's image decoder.
_SIGNATURES: dict[str, Callable[[bytes], bool]] = {
    "image/jpeg": lambda data: data.startswith(b"\xff\xd8\xff"),
    "image/png": lambda data: data.startswith(b"\x89PNG\r\n\x1a\n"),
    "image/gif": lambda data: data.startswith((b"GIF87a", b"GIF89a")),
    "image/webp": lambda data: data[:4] == b"RIFF" and data[8:12] == b"WEBP",
    "application/pdf": lambda data: data.startswith(b"%PDF-"),
}


def check_parts(params: GenerationParams) -> None:
    counts = dict.fromkeys(_KINDS.values(), 0)
    for index, message in enumerate(params.messages):
        require(
            not message.parts or message.role is not Role.SYSTEM,
            f"messages[{index}].parts",
            "system messages carry their text in content, without parts",
        )
        for number, part in enumerate(message.parts):
            if isinstance(part, ImagePart | DocumentPart):
                kind = _KINDS[type(part)]
                counts[kind] += 1
                _check_file(part, kind, counts[kind], f"messages[{index}].parts[{number}]", message.role)


def _check_file(part: ImagePart | DocumentPart, kind: _Kind, count: int, field: str, role: Role) -> None:
    noun = kind.noun
    if count > kind.most:
        raise ContentTooLargeError(
            f"{field} is {noun} number {count}; a request may carry at most {kind.most}",
            field=field,
            reason=f"TOO_MANY_{noun.upper()}S",
        )
    require(role is Role.USER, field, f"{field}: {noun}s go in user messages only")
    require(bool(part.data) != bool(part.url), field, f"{field}: give the {noun}'s data or its url")
    if part.url:
        require(
            part.url.startswith("https://") and is_http_url(part.url),
            field,
            f"{field}: the {noun}'s url must be https://",
        )
        return
    require(
        part.media_type in kind.media_types,
        field,
        f"{field}: media_type must be one of {', '.join(kind.media_types)}",
    )
    if len(part.data) > kind.largest:
        raise ContentTooLargeError(
            f"{field} is {len(part.data)} bytes; each {noun} may be at most {kind.largest}",
            field=field,
            reason=f"{noun.upper()}_TOO_LARGE",
        )
    require(_SIGNATURES[part.media_type](part.data), field, f"{field}: the data is no {part.media_type} file")
