"""A turn's text, images and documents, in either dialect, as domain content: images and documents become parts (by
their bytes or a URL; their limits and rules are the domain's, core/part_rules.py), and each part keeps its path in the
dialect's request, so that the domain's refusals of a part name it as the client wrote it."""

from __future__ import annotations

import base64
import dataclasses
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from warpcore._media import DATA_URL_FORM, data_url, is_data_url
from warpcore.server.core.bounds import quoted
from warpcore.server.core.cache_rules import CacheMark
from warpcore.server.core.content import (
    SYSTEM_SEPARATOR,
    CacheBreakpoint,
    ContentPart,
    DocumentPart,
    ImagePart,
    TextPart,
)
from warpcore.server.core.domain import ChatMessage, Role
from warpcore.server.core.errors import WarpcoreError
from warpcore.server.http.cache_marks import NONE, UNMARKED, end_and_before, part_mark, part_marker
from warpcore.server.http.fields import Json, at, mapping, objects, refuse, text, unsupported
from warpcore.server.http.inner_members import CITATIONS, FILE, IMAGE_URL, SOURCES
from warpcore.server.http.members import Members

_DETAILS = ("auto", "low", "high")
_TURN = re.compile(r"\bmessages\[\d+\](?![.\[])")
"""A domain turn named in a message, not a path within it."""


class Content:
    """A turn's content in order: its first text, if nothing comes before it, is the message's `content`, and each
    block after it a part of its own, so that a backend gets the blocks the client sent; empty text adds none."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._text: str | None = None
        self._parts: list[ContentPart] = []
        self._paths: list[str] = []

    @property
    def empty(self) -> bool:
        """No text block nor image (a turn of tool results alone)."""
        return self._text is None and not self._parts

    def add_text(self, value: str, path: str, cache: CacheBreakpoint = NONE) -> None:
        """A text; one ending in a breakpoint is a part of its own, which carries it (even empty: the backend
        refuses it rather than the breakpoint be lost)."""
        if not self._text and not self._parts and cache is NONE:
            self._text = value
        elif value or cache is not NONE:
            self._parts.append(TextPart(value, cache))
            self._paths.append(path)

    def add_file(self, file: ImagePart | DocumentPart, path: str) -> None:
        self._parts.append(file)
        self._paths.append(path)

    def message(self, role: Role, **fields: Any) -> ChatMessage:
        """The domain message; a system message's text blocks as one text, all it takes (core/part_rules.py), joined as
        all system text is."""
        texts = [part.text for part in self._parts if isinstance(part, TextPart)]
        if role is Role.SYSTEM and len(texts) == len(self._parts):
            return ChatMessage(role, SYSTEM_SEPARATOR.join([self._text or "", *texts]), **fields)
        return ChatMessage(role, self._text or "", parts=tuple(self._parts), **fields)

    def field_names(self, index: int) -> dict[str, str]:
        """The domain paths of the parts of this content as message `index`, with the dialect's path of each."""
        names = {f"messages[{index}].parts": self.path}
        names.update((f"messages[{index}].parts[{number}]", path) for number, path in enumerate(self._paths))
        return names


FileReader = Callable[[Json, str], ImagePart | DocumentPart]
"""A part of a file kind, at its path, as the domain's part."""


