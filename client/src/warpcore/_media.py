"""What a file's bytes and a data URL say of its media type: one reading for the server, which checks an image's or a
document's bytes against the type a request names and reads the HTTP door's data URLs, and for the SDK, which tells an
image file's type from its bytes and reads the data URLs of turns given as the vendors' mappings. It sits outside
warpcore.client so that the server reads it without importing grpc (the server depends on this distribution)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping

IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
"""The image types both hosted APIs accept."""
PDF = "application/pdf"

SIGNATURES: Mapping[str, Callable[[bytes], bool]] = {
    "image/jpeg": lambda data: data.startswith(b"\xff\xd8\xff"),
    "image/png": lambda data: data.startswith(b"\x89PNG\r\n\x1a\n"),
    "image/gif": lambda data: data.startswith((b"GIF87a", b"GIF89a")),
    "image/webp": lambda data: data[:4] == b"RIFF" and data[8:12] == b"WEBP",
    PDF: lambda data: data.startswith(b"%PDF-"),
}
"""How the bytes of a file of each media type begin (its format's signature). The server refuses bytes that do not
begin so, rather than the provider after the upload or a local model's image decoder; only the start is read, the
rest is the decoder's."""

DATA_URL_FORM = "data:<media type>;base64,<base64 data>"
_TOKEN = r"[\w!#$%&'*+.^`|~-]+"  # RFC 2045's token: what a media type's parameter is named, and most values are
# RFC 2397: a media type, its parameters, `;base64`, then the data; the scheme and `base64` in any case, as URL schemes
# are (RFC 3986) and MIME's names. Strict otherwise: no data but base64's (percent-encoded text is no image), no
# media type left to its default (text/plain).
_DATA_URL = re.compile(
    rf"data:({_TOKEN}/{_TOKEN})((?:;{_TOKEN}=(?:{_TOKEN}|\"[^\"]*\"))*);base64,(.*)",
    re.ASCII | re.DOTALL | re.IGNORECASE,
)


def sniffed_media_type(data: bytes, media_types: Iterable[str] = IMAGE_MEDIA_TYPES) -> str | None:
    """The first of `media_types` whose signature `data` begins with, or None."""
    return next((media_type for media_type in media_types if SIGNATURES[media_type](data)), None)


def is_data_url(url: str) -> bool:
    """A URL of the data scheme, in any case (DATA:, Data:), as every scheme is case-insensitive."""
    return url[:5].lower() == "data:"


def data_url(url: str) -> tuple[str, str] | None:
    """A data URL's media type and its base64 data, or None when it is not of RFC 2397's base64 form. Parameters of
    the media type (a charset, a name) are taken and left out: they say nothing of an image's or a PDF's bytes."""
    match = _DATA_URL.fullmatch(url)
    return None if match is None else (match[1], match[3])
