"""OpenAI Chat Completions requests into domain generations: roles, text and image content, tool calls and results,
tools and tool choice, response format, reasoning effort; what the engine cannot honour is refused naming the
field."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from warpcore.server.core.bounds import quoted
from warpcore.server.core.cache_rules import CacheMark, check_cache_marks
from warpcore.server.core.domain import ChatMessage, GenerationParams, Role
from warpcore.server.core.tool_rules import check_tool_count
from warpcore.server.core.tooling import (
    ReasoningBlock,
    ReasoningOptions,
    ResponseFormat,
    Tool,
    ToolCall,
    ToolChoice,
    ToolChoiceMode,
)
from warpcore.server.http import anthropic_options, openai_ignored
from warpcore.server.http.cache_marks import NONE, cache_mark, marked, marked_last
from warpcore.server.http.fields import (
    Json,
    array,
    at,
    boolean,
    conversation,
    integer,
    json_object_text,
    mapping,
    number,
    objects,
    refuse,
    sampling_controls,
    text,
    unsupported,
)
from warpcore.server.http.inner_members import (
    CALLED_FUNCTION,
    CHAT_MESSAGES,
    CHAT_PARTS,
    CHAT_TOOL,
    CHAT_TOOL_CHOICE,
    CHOSEN_FUNCTION,
    FUNCTION,
    THINKING_BLOCK,
    TOOL_CALL,
)
from warpcore.server.http.members import OPENAI_CHAT
from warpcore.server.http.openai_options import (
    allowed_tools_choice,
    choice_mode,
    function_tool,
    include_usage,
    reasoning_options,
    response_format_at,
    stop_sequences,
)
from warpcore.server.http.parts import Content, FileReader, content_parts, numbered, openai_file, openai_image

FIELD_NAMES = {
    "model_id": "model",
    "prompt": "messages",
    "system": "messages",
    "reasoning": "reasoning_effort",
    "reasoning.effort": "reasoning_effort",
    "reasoning.budget_tokens": "thinking.budget_tokens",
    "reasoning.adaptive": "thinking.type",
    "response_format.schema": "response_format.json_schema.schema",
    "response_format.name": "response_format.json_schema.name",
}
"""Domain field paths as this dialect names them."""
_FILES: dict[str, FileReader] = {"image_url": openai_image, "file": openai_file}
_TEXTS = {"text": "text", "refusal": "refusal"}
"""A part's kinds, and the member that holds each text kind's text."""
_ROLES = {
    "system": Role.SYSTEM,
    "developer": Role.SYSTEM,
    "user": Role.USER,
    "assistant": Role.ASSISTANT,
    "tool": Role.TOOL,
}


@dataclass(frozen=True)
class ChatRequest:
    model: str
    params: GenerationParams
    stream: bool
    include_usage: bool
    field_names: dict[str, str]
    """The path in this request of each domain message part, by its domain path."""


def chat_request(body: Json, default_max_tokens: int) -> ChatRequest:
    OPENAI_CHAT.check(body)
    openai_ignored.check_chat(body)
    modalities = array(body, "modalities")
    if modalities not in (None, ["text"]):
        raise unsupported("modalities", "output other than text")
    max_tokens, legacy_max_tokens = integer(body, "max_completion_tokens"), integer(body, "max_tokens")
    if max_tokens is None:
        max_tokens = legacy_max_tokens
    elif legacy_max_tokens is not None:  # as the API refuses them, rather than one silently overriding the other
        raise refuse("max_tokens", "give max_completion_tokens alone (max_tokens is its deprecated name), not both")
    stops, usage_asked = stop_sequences(body), include_usage(body)
    marks: list[CacheMark] = []  # every cache breakpoint, in prompt order, by its path
    listed = objects(body, "tools")
    check_tool_count(len(listed))  # before any of their schemas is checked
    tools = tuple(_tool(path, tool, marks) for path, tool in listed)
    turns: list[tuple[ChatMessage, Content]] = []
    for path, message in conversation(body):
        turn, before = _message(path, message, marks)
        if turns:
            turns[-1] = (marked(turns[-1][0], before[1]), turns[-1][1])
        else:
            tools = marked_last(tools, before)
        turns.append(turn)
    check_cache_marks(marks)
    messages, field_names = numbered(turns)
    field_names |= _call_names(messages)
    field_names |= {  # a chat request's tools hold their function's members in `function`
        f"tools[{index}].{member}": f"tools[{index}].function.{member}"
        for index in range(len(tools))
        for member in ("name", "description", "parameters")
    }
    tool_choice, choice_names = _tool_choice(body.get("tool_choice"), tools)
    field_names |= choice_names
    if body.get("reasoning_effort") is None and body.get("thinking") is not None:
        field_names["reasoning"] = "thinking"  # the reasoning asked for is named as it was asked for
    if body.get("max_completion_tokens") is not None:  # the limit named as the client named it
        field_names["max_tokens"] = "max_completion_tokens"
    params = GenerationParams(
        prompt=None,
        messages=messages,
        max_tokens=default_max_tokens if max_tokens is None else max_tokens,
        max_tokens_defaulted=max_tokens is None,
        temperature=number(body, "temperature"),
        top_p=number(body, "top_p"),
        top_k=integer(body, "top_k"),
        stop=stops,
        **sampling_controls(body),
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=boolean(body, "parallel_tool_calls") is not False,
        response_format=_response_format(mapping(body, "response_format")),
        reasoning=_reasoning(text(body, "reasoning_effort"), mapping(body, "thinking")),
        verbosity=text(body, "verbosity"),
        logprobs=boolean(body, "logprobs") is True,
        top_logprobs=integer(body, "top_logprobs") or 0,
        continue_last=False,  # this API answers after a last assistant message (an Anthropic model refuses to)
        continue_last_read=True,
    )
    return ChatRequest(
        model=text(body, "model", required=True) or "",
        params=params,
        stream=boolean(body, "stream") is True,
        include_usage=usage_asked,
        field_names=field_names,
    )


def _call_names(messages: tuple[ChatMessage, ...]) -> dict[str, str]:
    """The paths of the calls' names and arguments, which a domain call holds itself and this dialect's in its
    `function` (each message is the domain turn of its index)."""
    return {
        f"{call}.{member}": f"{call}.function.{member}"
        for index, message in enumerate(messages)
        for call in (f"messages[{index}].tool_calls[{number}]" for number in range(len(message.tool_calls)))
        for member in ("name", "arguments")
    }


def _message(path: str, message: Json, marks: list[CacheMark]) -> tuple[tuple[ChatMessage, Content], CacheMark]:
    """A message, and a cache breakpoint that belongs before it (see cache_marks)."""
    role_name = text(message, "role", path, required=True)
    role = _ROLES.get(role_name or "")
    if role is None:
        raise refuse(at(path, "role"), f"unknown role {quoted(role_name)}; expected one of {', '.join(_ROLES)}")
    CHAT_MESSAGES[role_name or ""].check(message, path)
    # As OpenAI's API: only an assistant's answer may be calls (or a refusal) without content.
    answered = role is Role.ASSISTANT and (message.get("tool_calls") or message.get("refusal"))
    if message.get("content") is None and not answered:
        raise refuse(
            at(path, "content"), "is required (null only in an assistant message with tool_calls or a refusal)"
        )
    content, last_part, before = content_parts(
        message, "content", path, marks, _FILES, _TEXTS, CHAT_PARTS, joined=role is Role.SYSTEM
    )
    own = cache_mark(message, path, marks)  # on the message itself, as gateways take it for a string content
    cache = own if own is not NONE else last_part
    if role is Role.TOOL:
        call_id = text(message, "tool_call_id", path, required=True) or ""
        return (content.message(role, tool_call_id=call_id, cache=cache), content), before
    if role is not Role.ASSISTANT:
        return (content.message(role, cache=cache), content), before
    refusal = text(message, "refusal", path)
    if refusal and not message.get("content"):  # a refused turn handed back as the SDK got it: its words, its text
        content.add_text(refusal, at(path, "refusal"))
    calls = []
    for call_path, call in objects(message, "tool_calls", path):
        TOOL_CALL.check(call, call_path)
        if call.get("type", "function") != "function":
            raise unsupported(at(call_path, "type"), f"a tool call of type {quoted(call.get('type'))}")
        function = mapping(call, "function", call_path, required=True) or {}
        function_path = at(call_path, "function")
        CALLED_FUNCTION.check(function, function_path)
        calls.append(
            ToolCall(
                id=text(call, "id", call_path, required=True) or "",
                name=text(function, "name", function_path, required=True) or "",
                arguments=json_object_text(function.get("arguments", "{}"), at(function_path, "arguments")),
            )
        )
    message_reasoning = _reasoning_blocks(message, path)
    return (content.message(role, tool_calls=tuple(calls), reasoning=message_reasoning, cache=cache), content), before


def _reasoning_blocks(message: Json, path: str) -> tuple[ReasoningBlock, ...]:
    """An assistant turn's reasoning handed back: `thinking_blocks` (with their signatures) when present, else the
    plain `reasoning_content`."""
    blocks = []
    for block_path, block in objects(message, "thinking_blocks", path):
        THINKING_BLOCK.check(block, block_path)
        kind = text(block, "type", block_path, required=True)
        if kind not in ("thinking", "redacted_thinking"):
            raise refuse(at(block_path, "type"), f"unknown type {quoted(kind)}; expected thinking or redacted_thinking")
        if kind == "redacted_thinking":
            blocks.append(ReasoningBlock(signature=text(block, "data", block_path, required=True) or "", redacted=True))
        else:
            thinking = text(block, "thinking", block_path) or ""
            blocks.append(ReasoningBlock(thinking, text(block, "signature", block_path) or ""))
    reasoning = text(message, "reasoning_content", path)
    if not blocks and reasoning:
        blocks.append(ReasoningBlock(reasoning))
    return tuple(blocks)


def _tool(path: str, tool: Json, marks: list[CacheMark]) -> Tool:
    kind = text(tool, "type", path, required=True)
    if kind != "function":
        raise unsupported(at(path, "type"), f"a tool of type {quoted(kind)}")
    CHAT_TOOL.check(tool, path)
    function = mapping(tool, "function", path, required=True) or {}
    FUNCTION.check(function, at(path, "function"))
    return dataclasses.replace(function_tool(function, at(path, "function")), cache=cache_mark(tool, path, marks))


def _tool_choice(choice: object, tools: tuple[Tool, ...]) -> tuple[ToolChoice, dict[str, str]]:
    """The tool choice, and the path in the request of each tool it allows, by its domain path."""
    if choice is None:
        return ToolChoice(), {}
    if isinstance(choice, str):
        return choice_mode(choice), {}
    if not isinstance(choice, dict):
        raise refuse("tool_choice", "must be a string or an object")
    if choice.get("type") == "allowed_tools":
        return allowed_tools_choice(choice, nested=True)
    if choice.get("type", "function") != "function":
        raise unsupported(
            "tool_choice.type",
            f"tool_choice of type {quoted(choice.get('type'))}",
            "auto, none, required, a function or allowed_tools are",
        )
    CHAT_TOOL_CHOICE.check(choice, "tool_choice")
    function = mapping(choice, "function", "tool_choice", required=True) or {}
    CHOSEN_FUNCTION.check(function, "tool_choice.function")
    name = text(function, "name", "tool_choice.function", required=True) or ""
    if name not in {tool.name for tool in tools}:
        raise refuse("tool_choice.function.name", f"names no tool in tools: {quoted(name)}")
    return ToolChoice(ToolChoiceMode.NAMED, name), {}


def _response_format(response_format: Json | None) -> ResponseFormat | None:
    return None if response_format is None else response_format_at(response_format, "response_format", "json_schema")


def _reasoning(effort_name: str | None, thinking: Json | None) -> ReasoningOptions | None:
    """`reasoning_effort`, and the `thinking` of Anthropic's API (its budget, or adaptive), which OpenAI-compatible
    gateways take too: what asks a Claude model to think, where OpenAI's reasoning models think unasked."""
    effort = None if effort_name is None else reasoning_options(effort_name, "reasoning_effort")
    asked = None if thinking is None else anthropic_options.reasoning(thinking, None)
    if asked is None:
        return effort
    return dataclasses.replace(asked, effort=effort.effort if effort is not None else None)
