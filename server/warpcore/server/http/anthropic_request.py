"""Anthropic Messages requests into domain generations: system, content blocks (text, images, tool use and results,
thinking with its signature), tools and tool choice, thinking budget, stop sequences, cache breakpoints (placed as
cache_marks says); what the engine cannot honour is refused naming the field."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from warpcore.server.core.bounds import quoted
from warpcore.server.core.cache_rules import CacheMark, check_cache_marks
from warpcore.server.core.content import SYSTEM_SEPARATOR, CacheBreakpoint
from warpcore.server.core.domain import (
    ChatMessage,
    GenerationParams,
    Role,
)
from warpcore.server.core.part_rules import outside_user_turn
from warpcore.server.core.tool_rules import check_tool_count
from warpcore.server.core.tooling import (
    ReasoningBlock,
    Tool,
    ToolCall,
)
from warpcore.server.http.anthropic_options import (
    check_ignored,
    output_format,
    reasoning,
    stop_sequences,
    temperature,
    tool_choice,
)
from warpcore.server.http.cache_marks import NONE, UNMARKED, cache_mark, end_and_before, marked, marked_last
from warpcore.server.http.fields import (
    Json,
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
    schema,
    text,
    unsupported,
)
from warpcore.server.http.inner_members import ANTHROPIC_BLOCKS, ANTHROPIC_MESSAGE, ANTHROPIC_TOOL, OUTPUT_CONFIG
from warpcore.server.http.members import ANTHROPIC_COUNT_TOKENS, ANTHROPIC_MESSAGES
from warpcore.server.http.parts import (
    Content,
    anthropic_document,
    anthropic_image,
    anthropic_turn_paths,
    numbered,
    turn_names,
)

FIELD_NAMES = {
    "model_id": "model",
    "prompt": "messages",
    "stop": "stop_sequences",
    "reasoning": "thinking",
    "reasoning.budget_tokens": "thinking.budget_tokens",
    "reasoning.adaptive": "thinking.type",
    "reasoning.effort": "output_config.effort",
    "response_format": "output_config.format",
    "response_format.schema": "output_config.format.schema",
    "anthropic_betas": "anthropic-beta",
}
"""Domain field paths as this dialect names them."""
_ROLES = {"user": Role.USER, "assistant": Role.ASSISTANT}
_SPEAKERS = {Role.USER: "a user", Role.ASSISTANT: "an assistant"}


@dataclass(frozen=True)
class MessagesRequest:
    model: str
    params: GenerationParams
    stream: bool
    field_names: dict[str, str]
    """The path in this request of each domain message part, by its domain path."""


def messages_request(body: Json, counted_max_tokens: int | None = None) -> MessagesRequest:
    """A Messages request; or, given `counted_max_tokens`, the body of a count_tokens one, whose `max_tokens` is
    ignored: the value given stands in (the prompt does not depend on it, but a thinking budget must be below it)."""
    (ANTHROPIC_MESSAGES if counted_max_tokens is None else ANTHROPIC_COUNT_TOKENS).check(body)
    check_ignored(body)
    stops = stop_sequences(body)
    marks: list[CacheMark] = []  # every cache_control, in prompt order, by its path
    listed = objects(body, "tools")
    check_tool_count(len(listed))  # before any of their schemas is checked
    tools = tuple(_tool(path, tool, marks) for path, tool in listed)
    choice, parallel = tool_choice(mapping(body, "tool_choice"), tools)
    output_config = mapping(body, "output_config") or {}
    OUTPUT_CONFIG.check(output_config, "output_config")
    system, system_cache, before_system = _system(body, marks)
    tools = marked_last(tools, before_system)
    turns: list[tuple[ChatMessage, Content | None]] = []
    paths: list[dict[str, str]] = []
    listed_turns = conversation(body)
    for index, (path, message) in enumerate(listed_turns):
        turn, before_turn = _turn(path, message, marks, last=index == len(listed_turns) - 1)
        paths += anthropic_turn_paths(path, message, [domain for domain, _ in turn])
        if turns:
            turns[-1] = (marked(turns[-1][0], before_turn[1]), turns[-1][1])
        elif system:
            system_cache = before_turn[1] if system_cache is NONE else system_cache
        else:
            tools = marked_last(tools, before_turn)
        turns += turn
    automatic = cache_mark(body, "", marks)  # the API's automatic caching: up to the last block
    check_cache_marks(marks)
    turns[-1] = (marked(turns[-1][0], automatic), turns[-1][1])
    messages, field_names = numbered(turns)
    field_names |= turn_names(paths)
    field_names |= {f"tools[{index}].parameters": f"tools[{index}].input_schema" for index in range(len(tools))}
    if body.get("thinking") is None and output_config.get("effort") is not None:
        field_names["reasoning"] = "output_config.effort"  # the reasoning asked for is named as it was asked for
    params = GenerationParams(
        prompt=None,
        messages=messages,
        max_tokens=counted_max_tokens or integer(body, "max_tokens", required=True) or 0,
        system=system,
        system_cache=system_cache,
        temperature=temperature(body),
        top_p=number(body, "top_p"),
        top_k=integer(body, "top_k"),
        **sampling_controls(body),
        stop=stops,
        tools=tools,
        tool_choice=choice,
        parallel_tool_calls=parallel,
        response_format=output_format(body, output_config),
        reasoning=reasoning(mapping(body, "thinking"), text(output_config, "effort", "output_config")),
        continue_last=messages[-1].role is Role.ASSISTANT,  # the API continues it (prefill), not answers after
        continue_last_read=True,
    )
    model = text(body, "model", required=True) or ""
    return MessagesRequest(model, params, boolean(body, "stream") is True, field_names)


def _text_blocks(owner: Json, key: str, path: str, marks: list[CacheMark]) -> list[tuple[str, str, CacheBreakpoint]]:
    """A string, or an array of text blocks: each text with its path and its block's cache breakpoint."""
    value = owner.get(key)
    if value is None or isinstance(value, str):
        return [(value or "", at(path, key), NONE)]
    pieces = []
    for block_path, block in objects(owner, key, path):
        kind = text(block, "type", block_path, required=True)
        if kind == "image" and not path:  # the system prompt's: outside a user turn, refused as any image there
            raise outside_user_turn(block_path, "image")
        if kind == "image":  # a tool result's: the domain's carry text only, so refused rather than dropped
            raise unsupported(at(block_path, "type"), "an image here (send it in a user turn's own content)")
        if kind != "text":
            raise unsupported(at(block_path, "type"), f"a block of type {quoted(kind)} here")
        ANTHROPIC_BLOCKS["text"].check(block, block_path)
        value = text(block, "text", block_path, required=True) or ""
        _check_text(value, at(block_path, "text"))  # as in a message; a tool result's "" or [] is no block
        pieces.append((value, block_path, cache_mark(block, block_path, marks)))
    return pieces


