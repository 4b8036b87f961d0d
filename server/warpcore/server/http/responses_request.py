"""OpenAI Responses API requests into domain generations: `instructions` and the `input` items (messages, function
calls, their outputs, and reasoning handed back) as the conversation, function tools, tool choice, `text.format` and
reasoning effort. Stateless: what needs a stored response or conversation is refused, naming the field."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from warpcore.server.core.bounds import DEFAULT_MAX_TOKENS
from warpcore.server.core.cache_rules import CacheMark, check_cache_marks
from warpcore.server.core.content import CacheBreakpoint, DocumentPart, ImagePart
from warpcore.server.core.domain import ChatMessage, GenerationParams, Role
from warpcore.server.core.tool_rules import check_tool_count
from warpcore.server.core.tooling import ReasoningBlock, Tool, ToolCall, ToolChoice, ToolChoiceMode
from warpcore.server.http.cache_marks import NONE, end_and_before, marked, marked_last, part_mark
from warpcore.server.http.fields import (
    Json,
    array,
    at,
    boolean,
    integer,
    json_object_text,
    mapping,
    number,
    objects,
    refuse,
    text,
    unsupported,
)
from warpcore.server.http.members import OPENAI_RESPONSES
from warpcore.server.http.openai_request import choice_mode, function_tool, reasoning_options, response_format_at
from warpcore.server.http.parts import Content, named_as, numbered, openai_file, openai_image

FIELD_NAMES = {
    "model_id": "model",
    "prompt": "input",
    "messages": "input",
    "max_tokens": "max_output_tokens",
    "reasoning.effort": "reasoning.effort",
    "response_format": "text.format",
    "response_format.schema": "text.format.schema",
    "response_format.name": "text.format.name",
    "verbosity": "text.verbosity",
    "logprobs": "include",
}
"""Domain field paths as this dialect names them."""
_ROLES = {"system": Role.SYSTEM, "developer": Role.SYSTEM, "user": Role.USER, "assistant": Role.ASSISTANT}
_ECHOED = ("instructions", "max_output_tokens", "temperature", "top_p", "user", "service_tier", "safety_identifier")
"""Request members a response repeats as they came (null when absent)."""


@dataclass(frozen=True)
class ResponsesRequest:
    model: str
    params: GenerationParams
    stream: bool
    field_names: dict[str, str]
    """The path in this request of each domain message part, by its domain path."""
    echo: dict[str, Any]
    """The request's settings as the response object repeats them."""


def responses_request(body: Json) -> ResponsesRequest:
    OPENAI_RESPONSES.check(body)
    logprobs = _include(body)
    listed = objects(body, "tools")
    check_tool_count(len(listed))  # before any of their schemas is checked
    conversation = _Conversation(tuple(_tool(path, tool) for path, tool in listed))
    instructions = text(body, "instructions")
    if instructions:
        conversation.text_turn(Role.SYSTEM, instructions, "instructions")
    if isinstance(body.get("input"), str):
        conversation.text_turn(Role.USER, body["input"], "input")
    for path, item in _input(body):
        conversation.item(path, item)
    check_cache_marks(conversation.marks)
    messages, field_names = numbered(conversation.turns)
    settings = mapping(body, "text") or {}
    response_format = mapping(settings, "format", "text")
    reasoning = mapping(body, "reasoning") or {}
    effort = text(reasoning, "effort", "reasoning")
    text(reasoning, "summary", "reasoning")  # checked only: the reasoning a backend shows is always its summary here
    max_tokens = integer(body, "max_output_tokens")
    params = GenerationParams(
        prompt=None,
        messages=messages,
        max_tokens=DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens,
        temperature=number(body, "temperature"),
        top_p=number(body, "top_p"),
        tools=conversation.tools,
        tool_choice=_tool_choice(body.get("tool_choice")),
        parallel_tool_calls=boolean(body, "parallel_tool_calls") is not False,
        response_format=None if response_format is None else response_format_at(response_format, "text.format", None),
        reasoning=None if effort is None else reasoning_options(effort, "reasoning.effort"),
        verbosity=text(settings, "verbosity", "text"),
        # `top_logprobs` alone asks for them too: the tokens they rank are given with their own.
        logprobs=logprobs or bool(integer(body, "top_logprobs")),
        top_logprobs=integer(body, "top_logprobs") or 0,
    )
    return ResponsesRequest(
        model=text(body, "model", required=True) or "",
        params=params,
        stream=boolean(body, "stream") is True,
        field_names=field_names,
        echo=_echo(body, params, settings),
    )


def _include(body: Json) -> bool:
    """Whether `include` asks for the text's log-probabilities. Its other values ask for the outputs of OpenAI's
    built-in tools (none ever runs here) and the encrypted reasoning (always given here, when the backend signed it)."""
    included = array(body, "include") or []
    for index, value in enumerate(included):
        if not isinstance(value, str):
            raise refuse(at("include", index), "must be a string")
    return "message.output_text.logprobs" in included


def _input(body: Json) -> list[tuple[str, Json]]:
    """The input items, unless the input is a string (one user message)."""
    if isinstance(body.get("input"), str):
        return []
    items = objects(body, "input", required=True)
    if not items:
        raise refuse("input", "must hold at least one item")
    return items


