"""The pieces a chat message may carry beside its text: more text, and images by their bytes or a URL."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TextPart:
    text: str


@dataclass(frozen=True)
class ImagePart:
    """Exactly one of `data` (with its `media_type`) and `url` is set."""

    data: bytes = field(default=b"", repr=False)
    media_type: str = ""
    url: str = ""


ContentPart = TextPart | ImagePart