def _system(body: Json, marks: list[CacheMark]) -> tuple[str | None, CacheBreakpoint, CacheMark]:
    """The system prompt, the breakpoint at its end, and one that belongs before it, its text being one (see
    cache_marks)."""
    if body.get("system") is None:
        return None, NONE, UNMARKED
    pieces = _text_blocks(body, "system", "", marks)
    block_marks = [(at(path, "cache_control"), mark) for _, path, mark in pieces]
    return SYSTEM_SEPARATOR.join(piece for piece, _, _ in pieces), *end_and_before(block_marks)


def _turn(
    path: str, message: Json, marks: list[CacheMark], *, last: bool
) -> tuple[list[tuple[ChatMessage, Content | None]], CacheMark]:
    """One turn as domain messages (with the content of the turn's own): a user turn's tool results, which come
    first in it, become tool messages; and a cache breakpoint that belongs before the turn (see cache_marks)."""
    role_name = text(message, "role", path, required=True)
    role = _ROLES.get(role_name or "")
    if role is None:
        raise refuse(at(path, "role"), f"unknown role {quoted(role_name)}; expected user or assistant")
    ANTHROPIC_MESSAGE.check(message, path)
    content = message.get("content")
    prefill = last and role is Role.ASSISTANT  # the start of the answer, which the API continues
    if isinstance(content, str):
        _check_text(content, at(path, "content"), prefill=prefill, ends_prefill=prefill)
        return [(ChatMessage(role, content), None)], UNMARKED
    if content is not None and not isinstance(content, list):
        raise refuse(at(path, "content"), "must be a string or an array of content blocks")
    own = Content(at(path, "content"))
    calls: list[ToolCall] = []
    reasoning: list[ReasoningBlock] = []
    turn: list[tuple[ChatMessage, Content | None]] = []
    blocks = objects(message, "content", path, required=True)
    if not blocks:
        _check_text("", at(path, "content"), prefill=prefill)
    own_cache, before_turn = NONE, UNMARKED
    for place, (block_path, block) in enumerate(blocks):
        kind = text(block, "type", block_path, required=True) or ""
        if kind in ANTHROPIC_BLOCKS:
            ANTHROPIC_BLOCKS[kind].check(block, block_path)
        is_result = kind == "tool_result" and role is Role.USER
        if is_result and len(turn) < place:  # a block of another type came before it
            raise refuse(block_path, "a tool_result goes before the turn's other blocks, as Anthropic's API wants")
        # A result's text, read first: the breakpoints of its blocks come before its own.
        result_texts = _text_blocks(block, "content", block_path, marks) if is_result else []
        mark = cache_mark(block, block_path, marks)
        if kind == "text":
            more = place < len(blocks) - 1  # a text with more after it: its own part carries its breakpoint
            said = text(block, "text", block_path, required=True) or ""
            _check_text(said, at(block_path, "text"), ends_prefill=prefill and not more)
            own.add_text(said, block_path, mark if more else NONE)
            mark = NONE if more else mark
        elif kind in ("image", "document"):  # in any role: the domain says where they may go
            file = (anthropic_image if kind == "image" else anthropic_document)(block, block_path)
            own.add_file(dataclasses.replace(file, cache=mark), block_path)
            mark = NONE
        elif kind == "tool_use" and role is Role.ASSISTANT:
            calls.append(
                ToolCall(
                    id=text(block, "id", block_path, required=True) or "",
                    name=text(block, "name", block_path, required=True) or "",
                    arguments=json_object_text(block.get("input", {}), at(block_path, "input")),
                )
            )
        elif is_result:
            result_content = Content(at(block_path, "content"))
            for number, (piece, piece_path, piece_mark) in enumerate(result_texts):
                # Each text with more after it carries its breakpoint; the last one's ends the result.
                result_content.add_text(piece, piece_path, piece_mark if number < len(result_texts) - 1 else NONE)
            inner_last = result_texts[-1][2] if result_texts else NONE
            result = result_content.message(
                Role.TOOL,
                tool_call_id=text(block, "tool_use_id", block_path, required=True) or "",
                is_error=boolean(block, "is_error", block_path) is True,
                cache=inner_last if mark is NONE else mark,
            )
            turn.append((result, result_content))
            mark = NONE
        elif kind == "thinking" and role is Role.ASSISTANT:
            thinking = text(block, "thinking", block_path, required=True) or ""
            reasoning.append(ReasoningBlock(thinking, text(block, "signature", block_path) or ""))
        elif kind == "redacted_thinking" and role is Role.ASSISTANT:
            reasoning.append(
                ReasoningBlock(signature=text(block, "data", block_path, required=True) or "", redacted=True)
            )
        else:
            raise unsupported(at(block_path, "type"), f"{_SPEAKERS[role]} block of type {quoted(kind)}")
        if place == len(blocks) - 1:
            own_cache = mark
        else:
            before_turn = _before(turn, (at(block_path, "cache_control"), mark), before_turn)
    if not own.empty or calls or reasoning or not turn:
        own_message = own.message(role, tool_calls=tuple(calls), reasoning=tuple(reasoning), cache=own_cache)
        turn.append((own_message, own))
    return turn, before_turn


