"""Parallel tool calls streamed one after another, as OpenAI's API streams them: the openai SDK's stream helper takes
a call's first delta as the end of the call before (its `arguments.done` event, its strict parse)."""

from __future__ import annotations

import json

from warpcore.server.core.domain import ToolCallDelta


class CallOrder:
    """The deltas of an upstream that interleaves its calls (an OpenAI-compatible server may), reordered: a later
    call's wait until the open call's arguments are a whole JSON value, which no further piece can extend, or until
    the stream ends. Calls that come one after another pass at once."""

    def __init__(self) -> None:
        self._open: int | None = None
        self._arguments = ""
        """The open call's arguments so far."""
        self._held: dict[int, list[ToolCallDelta]] = {}

    def take(self, delta: ToolCallDelta) -> list[ToolCallDelta]:
        """The deltas to send now, `delta` among them unless it waits."""
        if self._open is None:
            self._open = delta.index
        if delta.index != self._open:
            self._held.setdefault(delta.index, []).append(delta)
            return self._released()
        self._arguments += delta.arguments
        return [delta, *self._released()] if self._held else [delta]

    def rest(self) -> list[ToolCallDelta]:
        """At the stream's end: the calls still waiting, each whole in turn."""
        held, self._held = self._held, {}
        return [delta for index in sorted(held) for delta in held[index]]

    def _released(self) -> list[ToolCallDelta]:
        released: list[ToolCallDelta] = []
        while self._held and _whole(self._arguments):
            index = min(self._held)
            deltas = self._held.pop(index)
            self._open, self._arguments = index, "".join(delta.arguments for delta in deltas)
            released += deltas
        return released


def _whole(arguments: str) -> bool:
    try:
        json.loads(arguments)
    except ValueError:
        return False
    return True
