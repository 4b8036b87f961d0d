"""The body of a Messages API request from a generation's parameters: turns of content blocks (tool results folded
into user turns, reasoning sent back with its signature), tools, tool choice, thinking and JSON output."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from warpcore._sampling_ranges import ANTHROPIC_MAX_TEMPERATURE
from warpcore.server.adapters.hosted.refusals import answer_refused, refused
from warpcore.server.core.bounds import MIN_THINKING_BUDGET
from warpcore.server.core.content import SYSTEM_SEPARATOR, CacheBreakpoint, ContentPart, ImagePart, TextPart
from warpcore.server.core.domain import (
    ChatMessage,
    GenerationParams,
    Role,
)
from warpcore.server.core.rules import require
from warpcore.server.core.tooling import (
    ReasoningEffort,
    ResponseFormatKind,
    ToolChoiceMode,
)

_EFFORTS = tuple(effort for effort in ReasoningEffort if effort not in (ReasoningEffort.NONE, ReasoningEffort.MINIMAL))
"""The efforts the API takes; none is honoured by sending none, minimal is refused."""
_TOOL_CHOICES = {ToolChoiceMode.AUTO: "auto", ToolChoiceMode.REQUIRED: "any", ToolChoiceMode.NAMED: "tool"}


def request_options(params: GenerationParams) -> dict[str, Any]:
    """The body fields beyond the shared sampling ones, refusing what the API cannot honour before anything is
    sent. Body fields, as the Messages API documents them: anthropic 2.x takes no arguments for sampling."""
    if params.seed is not None:
        raise refused("seed", "seed is not supported by the Anthropic API; leave it unset")
    if params.penalties:
        name = next(iter(params.penalties))
        raise refused(name, f"{name} is not supported by the Anthropic API; leave it unset or 0")
    if params.logit_bias:
        raise refused("logit_bias", "logit_bias is not supported by the Anthropic API; leave it empty")
    if params.logprobs:
        raise refused("logprobs", "the Anthropic API does not return log-probabilities; do not ask for them")
    if params.verbosity is not None:
        raise refused("verbosity", "the Anthropic API takes no verbosity; leave it unset")
    if params.temperature is not None and params.temperature > ANTHROPIC_MAX_TEMPERATURE:
        raise refused("temperature", f"the Anthropic API accepts a temperature from 0 to {ANTHROPIC_MAX_TEMPERATURE:g}")
    continues = params.continues_last(api_continues=True)
    if params.messages and params.messages[-1].role is Role.ASSISTANT and not continues:
        # Sent as it is, it would be continued: an answer of another kind than asked, with no word of it.
        raise answer_refused(
            params,
            "the Anthropic API continues a last assistant message (prefill) rather than answering after it",
            "unset or true for the answer to continue it",
            " (its own Messages request, POST /v1/messages, continues it)",
        )
    if continues and _ends_in_whitespace(params.messages[-1]):
        raise refused(
            "messages",
            "the Anthropic API refuses to continue an assistant message that ends in whitespace; remove it (the"
            " continuation may begin with it)",
        )
    return {
        "system": _system(params),
        "top_k": params.top_k,
        "stop_sequences": list(params.stop) or None,
        "thinking": _thinking(params),
        "output_config": _output_config(params) or None,
        **_tools(params),
    }


def _thinking(params: GenerationParams) -> dict[str, Any] | None:
    budget = params.reasoning.budget_tokens if params.reasoning else None
    adaptive = params.reasoning is not None and params.reasoning.adaptive
    if budget is None and not adaptive:
        return None
    if budget is not None and budget < MIN_THINKING_BUDGET:
        raise refused(
            "reasoning.budget_tokens", f"the Anthropic API's thinking budget is {MIN_THINKING_BUDGET} or more"
        )
    # The API's rules for thinking, checked here so that the field is named.
    if params.temperature is not None and params.temperature != ANTHROPIC_MAX_TEMPERATURE:
        raise refused("temperature", "the Anthropic API takes no temperature but 1 with thinking on")
    if params.top_k is not None:
        raise refused("top_k", "the Anthropic API takes no top_k with thinking on")
    if params.tool_choice.mode in (ToolChoiceMode.REQUIRED, ToolChoiceMode.NAMED) and params.tools:
        raise refused("tool_choice", "the Anthropic API cannot force a tool call with thinking on")
    return {"type": "adaptive"} if budget is None else {"type": "enabled", "budget_tokens": budget}


def _output_config(params: GenerationParams) -> dict[str, Any]:
    config: dict[str, Any] = {}
    # Effort none is no reasoning: Claude does not think unless thinking is on, so nothing is sent.
    effort = params.reasoning.effort if params.reasoning and not params.reasoning.off else None
    if effort is not None:
        if effort not in _EFFORTS:
            names = ", ".join(known.value for known in _EFFORTS)
            raise refused("reasoning.effort", f"the Anthropic API takes an effort of {names}")
        config["effort"] = effort.value
    response_format = params.response_format
    if response_format is not None and response_format.kind is ResponseFormatKind.JSON_OBJECT:
        raise refused("response_format", "the Anthropic API takes a JSON Schema (json_schema), not a JSON object mode")
    if response_format is not None and response_format.kind is ResponseFormatKind.JSON_SCHEMA:
        config["format"] = {"type": "json_schema", "schema": dict(response_format.schema or {})}
    return config


def _tools(params: GenerationParams) -> dict[str, Any]:
    if not params.tools:
        return {}
    tools = []
    for tool in params.tool_choice.sent(params.tools):
        described = {"description": tool.description} if tool.description else {}
        strict = {"strict": True} if tool.strict else {}
        schema = dict(tool.parameters)
        tools.append({"name": tool.name, **described, "input_schema": schema, **strict, **_cache_control(tool.cache)})
    choice = params.tool_choice
    if choice.mode is ToolChoiceMode.NONE:
        return {"tools": tools, "tool_choice": {"type": "none"}}
    tool_choice: dict[str, Any] = {"type": _TOOL_CHOICES[choice.mode]}
    if choice.mode is ToolChoiceMode.NAMED:
        tool_choice["name"] = choice.name
    if not params.parallel_tool_calls:
        tool_choice["disable_parallel_tool_use"] = True
    return {"tools": tools, "tool_choice": tool_choice}


def alternating_turns(params: GenerationParams) -> list[dict[str, Any]]:
    """User and assistant turns as the Messages API wants them: alternating, starting with the user; tool results
    are blocks of the user turn after the calls, before any text the user adds."""
    if params.prompt is not None:
        return [{"role": "user", "content": params.prompt}]
    turns: list[dict[str, Any]] = []
    firsts: list[int] = []  # the index of each turn's first message
    for index, message in enumerate(params.messages):
        if message.role is Role.SYSTEM:
            continue
        role = "assistant" if message.role is Role.ASSISTANT else "user"
        content = _content(message)
        if turns and turns[-1]["role"] == role:
            previous = turns[-1]["content"]
            if isinstance(previous, str) and isinstance(content, str):
                turns[-1]["content"] = previous + "\n\n" + content
            else:
                turns[-1]["content"] = _blocks(previous) + _blocks(content)
        else:
            turns.append({"role": role, "content": content})
            firsts.append(index)
    if turns[0]["role"] != "user":
        raise refused("messages", "the Anthropic API needs the conversation to start with a user message")
    for number, (turn, index) in enumerate(zip(turns, firsts, strict=True)):
        last_assistant = number == len(turns) - 1 and turn["role"] == "assistant"
        require(
            bool(turn["content"]) or last_assistant,
            f"messages[{index}].content",
            f"messages[{index}] is empty, which the Anthropic API refuses in any message but a last assistant one"
            " (the start of its answer): give it text, or leave it out",
        )
    return turns


def _ends_in_whitespace(message: ChatMessage) -> bool:
    """Whether the message's last text, the block the API would continue, ends in whitespace."""
    texts = [part.text for part in message.parts if isinstance(part, TextPart)]
    last = texts[-1] if texts else message.content
    return not message.tool_calls and last != last.rstrip()


