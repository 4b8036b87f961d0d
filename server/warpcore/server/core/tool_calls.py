"""Tool-call deltas joined into the complete calls a Finish lists, for any backend that streams them."""

from __future__ import annotations

from collections.abc import Iterable

from warpcore.server.core.bounds import MAX_TOOL_ARGUMENTS_BYTES, quoted
from warpcore.server.core.domain import (
    FinishReason,
    ToolCallDelta,
)
from warpcore.server.core.errors import InvalidArgumentError, UnavailableError
from warpcore.server.core.json_schema import parse_json
from warpcore.server.core.tooling import (
    ToolCall,
)


class ToolCallAssembler:
    """The calls of one generation, built from its deltas; every delta is added in the order it was streamed."""

    __slots__ = ("_calls", "_declared")

    def __init__(self, declared: Iterable[str]) -> None:
        """`declared`: the names of the request's tools, the only ones a call may name (every tool a request declares
        is a function of the caller's: no server tool of a vendor's reaches a backend)."""
        self._calls: dict[int, tuple[str, str, list[str]]] = {}
        self._declared = frozenset(declared)

    def add(self, delta: ToolCallDelta) -> None:
        call = self._calls.get(delta.index)
        if call is None:
            self._calls[delta.index] = (delta.id, delta.name, [delta.arguments])
        else:
            call[2].append(delta.arguments)

    def finish(self, reason: FinishReason, *, budget_spent: bool = False) -> tuple[FinishReason, tuple[ToolCall, ...]]:
        """The finish reason and the complete calls, in index order, each of a declared tool with arguments that parse
        to a JSON object ("{}" for a call streamed without arguments). A generation cut short (max_tokens, cancelled)
        leaves out the calls it did not complete; a generation that ended normally with a broken call (a tool the
        request did not declare too) is the backend's failure, unless it had spent its whole max_tokens
        (`budget_spent`): a compatible server that reports the end of a call cut by the limit as a natural one
        (LiteLLM's Anthropic route does) finished for its length. A backend that reports a natural stop after calls
        (OpenAI does, for a named tool choice) finished with tool calls."""
        calls = []
        for index in sorted(self._calls):
            call_id, name, pieces = self._calls[index]
            arguments = "".join(pieces) or "{}"
            flaw = self._flaw(call_id, name, arguments)
            if flaw is None:
                calls.append(ToolCall(call_id, name, arguments))
            elif budget_spent:
                reason = FinishReason.LENGTH
            elif reason in (FinishReason.STOP, FinishReason.TOOL_CALLS, FinishReason.STOP_SEQUENCE):
                raise UnavailableError(
                    f"the backend ended tool call {index} broken: {flaw}", reason="UPSTREAM_MALFORMED_TOOL_CALL"
                )
        if calls and reason is FinishReason.STOP:
            reason = FinishReason.TOOL_CALLS
        return reason, tuple(calls)

    def _flaw(self, call_id: str, name: str, arguments: str) -> str | None:
        if not call_id:
            return "it has no id"
        if not name:
            return "it has no name"
        if name not in self._declared:
            return f"it calls the tool {quoted(name)}, which the request did not declare"
        return arguments_flaw(arguments)

    def unargued(self) -> tuple[ToolCallDelta, ...]:
        """A last delta of "{}" for each call streamed with no argument text (an Anthropic tool that takes none), so
        that every call's deltas join to the arguments its Finish lists; a client that builds calls from the deltas
        could not send "" back."""
        return tuple(
            ToolCallDelta(index, arguments="{}")
            for index, (call_id, name, pieces) in sorted(self._calls.items())
            if call_id and name and not any(pieces)
        )


def is_json_object(text: str) -> bool:
    """Whether `text` is JSON of an object, read as a request's tool-call arguments are (no NaN, valid Unicode, within
    their bounds): a call passed on must be one its caller can send back in the next turn."""
    return arguments_flaw(text) is None


def arguments_flaw(text: str) -> str | None:
    """What keeps `text` from being a call's arguments (`is_json_object`), in words; None when nothing does."""
    try:
        parsed = parse_json(text, "arguments", MAX_TOOL_ARGUMENTS_BYTES, "arguments")
    except InvalidArgumentError as error:
        return error.message
    return None if isinstance(parsed, dict) else "arguments are not a JSON object"