def content_parts(
    owner: Json,
    key: str,
    path: str,
    marks: list[CacheMark],
    files: Mapping[str, FileReader],
    texts: Mapping[str, str],
    members: Mapping[str, Members],
    *,
    joined: bool = False,
) -> tuple[Content, CacheBreakpoint, CacheMark]:
    """`owner[key]`, a string or an array of parts in order, each kind's members those in `members`: a file kind
    read by its reader in `files`, a text kind by its member named in `texts` (files in any role: the domain says
    where they may go). With the cache breakpoint of its last part, and the first of a part before it that ends no
    place of the domain's (see cache_marks): a text part's is its own, but where its texts are `joined` into one (a
    system message's)."""
    content_path = at(path, key)
    content = Content(content_path)
    value = owner.get(key)
    if value is None or isinstance(value, str):
        content.add_text(value or "", content_path)
        return content, NONE, UNMARKED
    if not isinstance(value, list):
        raise refuse(content_path, "must be a string or an array of content parts")
    parts = objects(owner, key, path)
    unplaced = []  # each part's breakpoint that no part of the domain carries, by its path
    for number, (part_path, part) in enumerate(parts):
        kind = text(part, "type", part_path, required=True) or ""
        if kind in members:
            members[kind].check(part, part_path)
        mark = part_mark(part, part_path, marks)
        if kind in files:
            content.add_file(dataclasses.replace(files[kind](part, part_path), cache=mark), part_path)
            mark = NONE
        elif kind in texts:
            # The last part's breakpoint ends the message, which carries it.
            own = NONE if joined or number == len(parts) - 1 else mark
            content.add_text(text(part, texts[kind], part_path, required=True) or "", part_path, own)
            mark = mark if own is NONE else NONE
        else:
            raise unsupported(at(part_path, "type"), f"content of type {quoted(kind)}")
        unplaced.append((part_marker(part, part_path), mark))
    return content, *end_and_before(unplaced)


def numbered(turns: Iterable[tuple[ChatMessage, Content | None]]) -> tuple[tuple[ChatMessage, ...], dict[str, str]]:
    """The domain messages, and the dialect's path of each of their parts by its domain path."""
    messages: list[ChatMessage] = []
    names: dict[str, str] = {}
    for message, content in turns:
        if content is not None:
            names.update(content.field_names(len(messages)))
        messages.append(message)
    return tuple(messages), names


def turn_names(paths: Sequence[Mapping[str, str]]) -> dict[str, str]:
    """The dialect's path of each domain turn (and of its call ids, calls and results), from each turn's paths by
    their path within it ("" the turn itself): refusals of a turn name it as the request does."""
    return {f"messages[{index}]{within}": path for index, own in enumerate(paths) for within, path in own.items()}


def anthropic_turn_paths(path: str, message: Json, turn: Sequence[ChatMessage]) -> list[dict[str, str]]:
    """The paths of the domain turns that Anthropic message `message` (at `path`) became: each tool result its
    `tool_result` block, the rest the message, its calls their `tool_use` blocks."""
    blocks = message.get("content")
    blocks = list(enumerate(blocks)) if isinstance(blocks, list) else []
    taken: set[int] = set()

    def block(kind: str, key: str, value: str) -> str:
        """The next block of `kind` whose `key` is `value`: two with the same id are two blocks, each its own."""
        found = next(
            index
            for index, each in blocks
            if index not in taken and each.get("type") == kind and each.get(key) == value
        )
        taken.add(found)
        return at(at(path, "content"), found)

    paths = []
    for domain in turn:
        if domain.role is Role.TOOL:
            result = block("tool_result", "tool_use_id", domain.tool_call_id)
            paths.append({"": result, ".tool_call_id": at(result, "tool_use_id"), ".is_error": at(result, "is_error")})
            continue
        own = {"": path}
        for number, call in enumerate(domain.tool_calls):
            use = block("tool_use", "id", call.id)
            fields = {"": use, ".id": at(use, "id"), ".name": at(use, "name"), ".arguments": at(use, "input")}
            own.update((f".tool_calls[{number}]{within}", named) for within, named in fields.items())
        paths.append(own)
    return paths


@contextmanager
def named_as(names: Mapping[str, str]) -> Iterator[None]:
    """The domain's refusals of a part (or a turn's parts) naming it by its path in the dialect's request, as the
    other turns their messages name."""
    try:
        yield
    except WarpcoreError as error:
        dialect = names.get(error.field or "")
        if error.field and dialect is not None:
            error.message = error.message.replace(error.field, dialect)
            error.field = dialect
        error.message = _TURN.sub(lambda turn: names.get(turn[0], turn[0]), error.message)
        error.args = (error.message,)
        raise


