"""The Responses API's `input` items as domain turns: messages and their text, image and file parts, function calls
(joining the assistant turn before them), their outputs as tool turns, and reasoning handed back (going with the
assistant turn after it); each turn keeps its items' paths, so that refusals name them as the request does."""

from __future__ import annotations

import dataclasses

from warpcore.server.core.bounds import quoted
from warpcore.server.core.cache_rules import CacheMark
from warpcore.server.core.content import DocumentPart, ImagePart
from warpcore.server.core.domain import ChatMessage, Role
from warpcore.server.core.tooling import ReasoningBlock, Tool, ToolCall
from warpcore.server.http.cache_marks import UNMARKED, marked, marked_last
from warpcore.server.http.fields import Json, at, json_object_text, objects, refuse, text, unsupported
from warpcore.server.http.inner_members import REASONING_TEXT, RESPONSES_ITEMS, RESPONSES_PARTS
from warpcore.server.http.parts import (
    Content,
    FileReader,
    content_parts,
    named_as,
    openai_file,
    openai_image,
    turn_names,
)

_TEXTS = {"input_text": "text", "output_text": "text", "refusal": "refusal"}
"""Each text kind of a part, and the member that holds its text."""
_ROLES = {"system": Role.SYSTEM, "developer": Role.SYSTEM, "user": Role.USER, "assistant": Role.ASSISTANT}


def input_items(body: Json) -> list[tuple[str, Json]]:
    """The input items, unless the input is a string (one user message)."""
    value = body.get("input")
    if isinstance(value, str):
        return []
    if value is not None and not isinstance(value, list):
        raise refuse("input", "must be a string or an array of items")
    items = objects(body, "input", required=True)
    if not items:
        raise refuse("input", "must hold at least one item")
    return items


class Conversation:
    """The domain's turns, item by item: a function call joins the assistant turn before it (one answer's message
    and calls are one turn), and reasoning handed back goes with the assistant turn after it."""

    def __init__(self, tools: tuple[Tool, ...]) -> None:
        self.tools = tools
        self.turns: list[tuple[ChatMessage, Content | None]] = []
        self.marks: list[CacheMark] = []  # every cache breakpoint, in prompt order, by its path
        self._reasoning: list[ReasoningBlock] = []
        self._reasoning_paths: list[str] = []
        self._paths: list[dict[str, str]] = []
        """Each turn's paths in this request, by their path within a domain turn ("" is the turn's item)."""

    def field_names(self, names: dict[str, str]) -> dict[str, str]:
        """`names` (the parts' paths), with each turn's own: refusals of a turn, a call or a result name their
        items."""
        return names | turn_names(self._paths)

    def item(self, path: str, item: Json) -> None:
        kind = text(item, "type", path) or "message"
        if kind in RESPONSES_ITEMS:
            RESPONSES_ITEMS[kind].check(item, path)
        if kind == "message":
            self._message(path, item)
        elif kind == "function_call":
            self._call(path, item)
        elif kind == "function_call_output":
            self.check_reasoning_followed()
            content, last, before = content_parts(item, "output", path, self.marks, _FILES, _TEXTS, RESPONSES_PARTS)
            call_id = text(item, "call_id", path, required=True) or ""
            self._add(content.message(Role.TOOL, tool_call_id=call_id, cache=last), content, before, path)
            self._paths[-1][".tool_call_id"] = at(path, "call_id")
        elif kind == "reasoning":
            self._reasoning.append(_reasoning_block(path, item))
            self._reasoning_paths.append(path)
        elif kind == "item_reference":
            raise unsupported(at(path, "type"), "an item by reference (this server keeps no items: send the item)")
        else:
            raise unsupported(at(path, "type"), f"an input item of type {quoted(kind)}")

    def text_turn(self, role: Role, value: str, path: str) -> None:
        content = Content(path)
        content.add_text(value, path)
        self._add(content.message(role), content, UNMARKED, path)

    def _message(self, path: str, item: Json) -> None:
        role_name = text(item, "role", path, required=True)
        role = _ROLES.get(role_name or "")
        if role is None:
            raise refuse(at(path, "role"), f"unknown role {quoted(role_name)}; expected one of {', '.join(_ROLES)}")
        if role is not Role.ASSISTANT:
            self.check_reasoning_followed()
        content, last, before = content_parts(
            item, "content", path, self.marks, _FILES, _TEXTS, RESPONSES_PARTS, joined=role is Role.SYSTEM
        )
        extra = {"reasoning": self._handed_back()} if role is Role.ASSISTANT else {}
        self._add(content.message(role, cache=last, **extra), content, before, path)

    def _call(self, path: str, item: Json) -> None:
        call = ToolCall(
            id=text(item, "call_id", path, required=True) or "",
            name=text(item, "name", path, required=True) or "",
            arguments=json_object_text(item.get("arguments", "{}"), at(path, "arguments")),
        )
        last, content = self.turns[-1] if self.turns else (None, None)
        if last is not None and last.role is Role.ASSISTANT and not self._reasoning:
            self.turns[-1] = (dataclasses.replace(last, tool_calls=(*last.tool_calls, call)), content)
        else:
            turn = ChatMessage(Role.ASSISTANT, "", tool_calls=(call,), reasoning=self._handed_back())
            self._add(turn, None, UNMARKED, path)
        number = len(self.turns[-1][0].tool_calls) - 1
        own = {"": path, ".id": at(path, "call_id"), ".name": at(path, "name"), ".arguments": at(path, "arguments")}
        self._paths[-1].update((f".tool_calls[{number}]{within}", named) for within, named in own.items())

    def check_reasoning_followed(self) -> None:
        """Reasoning handed back goes with the assistant message or function call it led to, which must follow it
        (as the API requires): reasoning followed by another turn, or by nothing, belongs to no answer."""
        if self._reasoning_paths:
            raise refuse(
                self._reasoning_paths[0],
                "is a reasoning item with no assistant message or function_call after it; hand reasoning back"
                " followed by the output it led to, or leave it out",
            )

    def _handed_back(self) -> tuple[ReasoningBlock, ...]:
        blocks, self._reasoning, self._reasoning_paths = tuple(self._reasoning), [], []
        return blocks

    def _add(self, turn: ChatMessage, content: Content | None, before: CacheMark, path: str) -> None:
        """Append a turn, the item at `path`; a cache breakpoint that belongs before it ends the turn before, or the
        tools."""
        if self.turns:
            self.turns[-1] = (marked(self.turns[-1][0], before[1]), self.turns[-1][1])
        else:
            self.tools = marked_last(self.tools, before)
        self.turns.append((turn, content))
        self._paths.append({"": path})