def _check_text(said: str, path: str, *, prefill: bool = False, ends_prefill: bool = False) -> None:
    """A text block's text, or a message's content (empty), as Anthropic's API takes it wherever it is (a message, the
    system prompt, a tool result): not empty, unless it is a last assistant message's (`prefill`, which the answer
    continues), nor whitespace alone; and not ending in whitespace where the answer continues it (`ends_prefill`)."""
    if not said and not prefill:
        raise refuse(
            path, "must not be empty, as Anthropic's API wants (only a last assistant message's content may be)"
        )
    if said and not said.strip():
        raise refuse(path, "must hold text other than whitespace, as Anthropic's API wants")
    if ends_prefill and said != said.rstrip():
        raise refuse(
            path,
            "ends in whitespace, which Anthropic's API refuses at the end of a last assistant message (the answer"
            " continues it and may begin with the whitespace)",
        )


def _before(turn: list[tuple[ChatMessage, Content | None]], mark: CacheMark, before_turn: CacheMark) -> CacheMark:
    """A breakpoint whose block ends no place of the domain's, on a place before it: the turn's last message so far
    (its tool results), else before the turn (what is returned)."""
    if turn:
        turn[-1] = (marked(turn[-1][0], mark[1]), turn[-1][1])
        return before_turn
    return before_turn if before_turn[1] is not NONE else mark


def _tool(path: str, tool: Json, marks: list[CacheMark]) -> Tool:
    if tool.get("type", "custom") != "custom":
        raise unsupported(at(path, "type"), f"the server tool {quoted(tool.get('type'))}")
    ANTHROPIC_TOOL.check(tool, path)
    return Tool(
        name=text(tool, "name", path, required=True) or "",
        description=text(tool, "description", path) or "",
        parameters=schema(tool, "input_schema", path, required=True) or {},
        strict=boolean(tool, "strict", path) is True,
        cache=cache_mark(tool, path, marks),
    )
