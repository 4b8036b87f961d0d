"""Tool-call deltas joined into the complete calls a Finish lists, for any backend that streams them."""

from __future__ import annotations

from collections.abc import Iterable

from warpcore.server.core.bounds import MAX_TOOL_ARGUMENTS_BYTES, quoted
from warpcore.server.core.domain import (
    FinishReason,
    ToolCallDelta,
)
from warpcore.server.core.errors import UPSTREAM_MALFORMED_TOOL_CALL, InvalidArgumentError, UnavailableError
from warpcore.server.core.json_schema import parse_json
from warpcore.server.core.tool_rules import is_tool_name
from warpcore.server.core.tooling import (
    ToolCall,
)


class ToolCallAssembler:
    """The calls of one generation, built from its deltas; every delta is added in the order it was streamed."""

    __slots__ = ("_calls", "_declared", "_indexes")

    def __init__(self, declared: Iterable[str]) -> None:
        """`declared`: the names of the request's tools, the only ones a call may name (every tool a request declares
        is a function of the caller's: no server tool of a vendor's reaches a backend)."""
        self._calls: dict[int, tuple[str, str, list[str]]] = {}
        self._declared = frozenset(declared)
        self._indexes: dict[str, int] = {}
        """Each call's id -> its index."""

    def add(self, delta: ToolCallDelta) -> None:
        """Raises UnavailableError for a call that begins broken (no id or name, a tool the request did not declare,
        the id of an earlier call), whatever ends the answer: no token limit cuts what a call's first delta says, and
        a caller handed such a call could neither dispatch it nor answer it alone (a tester's upstream began a call
        with one id for each piece of one call's arguments). Raised before the delta is passed on, so that no door
        shows the call."""
        call = self._calls.get(delta.index)
        if call is not None:
            call[2].append(delta.arguments)
            return
        flaw = self._identity_flaw(delta.id, delta.name)
        if flaw is not None:
            raise UnavailableError(
                f"the backend began tool call {delta.index} broken: {flaw}", reason=UPSTREAM_MALFORMED_TOOL_CALL
            )
        self._calls[delta.index] = (delta.id, delta.name, [delta.arguments])
        self._indexes[delta.id] = delta.index

    def finish(self, reason: FinishReason, *, budget_spent: bool = False) -> tuple[FinishReason, tuple[ToolCall, ...]]:
        """The finish reason and the complete calls, in index order, each with arguments that parse to a JSON object
        ("{}" for a call streamed without arguments). A generation cut short (max_tokens, cancelled) leaves out the
        calls whose arguments it did not complete (a door's answer shows them as far as they came, as the vendors'
        APIs do); a generation that ended normally with arguments that do not parse is the backend's failure, unless
        it had spent its whole max_tokens (`budget_spent`): a compatible server that reports the end of a call cut by
        the limit as a natural one (LiteLLM's Anthropic route does) finished for its length. A backend that reports a
        natural stop after calls (OpenAI does, for a named tool choice) finished with tool calls."""
        calls = []
        for index in sorted(self._calls):
            call_id, name, pieces = self._calls[index]
            arguments = "".join(pieces) or "{}"
            flaw = arguments_flaw(arguments)
            if flaw is None:
                calls.append(ToolCall(call_id, name, arguments))
            elif budget_spent:
                reason = FinishReason.LENGTH
            elif reason in (FinishReason.STOP, FinishReason.TOOL_CALLS, FinishReason.STOP_SEQUENCE):
                raise UnavailableError(
                    f"the backend ended tool call {index} broken: {flaw}", reason=UPSTREAM_MALFORMED_TOOL_CALL
                )
        if calls and reason is FinishReason.STOP:
            reason = FinishReason.TOOL_CALLS
        return reason, tuple(calls)

    def _identity_flaw(self, call_id: str, name: str) -> str | None:
        if not call_id:
            return "it has no id"
        if not name:
            return "it has no name"
        if not is_tool_name(name):
            # Not quoted: the backend scrubs its upstream's key from the message (adapters/hosted/scrub.py), which
            # it would no longer find once a quote cut the name short or escaped a control character inside it.
            return f"it calls a tool by a name of {len(name)} characters that no tool may have"
        if name not in self._declared:
            return f"it calls the tool {quoted(name)}, which the request did not declare"
        if call_id in self._indexes:
            return f"it has the id {quoted(call_id)} of tool call {self._indexes[call_id]}"
        return None

    def unargued(self) -> tuple[ToolCallDelta, ...]:
        """A last delta of "{}" for each call streamed with no argument text (an Anthropic tool that takes none), so
        that every call's deltas join to the arguments its Finish lists; a client that builds calls from the deltas
        could not send "" back."""
        calls = sorted(self._calls.items())
        return tuple(ToolCallDelta(index, arguments="{}") for index, (_, _, pieces) in calls if not any(pieces))


def is_json_object(text: str) -> bool:
    """Whether `text` is JSON of an object, read as a request's tool-call arguments are (no NaN, valid Unicode, within
    their bounds): a call passed on must be one its caller can send back in the next turn."""
    return arguments_flaw(text) is None


def arguments_flaw(text: str) -> str | None:
    """What keeps `text`, a backend's, from being a call's arguments (`is_json_object`), in words; None when nothing
    does."""
    try:
        parsed = parse_json(text, "arguments", MAX_TOOL_ARGUMENTS_BYTES, "arguments", callers=False)
    except InvalidArgumentError as error:
        return error.message
    return None if isinstance(parsed, dict) else "arguments are not a JSON object"
