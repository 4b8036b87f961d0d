"""The rules for the parts of chat messages beyond their text: images and documents go in user turns only, of a type
both hosted APIs take, by their bytes or an https URL, within each kind's count and size limits."""

from __future__ import annotations

from dataclasses import dataclass

from warpcore._media import IMAGE_MEDIA_TYPES, SIGNATURES
from warpcore.server.core.bounds import (
    DOCUMENT_MEDIA_TYPES,
    MAX_DOCUMENT_BYTES,
    MAX_DOCUMENTS,
    MAX_IMAGE_BYTES,
    MAX_IMAGES,
    url_problem,
)
from warpcore.server.core.content import DocumentPart, ImagePart
from warpcore.server.core.domain import GenerationParams, Role
from warpcore.server.core.errors import ContentTooLargeError, InvalidArgumentError
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


def check_parts(params: GenerationParams) -> None:
    counts = dict.fromkeys(_KINDS.values(), 0)
    for index, message in enumerate(params.messages):
        for number, part in enumerate(message.parts):
            if isinstance(part, ImagePart | DocumentPart):
                kind = _KINDS[type(part)]
                counts[kind] += 1
                _check_file(part, kind, counts[kind], f"messages[{index}].parts[{number}]", message.role)
        # After its files, each refused by its own path as outside a user turn: what else a system message has.
        require(
            not message.parts or message.role is not Role.SYSTEM,
            f"messages[{index}].parts",
            "system messages carry their text in content, without parts",
        )


def outside_user_turn(field: str, noun: str) -> InvalidArgumentError:
    """The refusal of a file outside a user turn, by its own path, in the same words whichever door and turn: an
    assistant's, a system message's, Anthropic's system prompt's (which a door refuses as it reads it)."""
    return InvalidArgumentError(f"{field}: {noun}s go in user messages only", field=field)


def _check_file(part: ImagePart | DocumentPart, kind: _Kind, count: int, field: str, role: Role) -> None:
    noun = kind.noun
    if count > kind.most:
        raise ContentTooLargeError(
            f"{field} is {noun} number {count}; a request may carry at most {kind.most}",
            field=field,
            reason=f"TOO_MANY_{noun.upper()}S",
        )
    if role is not Role.USER:
        raise outside_user_turn(field, noun)
    require(bool(part.data) != bool(part.url), field, f"{field}: give the {noun}'s data or its url")
    if part.url:
        problem = url_problem(part.url, ("https",))
        require(problem is None, field, f"{field}: the {noun}'s url {problem}")
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
    require(SIGNATURES[part.media_type](part.data), field, f"{field}: the data is no {part.media_type} file")
