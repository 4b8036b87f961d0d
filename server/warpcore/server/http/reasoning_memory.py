"""Reasoning the door handed out with tool calls, kept to be handed back upstream on the next turn.

An Anthropic model that thought before calling tools needs that thinking, with its signature, in the assistant turn
the client sends back with the tool results. OpenAI's Chat Completions has no standard field for it: the door sends
`thinking_blocks`, but a client that rebuilds its messages from `content` and `tool_calls` alone drops them. So the
door remembers each answer's reasoning by its tool-call ids, and an assistant turn that comes back with those calls
and no reasoning gets it again. The memory is this process's and bounded: the oldest answers are forgotten first."""

from __future__ import annotations

import collections
import dataclasses

from warpcore.server.core.bounds import MAX_REMEMBERED_REASONING
from warpcore.server.core.domain import (
    ChatMessage,
    GenerationParams,
    ReasoningChunk,
    Role,
    ToolCallDelta,
)
from warpcore.server.core.engine import GenerationOutput
from warpcore.server.core.tooling import (
    ReasoningBlock,
)


class ReasoningMemory:
    def __init__(self, capacity: int = MAX_REMEMBERED_REASONING) -> None:
        self._blocks: collections.OrderedDict[str, tuple[ReasoningBlock, ...]] = collections.OrderedDict()
        self._capacity = capacity

    def remember(self, call_ids: list[str], blocks: tuple[ReasoningBlock, ...]) -> None:
        if not blocks or not any(block.signature for block in blocks):
            return  # unsigned reasoning: nothing an upstream checks, nothing to give back
        for call_id in call_ids:
            self._blocks[call_id] = blocks
            self._blocks.move_to_end(call_id)
        while len(self._blocks) > self._capacity:
            self._blocks.popitem(last=False)

    def restore(self, params: GenerationParams) -> GenerationParams:
        """`params` with each assistant turn that made remembered calls, and carries no reasoning, given it back."""
        messages = tuple(self._restored(message) for message in params.messages)
        return params if messages == params.messages else dataclasses.replace(params, messages=messages)

    def _restored(self, message: ChatMessage) -> ChatMessage:
        if message.role is not Role.ASSISTANT or message.reasoning or not message.tool_calls:
            return message
        blocks = self._blocks.get(message.tool_calls[0].id)
        return message if blocks is None else dataclasses.replace(message, reasoning=blocks)


class Recorder:
    """Notes one answer's reasoning blocks and tool-call ids as they stream by, for `ReasoningMemory.remember`."""

    def __init__(self) -> None:
        self.blocks: list[ReasoningBlock] = []
        self.call_ids: list[str] = []
        self._text: list[str] = []

    def note(self, output: GenerationOutput) -> None:
        if isinstance(output, ReasoningChunk):
            if output.redacted:
                self.blocks.append(ReasoningBlock(signature=output.signature, redacted=True))
                return
            self._text.append(output.text)
            if output.signature:
                self.blocks.append(ReasoningBlock("".join(self._text), output.signature))
                self._text = []
        elif isinstance(output, ToolCallDelta) and output.id:
            self.call_ids.append(output.id)