class _Conversation:
    """The domain's turns, item by item: a function call joins the assistant turn before it (one answer's message
    and calls are one turn), and reasoning handed back goes with the assistant turn after it."""

    def __init__(self, tools: tuple[Tool, ...]) -> None:
        self.tools = tools
        self.turns: list[tuple[ChatMessage, Content | None]] = []
        self.marks: list[CacheMark] = []  # every cache breakpoint, in prompt order, by its path
        self._reasoning: list[ReasoningBlock] = []

    def item(self, path: str, item: Json) -> None:
        kind = text(item, "type", path) or "message"
        if kind == "message":
            self._message(path, item)
        elif kind == "function_call":
            self._call(path, item)
        elif kind == "function_call_output":
            content, last, before = _content(item, "output", path, self.marks)
            call_id = text(item, "call_id", path, required=True) or ""
            self._add(content.message(Role.TOOL, tool_call_id=call_id, cache=last), content, before)
        elif kind == "reasoning":
            self._reasoning.append(_reasoning_block(path, item))
        elif kind == "item_reference":
            raise unsupported(at(path, "type"), "an item by reference (this server keeps no items: send the item)")
        else:
            raise unsupported(at(path, "type"), f"an input item of type {kind!r}")

    def text_turn(self, role: Role, value: str, path: str) -> None:
        content = Content(path)
        content.add_text(value, path)
        self._add(content.message(role), content, NONE)

    def _message(self, path: str, item: Json) -> None:
        role_name = text(item, "role", path, required=True)
        role = _ROLES.get(role_name or "")
        if role is None:
            raise refuse(at(path, "role"), f"unknown role {role_name!r}; expected one of {', '.join(_ROLES)}")
        content, last, before = _content(item, "content", path, self.marks)
        extra = {"reasoning": self._handed_back()} if role is Role.ASSISTANT else {}
        self._add(content.message(role, cache=last, **extra), content, before)

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
            self._add(ChatMessage(Role.ASSISTANT, "", tool_calls=(call,), reasoning=self._handed_back()), None, NONE)

    def _handed_back(self) -> tuple[ReasoningBlock, ...]:
        blocks, self._reasoning = tuple(self._reasoning), []
        return blocks

    def _add(self, turn: ChatMessage, content: Content | None, before: CacheBreakpoint) -> None:
        """Append a turn; a cache breakpoint that belongs before it ends the turn before, or the tools."""
        if self.turns:
            self.turns[-1] = (marked(self.turns[-1][0], before), self.turns[-1][1])
        else:
            self.tools = marked_last(self.tools, before)
        self.turns.append((turn, content))


def _content(
    item: Json, key: str, path: str, marks: list[CacheMark]
) -> tuple[Content, CacheBreakpoint, CacheBreakpoint]:
    """A string, or an array of text, image and file parts in order; with the cache breakpoint of its last part, and
    the first of a part before it that ends no place of the domain's (see cache_marks)."""
    content_path = at(path, key)
    content = Content(content_path)
    value = item.get(key)
    if value is None or isinstance(value, str):
        content.add_text(value or "", content_path)
        return content, NONE, NONE
    unplaced = []  # each part's breakpoint that no file part of the domain carries
    for part_path, part in objects(item, key, path):
        kind = part.get("type")
        mark = part_mark(part, part_path, marks)
        if kind in ("input_image", "input_file"):
            file = (_image if kind == "input_image" else _file)(part, part_path)
            content.add_file(dataclasses.replace(file, cache=mark), part_path)
            mark = NONE
        elif kind in ("input_text", "output_text", "refusal"):
            member = "refusal" if kind == "refusal" else "text"
            content.add_text(text(part, member, part_path, required=True) or "", part_path)
        else:
            raise unsupported(at(part_path, "type"), f"content of type {kind!r}")
        unplaced.append(mark)
    return content, *end_and_before(unplaced)


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
    texts = [text(part, "text", part_path, required=True) or "" for part_path, part in parts]
    signature = text(item, "encrypted_content", path) or ""
    return ReasoningBlock("\n\n".join(texts), signature, redacted=bool(signature) and not parts)


def _tool(path: str, tool: Json) -> Tool:
    kind = text(tool, "type", path, required=True)
    if kind != "function":
        raise unsupported(at(path, "type"), f"a tool of type {kind!r} (function tools are)")
    return function_tool(tool, path)


def _tool_choice(choice: object) -> ToolChoice:
    if choice is None:
        return ToolChoice()
    if isinstance(choice, str):
        return choice_mode(choice)
    if not isinstance(choice, dict):
        raise refuse("tool_choice", "must be a string or an object")
    kind = text(choice, "type", "tool_choice", required=True)
    if kind != "function":
        raise unsupported("tool_choice.type", f"tool_choice of type {kind!r} (auto, none, required or a function are)")
    return ToolChoice(ToolChoiceMode.NAMED, text(choice, "name", "tool_choice", required=True) or "")


def _echo(body: Json, params: GenerationParams, settings: Json) -> dict[str, Any]:
    """The settings a response object repeats: those of the request, and what this server did of the others (nothing
    stored, nothing truncated, nothing in the background)."""
    reasoning = body.get("reasoning") or {}
    return {
        **{name: body.get(name) for name in _ECHOED},
        "metadata": body.get("metadata") or {},
        "parallel_tool_calls": params.parallel_tool_calls,
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": body.get("tools") or [],
        "text": {"format": {"type": "text"}, **settings},
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "previous_response_id": None,
        "truncation": "disabled",
        "store": False,
        "background": False,
    }