def _system(params: GenerationParams) -> str | list[dict[str, Any]] | None:
    """The system prompt and the system turns, joined by blank lines: a string, or, when a cache breakpoint ends one
    of them, text blocks cut where they join (the breakpoint on the block it ends), which make the same text."""
    pieces = [(params.system, params.system_cache)] if params.system else []
    pieces += [(message.content, message.cache) for message in params.messages if message.role is Role.SYSTEM]
    if all(cache is CacheBreakpoint.NONE for _, cache in pieces):
        return SYSTEM_SEPARATOR.join(text for text, _ in pieces) or None
    blocks = [
        {"type": "text", "text": (SYSTEM_SEPARATOR if index else "") + text, **_cache_control(cache)}
        for index, (text, cache) in enumerate(pieces)
    ]
    # The API refuses a whitespace-only text block: an empty system turn, which only adds a blank line, is left out.
    return [block for block in blocks if block["text"].strip()] or None


def _cache_control(cache: CacheBreakpoint) -> dict[str, Any]:
    """The block's cache_control for a breakpoint; the short one is the API's default lifetime, left unsaid so that
    Anthropic-compatible servers that know no lifetimes take it too."""
    if cache is CacheBreakpoint.NONE:
        return {}
    return {"cache_control": {"type": "ephemeral", **({"ttl": "1h"} if cache is CacheBreakpoint.LONG else {})}}