def _image(part: Json, path: str) -> ImagePart:
    """An `input_image`: its `image_url` read as Chat Completions reads an image part's URL (a data URL is the
    image's bytes), refusals named by this dialect's paths. `original` detail, as every detail, changes nothing
    here."""
    if part.get("file_id") is not None:
        raise unsupported(at(path, "file_id"), "an image by file id (send its image_url)")
    detail = text(part, "detail", path)
    image = {"url": text(part, "image_url", path, required=True), "detail": None if detail == "original" else detail}
    names = {at(path, "image_url.url"): at(path, "image_url"), at(path, "image_url.detail"): at(path, "detail")}
    with named_as(names):
        return openai_image({"image_url": image}, path)


def _file(part: Json, path: str) -> DocumentPart:
    """An `input_file`: its `file_data` (a data URL) or its `file_url`; a file by id has no place here."""
    url = text(part, "file_url", path)
    if url is not None:
        return DocumentPart(url=url, name=text(part, "filename", path) or "")
    file = {name: part.get(name) for name in ("file_id", "file_data", "filename")}
    with named_as({at(path, f"file.{name}"): at(path, name) for name in file}):
        return openai_file({"file": file}, path)


def _reasoning_block(path: str, item: Json) -> ReasoningBlock:
    """A reasoning item handed back: its text (`content`, else its `summary`) and, in `encrypted_content`, the
    signature the door gave it; an item of encrypted content alone is a redacted block."""
    parts = objects(item, "content", path) or objects(item, "summary", path)
    for part_path, part in parts:
        REASONING_TEXT.check(part, part_path)
    texts = [text(part, "text", part_path, required=True) or "" for part_path, part in parts]
    signature = text(item, "encrypted_content", path) or ""
    return ReasoningBlock("\n\n".join(texts), signature, redacted=bool(signature) and not parts)


_FILES: dict[str, FileReader] = {"input_image": _image, "input_file": _file}
