"""The turns of a chat as the SDK takes them: messages with their text and images, tools, the calls a model made
and its reasoning, and where a hosted API is asked to cache the prompt."""

from __future__ import annotations

import json
import mimetypes
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from warpcore._media import sniffed_media_type

Cache = Literal["short", "long"]
"""A cache breakpoint: a hosted API is asked to keep the prompt up to here in its prompt cache, a few minutes
("short"; Anthropic: 5 minutes) or longer ("long"; Anthropic: 1 hour). Anthropic caches only where asked; OpenAI
caches long prompts by itself; llama.cpp models have their own cache. At most 4 in a request, "long" ones first."""

FUNCTION_TOOLS_NEED_PYDANTIC = (
    "a function as a tool needs pydantic, which reads its parameters' types into the tool's schema: install it, or"
    " the SDK with its tools extra (pip install 'warpcore-client[tools]'); or give Tool(name, description,"
    " parameters) with the schema written out"
)


@dataclass(frozen=True)
class Image:
    """An image for a chat message: its bytes and media type, or an https URL the provider fetches."""

    data: bytes = field(default=b"", repr=False)
    media_type: str = ""
    url: str = ""
    cache: Cache | None = None
    """A cache breakpoint after this image."""

    @classmethod
    def from_path(cls, path: str | Path, *, media_type: str | None = None, cache: Cache | None = None) -> Image:
        """The image in a file, of `media_type` when given; else of the type its bytes begin as (the signature of a
        JPEG, PNG, GIF or WebP file, which the server checks the bytes against), else of the type its name says
        (.png, .jpg, .gif, .webp). ValueError when neither tells an image type: give `media_type`."""
        data = Path(path).read_bytes()
        if media_type is None:
            media_type = sniffed_media_type(data) or mimetypes.guess_type(str(path))[0]
            if media_type is None or not media_type.startswith("image/"):
                raise ValueError(
                    f"cannot tell the image type of {str(path)!r}: its bytes begin as no JPEG, PNG, GIF or WebP file"
                    " and its name says no image type; give media_type"
                )
        return cls(data=data, media_type=media_type, cache=cache)

    @classmethod
    def from_url(cls, url: str, *, cache: Cache | None = None) -> Image:
        return cls(url=url, cache=cache)


@dataclass(frozen=True)
class Document:
    """A PDF document for a chat message: its bytes, or an https URL the provider fetches (Anthropic only); `name` is
    shown to the model. Hosted models read documents; llama.cpp models refuse them."""

    data: bytes = field(default=b"", repr=False)
    media_type: str = "application/pdf"
    url: str = ""
    name: str = ""
    cache: Cache | None = None
    """A cache breakpoint after this document."""

    @classmethod
    def from_path(cls, path: str | Path, *, cache: Cache | None = None) -> Document:
        """The PDF in a file, named after it."""
        return cls(data=Path(path).read_bytes(), name=Path(path).name, cache=cache)

    @classmethod
    def from_url(cls, url: str, *, name: str = "", cache: Cache | None = None) -> Document:
        return cls(url=url, name=name, cache=cache)


@dataclass(frozen=True)
class Text:
    """Text of a chat message after its content, as a part of its own: only needed to end it with a cache
    breakpoint (a plain string is a text part too)."""

    text: str
    cache: Cache | None = None


Part = str | Text | Image | Document
"""A piece of a chat message after its content: more text, an image or a document."""


@dataclass(frozen=True)
class Tool:
    """A function the model may call: its name, what it does, and the JSON Schema of its arguments."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    strict: bool = False
    """Ask the backend to guarantee arguments valid against `parameters` (OpenAI's and Anthropic's strict tool use;
    llama.cpp models always do)."""
    cache: Cache | None = None
    """A cache breakpoint after this tool's definition (tools come first in a prompt)."""

    @classmethod
    def from_model(
        cls, model: Any, name: str | None = None, description: str | None = None, *, strict: bool = False
    ) -> Tool:
        """A tool whose arguments are the fields of a pydantic model class (name: the class's, description: its
        docstring)."""
        schema = model.model_json_schema()
        schema.pop("title", None)
        return cls(name or model.__name__, description or (model.__doc__ or "").strip(), schema, strict)

    @classmethod
    def from_function(cls, function: Any, description: str | None = None, *, strict: bool = False) -> Tool:
        """A tool whose arguments are the typed parameters of a function, named after it. Needs pydantic, which reads
        the types: `pip install 'warpcore-client[tools]'`."""
        try:
            import pydantic  # only here: the SDK itself does not need pydantic
        except ImportError as missing:
            raise ImportError(FUNCTION_TOOLS_NEED_PYDANTIC, name="pydantic") from missing

        schema = pydantic.TypeAdapter(function).json_schema()
        return cls(function.__name__, description or (function.__doc__ or "").strip(), schema, strict)


@dataclass(frozen=True)
class ToolCall:
    """A complete call the model made; `arguments` is JSON text of an object."""

    id: str
    name: str
    arguments: str

    def parsed_arguments(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.arguments)
        return parsed


@dataclass(frozen=True)
class ReasoningBlock:
    """Reasoning the model gave, to be sent back unchanged (Anthropic's signature, or a redacted block's data)."""

    text: str = ""
    signature: str = ""
    redacted: bool = False


@dataclass(frozen=True)
class Message:
    """One chat turn; role is "system", "user", "assistant" or "tool"."""

    role: str
    content: str = ""
    parts: tuple[Part, ...] = ()
    """Text and images after content, in order (images in user messages only)."""
    tool_calls: tuple[ToolCall, ...] = ()
    """Assistant turns: the calls the model made."""
    tool_call_id: str = ""
    """Tool turns: the id of the call answered."""
    is_error: bool = False
    """Tool turns: the tool failed, and content says how."""
    reasoning: tuple[ReasoningBlock, ...] = ()
    """Assistant turns: the reasoning to send back."""
    cache: Cache | None = None
    """A cache breakpoint after this message."""

    @classmethod
    def tool_result(cls, call: ToolCall, content: str, *, is_error: bool = False) -> Message:
        """The turn that answers `call` with its result."""
        return cls("tool", content, tool_call_id=call.id, is_error=is_error)
