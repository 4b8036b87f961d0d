"""Reasoning the door handed out with tool calls on the Chat Completions route, kept to be handed back upstream on
the next turn.

An Anthropic model that thought before calling tools needs that thinking, with its signature, in the assistant turn
the client sends back with the tool results. OpenAI's Chat Completions has no standard field for it: the door sends
`thinking_blocks`, but a client that rebuilds its messages from `content` and `tool_calls` alone drops them. So the
door remembers each answer's reasoning by its model and its tool-call ids, and an assistant turn that comes back with
exactly those calls (same ids, order and count), to the same model, with reasoning asked for and none in the turn,
gets it again. Anything less is another conversation, or a client that left the reasoning out on purpose: its turn
goes as sent. The memory is this process's and bounded: the answers least recently remembered or given back are
forgotten first."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
from collections.abc import AsyncGenerator, Sequence

from warpcore.server.core.bounds import MAX_REMEMBERED_REASONING
from warpcore.server.core.domain import (
    ChatMessage,
    GenerationParams,
    ReasoningChunk,
    Role,
    ToolCallDelta,
)
from warpcore.server.core.engine import GenerationOutput, GenerationResult
from warpcore.server.core.tooling import (
    ReasoningBlock,
)

Answer = tuple[str, tuple[str, ...]]
"""An answer as the next turn names it again: its model id, and its tool calls' ids in order."""


class ReasoningMemory:
    def __init__(self, capacity: int = MAX_REMEMBERED_REASONING) -> None:
        self._blocks: collections.OrderedDict[Answer, tuple[ReasoningBlock, ...]] = collections.OrderedDict()
        self._capacity = capacity

    @staticmethod
    def records(params: GenerationParams) -> bool:
        """Whether an answer to `params` may have anything to remember: thinking asked for, and tools it may call
        after it. Any other generation is not `recorded`, whose layer each of its outputs would pass through."""
        return bool(params.tools) and _asks_reasoning(params)

    async def recorded(
        self, model: str, outputs: AsyncGenerator[GenerationOutput, None]
    ) -> AsyncGenerator[GenerationOutput, None]:
        """`outputs`, a generation of `model`, passed on as they come; the reasoning and tool calls of its answer
        remembered at its result."""
        recorder = _Recorder()
        async with contextlib.aclosing(outputs):  # closed with this one, so that a client gone stops the backend
            async for output in outputs:
                if isinstance(output, GenerationResult):
                    ids = recorder.call_ids or [call.id for call in output.finish.tool_calls]
                    self.remember(model, ids, tuple(recorder.blocks))
                recorder.note(output)
                yield output

    def remember(self, model: str, call_ids: Sequence[str], blocks: tuple[ReasoningBlock, ...]) -> None:
        if not call_ids or not any(block.signature for block in blocks):
            return  # unsigned reasoning: nothing an upstream checks, nothing to give back
        answer = (model, tuple(call_ids))
        self._blocks[answer] = blocks
        self._blocks.move_to_end(answer)
        while len(self._blocks) > self._capacity:
            self._blocks.popitem(last=False)

    def restore(self, model: str, params: GenerationParams) -> GenerationParams:
        """`params` with each assistant turn that made the very calls of an answer of `model` remembered, and carries
        no reasoning, given its reasoning back; as they are when they ask for no reasoning: an upstream wants its
        signed thinking back only when it thinks on, and a request that does not ask for it gets none unasked."""
        if not _asks_reasoning(params):
            return params
        messages = tuple(self._restored(model, message) for message in params.messages)
        return params if messages == params.messages else dataclasses.replace(params, messages=messages)

    def _restored(self, model: str, message: ChatMessage) -> ChatMessage:
        if message.role is not Role.ASSISTANT or message.reasoning or not message.tool_calls:
            return message
        answer = (model, tuple(call.id for call in message.tool_calls))
        blocks = self._blocks.get(answer)
        if blocks is None:
            return message
        self._blocks.move_to_end(answer)  # a conversation going on sends it back each turn: keep it
        return dataclasses.replace(message, reasoning=blocks)


class _Recorder:
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


def _asks_reasoning(params: GenerationParams) -> bool:
    return params.reasoning is not None and not params.reasoning.off
