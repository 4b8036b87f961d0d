"""The pieces a chat message may carry beside its text: more text, and images and documents by their bytes or a URL;
and the breakpoints that ask a hosted API to cache the prompt up to a piece."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field


class CacheBreakpoint(enum.Enum):
    """Whether a hosted API is asked to cache the prompt up to here, and for how long (proto CacheBreakpoint)."""

    NONE = "none"
    SHORT = "short"
    LONG = "long"


@dataclass(frozen=True)
class TextPart:
    text: str
    cache: CacheBreakpoint = CacheBreakpoint.NONE


@dataclass(frozen=True)
class ImagePart:
    """Exactly one of `data` (with its `media_type`) and `url` is set."""

    data: bytes = field(default=b"", repr=False)
    media_type: str = ""
    url: str = ""
    cache: CacheBreakpoint = CacheBreakpoint.NONE

    def __post_init__(self) -> None:
        _lower_media_type(self)


@dataclass(frozen=True)
class DocumentPart:
    """A PDF document: exactly one of `data` (with its `media_type`) and `url` is set; `name` is shown to the model."""

    data: bytes = field(default=b"", repr=False)
    media_type: str = ""
    url: str = ""
    name: str = ""
    cache: CacheBreakpoint = CacheBreakpoint.NONE

    def __post_init__(self) -> None:
        _lower_media_type(self)


ContentPart = TextPart | ImagePart | DocumentPart


def _lower_media_type(part: ImagePart | DocumentPart) -> None:
    # Media types are case-insensitive (RFC 2045); the checks, and the APIs a part is sent to, know the lower case.
    object.__setattr__(part, "media_type", part.media_type.lower())


SYSTEM_SEPARATOR = "\n\n"
"""What goes between pieces of system text made one (the system prompt, system turns, a system message's blocks, as
proto GenerationOptions.system says): a blank line, for they are often a stable part and a changing one, whose words
must not run together."""


def one_text(texts: Iterable[str]) -> str:
    """Texts a client sent apart in a turn, as one where a single string is all a backend takes (a local model's chat
    template): a line each, so that the words where two meet do not run together."""
    return "\n".join(texts)
