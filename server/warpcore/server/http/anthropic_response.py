"""Domain generations as Anthropic Messages: the whole message, or its event sequence (message_start, with the
prompt's usage when the backend told it first, content blocks one after another, message_delta, message_stop),
which the anthropic SDK's accumulator folds back into the same message."""

from __future__ import annotations

import json
import uuid
from typing import Any

import jiter

from warpcore.server.core.domain import Finish, FinishReason, ReasoningChunk, TextChunk, ToolCallDelta
from warpcore.server.core.engine import GenerationOutput
from warpcore.server.core.errors import WarpcoreError
from warpcore.server.core.tokens import PromptUsage
from warpcore.server.core.tooling import ToolCall
from warpcore.server.http.anthropic_request import FIELD_NAMES
from warpcore.server.http.collect import Collected, Part
from warpcore.server.http.errors import anthropic_error
from warpcore.server.http.sse import SLOT, event, fill, template

STOP_REASONS = {
    FinishReason.STOP: "end_turn",
    FinishReason.STOP_SEQUENCE: "stop_sequence",
    FinishReason.LENGTH: "max_tokens",
    FinishReason.TOOL_CALLS: "tool_use",
    FinishReason.CONTENT_FILTER: "refusal",
    FinishReason.PAUSED: "pause_turn",
}


def _usage(counts: Finish | PromptUsage) -> dict[str, Any]:
    """A message's usage: the prompt's tokens, and once the answer is finished its own. Anthropic counts a prompt
    in three parts that add up to the whole: read from the cache, written to it, and the rest (`input_tokens`). A
    count the backend did not report is 0, as the API has integers alone there (the SDK requires them)."""
    cached = counts.cached_prompt_tokens + counts.cache_creation_tokens
    return {
        "input_tokens": max((counts.prompt_tokens or 0) - cached, 0),
        "output_tokens": (counts.completion_tokens or 0) if isinstance(counts, Finish) else 0,
        "cache_creation_input_tokens": counts.cache_creation_tokens,
        "cache_read_input_tokens": counts.cached_prompt_tokens,
    }


def _stop(finish: Finish, refused: bool) -> dict[str, Any]:
    """The message's stop_reason and stop_sequence (the string that matched, when the backend said which). A model
    that declined in words (an OpenAI refusal, which comes as text here) stopped as Claude's refusals do; a LENGTH
    the context window ended, not max_tokens, is told as Claude tells it."""
    if refused and finish.reason is FinishReason.STOP:
        reason = "refusal"
    elif finish.context_window_exceeded:
        reason = "model_context_window_exceeded"
    else:
        reason = STOP_REASONS[finish.reason]
    return {"stop_reason": reason, "stop_sequence": finish.stop_sequence or None}


def _block(part: Part) -> dict[str, Any]:
    if part.kind in ("text", "refusal"):
        return {"type": "text", "text": part.text}
    if part.redacted:
        return {"type": "redacted_thinking", "data": part.signature}
    return {"type": "thinking", "thinking": part.text, "signature": part.signature}


def _tool_use(call: ToolCall, complete: bool) -> dict[str, Any]:
    """A call's block. A call that max_tokens cut short gets as much of its input as its arguments' beginning
    holds, read as the anthropic SDK's stream accumulator reads it."""
    if complete:
        arguments = json.loads(call.arguments or "{}")
    else:
        try:
            arguments = jiter.from_json(call.arguments.encode(), partial_mode=True) if call.arguments else {}
        except ValueError:  # no JSON beginning at all
            arguments = {}
    return {
        "type": "tool_use",
        "id": call.id,
        "name": call.name,
        "input": arguments if isinstance(arguments, dict) else {},
    }


def message(model: str, collected: Collected) -> dict[str, Any]:
    assert collected.result is not None
    finish = collected.result.finish
    calls = iter(collected.tool_calls())  # in the order of the answer's tool parts, then any given only whole
    content = [_tool_use(*next(calls)) if part.kind == "tool" else _block(part) for part in collected.parts]
    content += [_tool_use(*rest) for rest in calls]
    return {
        "id": f"msg_{uuid.uuid4().hex}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        **_stop(finish, refused=bool(collected.refusal)),
        "usage": _usage(finish),
    }