def anthropic_image(block: Json, path: str) -> ImagePart:
    """An `image` block: a `base64` source (`media_type`, `data`) or a `url` one."""
    data, media_type, url = _anthropic_source(block, path, "image")
    return ImagePart(data=data, media_type=media_type, url=url)


def anthropic_document(block: Json, path: str) -> DocumentPart:
    """A `document` block: a PDF by a `base64` source or a `url` one, its `title` as the document's name. What the
    domain cannot carry is refused: text and content sources, files by id, the `context` given beside the document
    (the model would not see it), and citations (the answer would come without them)."""
    if block.get("context") is not None:
        raise unsupported(at(path, "context"), "a document's context (put it in a text block)")
    citations = mapping(block, "citations", path) or {}
    CITATIONS.check(citations, at(path, "citations"))
    if citations.get("enabled") is True:
        raise unsupported(at(at(path, "citations"), "enabled"), "citations")
    data, media_type, url = _anthropic_source(block, path, "document")
    return DocumentPart(data=data, media_type=media_type, url=url, name=text(block, "title", path) or "")


def _anthropic_source(block: Json, path: str, noun: str) -> tuple[bytes, str, str]:
    source_path = at(path, "source")
    source = mapping(block, "source", path, required=True) or {}
    kind = text(source, "type", source_path, required=True)
    if kind in SOURCES:
        SOURCES[kind].check(source, source_path)
    if kind == "base64":
        data = text(source, "data", source_path, required=True) or ""
        media_type = text(source, "media_type", source_path, required=True) or ""
        return _decoded(data, at(source_path, "data"), "the base64 data is empty"), media_type, ""
    if kind == "url":
        return b"", "", text(source, "url", source_path, required=True) or ""
    raise unsupported(
        at(source_path, "type"),
        f"the {noun} source type {quoted(kind)}",
        "base64 and url are",
    )


def openai_image(part: Json, path: str) -> ImagePart:
    """An `image_url` part: a `data:<media type>;base64,<data>` URL is the image's bytes, any other URL stays one.
    `detail` has no place in the domain (and no meaning to Anthropic or llama.cpp models): checked, then left out."""
    image_path = at(path, "image_url")
    image = mapping(part, "image_url", path, required=True) or {}
    IMAGE_URL.check(image, image_path)
    detail = text(image, "detail", image_path)
    if detail not in (None, *_DETAILS):
        raise refuse(
            at(image_path, "detail"), f"unknown detail {quoted(detail)}; expected one of {', '.join(_DETAILS)}"
        )
    url = text(image, "url", image_path, required=True) or ""
    if not is_data_url(url):
        return ImagePart(url=url)
    data, media_type = _data_url(url, at(image_path, "url"))
    return ImagePart(data=data, media_type=media_type)


def openai_file(part: Json, path: str) -> DocumentPart:
    """A `file` part: its `file_data` (a data URL) and `filename`; a file by `file_id` has no place here (warpcore
    keeps no files), refused."""
    file_path = at(path, "file")
    file = mapping(part, "file", path, required=True) or {}
    FILE.check(file, file_path)
    if file.get("file_id") is not None:
        raise unsupported(at(file_path, "file_id"), "a file by id (send its file_data)")
    data_path = at(file_path, "file_data")
    data, media_type = _data_url(text(file, "file_data", file_path, required=True) or "", data_path)
    return DocumentPart(data=data, media_type=media_type, name=text(file, "filename", file_path) or "")


def _data_url(url: str, path: str) -> tuple[bytes, str]:
    parsed = data_url(url)
    if parsed is None:
        raise refuse(path, f"a data URL must be {DATA_URL_FORM}")
    media_type, data = parsed
    return _decoded(data, path, "the data URL holds no data"), media_type


def _decoded(data: str, path: str, empty: str) -> bytes:
    """The bytes of base64 `data`; none are refused here (`empty` says why), where the domain would read a part with
    neither bytes nor a URL as one given neither."""
    if not data:
        raise refuse(path, empty)
    try:
        return base64.b64decode(data, validate=True)
    except ValueError:  # binascii.Error, or characters outside ASCII
        raise refuse(path, "is not valid base64") from None