def _content(message: ChatMessage) -> str | list[dict[str, Any]]:
    """A turn as blocks, with a cache breakpoint ending the message on its last block; a plain text turn without one
    as a string, as ever."""
    content = _unmarked_content(message)
    if message.cache is CacheBreakpoint.NONE:
        return content
    blocks = _blocks(content)
    if blocks:  # an empty turn has no block to carry it, and nothing to cache beyond the turns before it
        blocks[-1] = {**blocks[-1], **_cache_control(message.cache)}
    return blocks


def _unmarked_content(message: ChatMessage) -> str | list[dict[str, Any]]:
    """A plain text turn as a string; a turn with calls, results, reasoning or parts (text, images, documents) as
    content blocks."""
    if message.role is Role.TOOL:
        result: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.tool_call_id}
        if message.parts:  # text blocks, as the client sent them
            result["content"] = _blocks(message.content) + _part_blocks(message.parts)
        elif message.content:
            result["content"] = message.content
        if message.is_error:
            result["is_error"] = True
        return [result]
    if not message.tool_calls and not message.reasoning and not message.parts:
        return message.content
    # Reasoning without a signature came from another backend (an OpenAI-compatible server's reasoning_content):
    # the API refuses a thinking block it did not sign, so it is left out, as OpenAI's leaves all reasoning out.
    blocks: list[dict[str, Any]] = [
        {"type": "redacted_thinking", "data": block.signature}
        if block.redacted
        else {"type": "thinking", "thinking": block.text, "signature": block.signature}
        for block in message.reasoning
        if block.signature
    ]
    blocks += _blocks(message.content)
    blocks += _part_blocks(message.parts)
    blocks += [
        {"type": "tool_use", "id": call.id, "name": call.name, "input": json.loads(call.arguments)}
        for call in message.tool_calls
    ]
    return blocks


def _part_blocks(parts: Sequence[ContentPart]) -> list[dict[str, Any]]:
    """The parts as blocks, but empty text parts, which the API refuses and which add nothing (one carrying a cache
    breakpoint stays, for the API to refuse rather than the breakpoint be lost)."""
    return [_part_block(part) for part in parts if not _adds_nothing(part)]


def _adds_nothing(part: ContentPart) -> bool:
    return isinstance(part, TextPart) and not part.text and part.cache is CacheBreakpoint.NONE


def _part_block(part: ContentPart) -> dict[str, Any]:
    """A text part as a text block, an image or a document as a block of its kind, by base64 data or by URL."""
    cache = _cache_control(part.cache)
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text, **cache}
    if part.url:
        source: dict[str, str] = {"type": "url", "url": part.url}
    else:
        source = {"type": "base64", "media_type": part.media_type, "data": base64.b64encode(part.data).decode()}
    if isinstance(part, ImagePart):
        return {"type": "image", "source": source, **cache}
    return {"type": "document", "source": source, **({"title": part.name} if part.name else {}), **cache}


def _blocks(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Content as blocks; empty text is left out, as the API refuses empty text blocks."""
    if isinstance(content, list):
        return content
    return [{"type": "text", "text": content}] if content else []