class AnthropicStream:
    """The events of one streamed message. Blocks never interleave, and no delta follows its block's stop: a tool
    call whose deltas arrive while another call's block is open (an OpenAI upstream may interleave parallel calls)
    waits, and gets its own block once the open one closes, so that no two calls are ever merged; text that arrives
    while calls are under way waits for them to end (an OpenAI upstream may yet send a call's later arguments, and a
    closed block takes none), and goes after them, where the whole message has it too. Thinking ends the calls under
    way: Claude thinks between its calls (interleaved thinking) once each is whole."""

    def __init__(self, model: str) -> None:
        self._model = model
        self._blocks = 0
        self._open: tuple[str, int] | None = None  # ("text" | "thinking" | "tool", tool index)
        self._tool_blocks: dict[int, int] = {}
        self._waiting: dict[int, list[ToolCallDelta]] = {}
        self._text = (b"", b"")
        """The open text block's delta event, around its text."""
        self._refused = False
        self._held: list[TextChunk] = []
        """Text that came while tool calls were under way, to follow them."""

    def start(self, prompt: PromptUsage | None) -> bytes:
        """message_start, with the prompt's usage when the backend told it (else 0, and message_delta tells it)."""
        head = {"id": f"msg_{uuid.uuid4().hex}", "type": "message", "role": "assistant", "model": self._model}
        body: dict[str, Any] = {**head, "content": [], "stop_reason": None, "stop_sequence": None}
        usage = _usage(prompt or PromptUsage(0))
        return event({"type": "message_start", "message": {**body, "usage": usage}}, "message_start")

    def _begin(self, block: dict[str, Any], key: tuple[str, int]) -> bytes:
        closing = self._close()
        self._open = key
        start = {"type": "content_block_start", "index": self._blocks, "content_block": block}
        return closing + event(start, "content_block_start")

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        self._blocks += 1
        return event({"type": "content_block_stop", "index": self._blocks - 1}, "content_block_stop")

    def _delta(self, delta: dict[str, Any], index: int | None = None) -> bytes:
        at = self._blocks if index is None else index
        return event({"type": "content_block_delta", "index": at, "delta": delta}, "content_block_delta")

    def feed(self, output: GenerationOutput) -> bytes:
        if isinstance(output, TextChunk):
            if output.refusal:
                self._refused = True
            if self._held or self._waiting or (self._open is not None and self._open[0] == "tool"):
                self._held.append(output)
                return b""
            if self._open == ("text", 0):
                return fill(self._text, output.text)
            head = self._flush() + self._begin({"type": "text", "text": ""}, ("text", 0))
            delta = {
                "type": "content_block_delta",
                "index": self._blocks,
                "delta": {"type": "text_delta", "text": SLOT},
            }
            self._text = template(delta, "content_block_delta")
            return head + fill(self._text, output.text)
        if isinstance(output, ReasoningChunk):
            return self._reasoning(output)
        if isinstance(output, ToolCallDelta):
            return self._tool(output)
        return b""

    def _reasoning(self, chunk: ReasoningChunk) -> bytes:
        if chunk.redacted:
            block = {"type": "redacted_thinking", "data": chunk.signature}
            return self._release() + self._begin(block, ("redacted", 0)) + self._close()
        head = b""
        if self._open != ("thinking", 0):
            head = self._release() + self._begin({"type": "thinking", "thinking": "", "signature": ""}, ("thinking", 0))
        if chunk.text:
            head += self._delta({"type": "thinking_delta", "thinking": chunk.text})
        if chunk.signature:
            head += self._delta({"type": "signature_delta", "signature": chunk.signature}) + self._close()
        return head

    def _tool(self, delta: ToolCallDelta) -> bytes:
        if self._open == ("tool", delta.index):
            return self._arguments(delta.arguments)
        if delta.index in self._tool_blocks:
            # Late arguments of a call whose block closed: still its own block, by index.
            return self._arguments(delta.arguments, self._tool_blocks[delta.index])
        if (self._open is not None and self._open[0] == "tool") or delta.index in self._waiting:
            self._waiting.setdefault(delta.index, []).append(delta)
            return b""
        return self._open_tool([delta])

    def _open_tool(self, deltas: list[ToolCallDelta]) -> bytes:
        first = deltas[0]
        block = {"type": "tool_use", "id": first.id, "name": first.name, "input": {}}
        head = self._begin(block, ("tool", first.index))
        self._tool_blocks[first.index] = self._blocks
        return head + self._arguments("".join(delta.arguments for delta in deltas))

    def _arguments(self, partial: str, index: int | None = None) -> bytes:
        return self._delta({"type": "input_json_delta", "partial_json": partial}, index) if partial else b""

    def _flush(self) -> bytes:
        """Close the open block, then give each waiting tool call its block."""
        out = self._close()
        for index in sorted(self._waiting):
            out += self._open_tool(self._waiting.pop(index)) + self._close()
        return out

    def _release(self) -> bytes:
        """End the tool calls under way, as `_flush` does, then the text held for after them."""
        out = self._flush()
        held, self._held = self._held, []
        for chunk in held:
            out += self.feed(chunk)
        return out + (self._close() if held else b"")

    def end(self, finish: Finish) -> bytes:
        closing = self._release()
        usage = _usage(finish)
        return (
            closing
            + event({"type": "message_delta", "delta": _stop(finish, self._refused), "usage": usage}, "message_delta")
            + event({"type": "message_stop"}, "message_stop")
        )

    def fail(self, error: WarpcoreError, request_id: str, cut: Finish | None) -> bytes:
        """An `error` event, which the anthropic SDK raises as an APIStatusError of the error's type. The usage of a
        generation it `cut` has no place here: message_delta, which carries it, says how the message ended (its
        stop_reason), and no reason of the API's says "cut by a shutdown"."""
        return event(anthropic_error(error, request_id, FIELD_NAMES), "error")
