"""Tool calls out of generated text, as they decode: the Hermes format, `<tool_call>\\n{"name": NAME, "arguments":
ARGUMENTS}\\n</tool_call>`, which the tool grammar (schema_grammar.tool_calls_grammar) makes the model write exactly."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable

from warpcore.server.core.domain import (
    GenerationEvent,
    TextChunk,
    ToolCallDelta,
)
from warpcore.server.core.stop_scanner import StopScanner
from warpcore.server.core.tool_calls import is_json_object
from warpcore.server.core.tooling import (
    ToolCall,
)

CALL_OPENING = "<tool_call>"
_HEADER_END = ', "arguments": '
_CLOSING = "\n</tool_call>"


def call_text(name: str, arguments: str) -> str:
    """A call as the tool grammar makes the model write it (what `ToolCallText` reads back)."""
    return f'{CALL_OPENING}\n{{"name": {json.dumps(name)}{_HEADER_END}{arguments}}}{_CLOSING}'


def new_call_id() -> str:
    return f"call_{secrets.token_hex(12)}"


class ToolCallText:
    """Splits one generation's text into answer text and tool-call deltas, holding back only what may be the start
    of a marker. Text after the first call (the line breaks between calls) is not part of the answer, nor is any
    text when `calls_only`: the grammar makes the model call a tool at once, so what it writes before a call's
    opening marker is completed is the marker's beginning. The stop sequences are looked for in the answer's text
    alone: one there ends the answer (`stop`) before any call; a call, which the grammar writes, is never cut by one.

    A call after the first is held back until it is complete, and one that repeats an earlier call (same name, same
    arguments) ends the calls (`repeated`) and is dropped: a model that does not end its turn after its calls (a base
    model) writes them again and again, to the end of its token budget; the answer is its calls, not a cut. Held
    back, a call cut short is sent in part at the end, unless it may be such a repeat."""

    def __init__(self, emit: Callable[[GenerationEvent], None], stops: StopScanner, *, calls_only: bool) -> None:
        self._emit = emit
        self._stops = stops
        self._calls_only = calls_only
        self._buffer = ""
        self._state = self._text
        self._id = ""
        self._name = ""
        self._arguments: list[str] = []
        self._held: list[ToolCallDelta] = []
        self.calls: list[ToolCall] = []
        self.stop: str | None = None
        """The stop sequence found in the answer's text, which ends there: nothing more is read."""

    @property
    def repeated(self) -> bool:
        """A call repeated an earlier one: the calls are over."""
        return self._state == self._ended and self.stop is None

    @property
    def unfinished(self) -> bool:
        """A call was left with its arguments not yet whole (after `flush`: cut short, and no repeat)."""
        return self._state in (self._header, self._arguments_text)

    def feed(self, text: str) -> None:
        self._buffer += text
        while self._state():
            pass

    def flush(self, *, cut: bool) -> None:
        """The generation ended, `cut` short by its token budget or not: outside a call, what was held back is answer
        text, unless the cut fell inside a call's opening marker; a call cut short is not among the complete calls,
        but one whose arguments were written whole, before its closing line, is (the grammar writes the rest of that
        line alone): only a call cut before then is `unfinished`; one cut while it may yet be a repeat of an earlier
        call (or before it began) ends the calls, as the repeat would have (`repeated`)."""
        repeating = cut and self._repeating()  # asked before a call cut in its closing line is completed
        if self._state == self._text:
            self._answer("" if cut else self._buffer, last=True)
        elif self._state == self._arguments_text:
            self._complete_cut_call()
        if repeating:
            self._state = self._ended  # the budget ran out in a repeat: the answer is its calls, not a cut
        if cut and not self.repeated:
            # A new call cut short goes out as far as it came, as the first call's deltas and a hosted API's do; a
            # repeat never does, nor one found by its whole arguments where its closing line was cut (the model may
            # space the call's own closing brace otherwise than its first time, which _repeating reads as new).
            for delta in self._held:
                self._emit(delta)
            self._held = []
        self._buffer = ""

    def _repeating(self) -> bool:
        """Whether the call being written, after the first, so far repeats an earlier one word for word. Between
        calls, the grammar lets only the line break and the next call's opening marker follow a call, which begin
        any repeat."""
        if self._state == self._text:
            return bool(self.calls)
        if self._state == self._header:
            written = CALL_OPENING + self._buffer
        elif self._state == self._arguments_text:
            head = call_text(self._name, "").removesuffix("}" + _CLOSING)
            written = head + "".join(self._arguments) + self._buffer
        else:
            return False
        return any(call_text(call.name, call.arguments).startswith(written) for call in self.calls)

    def _complete_cut_call(self) -> None:
        written = "".join(self._arguments)
        rest = self._buffer[: len(self._buffer) - _partial(self._buffer, _CLOSING)].rstrip()
        # The grammar writes the wrapper's closing brace only after whole arguments: the rest may end with it.
        for piece in (rest, rest.removesuffix("}").rstrip()):
            if is_json_object(written + piece):
                self._send(piece)
                self._buffer = _CLOSING
                self._arguments_text()
                return

    # Each state consumes what it can of the buffer; True when it moved to another state with text left to read.

    def _text(self) -> bool:
        found = self._buffer.find(CALL_OPENING)
        end = found if found >= 0 else len(self._buffer) - _partial(self._buffer, CALL_OPENING)
        self._answer(self._buffer[:end], last=found >= 0)
        self._buffer = self._buffer[end:]
        if found < 0 or self.stop is not None:
            return False
        self._buffer = self._buffer[len(CALL_OPENING) :]
        self._state = self._header
        return True

    def _header(self) -> bool:
        end = self._buffer.find(_HEADER_END)
        if end < 0:
            return False
        self._name = json.loads(self._buffer[self._buffer.index("{") + 1 : end].split(":", 1)[1])
        self._id = new_call_id()
        self._delta(ToolCallDelta(len(self.calls), id=self._id, name=self._name))
        self._buffer = self._buffer[end + len(_HEADER_END) :]
        self._state = self._arguments_text
        return True

    def _arguments_text(self) -> bool:
        end = self._buffer.find(_CLOSING)
        if end < 0:
            # Held back: a possible start of the closing line, and before it the call's own closing brace and
            # trailing whitespace, which are not part of the arguments.
            body = self._buffer[: len(self._buffer) - _partial(self._buffer, _CLOSING)].rstrip()
            sent = self._buffer[: len(body) - 1 if body.endswith("}") else len(body)].rstrip()
            self._send(sent)
            self._buffer = self._buffer[len(sent) :]
            return False
        self._send(self._buffer[:end].removesuffix("}").rstrip())
        call = ToolCall(self._id, self._name, "".join(self._arguments))
        if any(_same(earlier, call) for earlier in self.calls):
            self._state = self._ended
            return False
        for delta in self._held:
            self._emit(delta)
        self.calls.append(call)
        self._id, self._name, self._arguments, self._held = "", "", [], []
        self._buffer = self._buffer[end + len(_CLOSING) :]
        self._state = self._text
        return True

    def _ended(self) -> bool:
        """After a repeated call: nothing more is read."""
        self._buffer = ""
        return False

    def _send(self, piece: str) -> None:
        if piece:
            self._arguments.append(piece)
            self._delta(ToolCallDelta(len(self.calls), arguments=piece))

    def _delta(self, delta: ToolCallDelta) -> None:
        if self.calls:
            self._held.append(delta)
        else:
            self._emit(delta)

    def _answer(self, text: str, *, last: bool = False) -> None:
        """Text of the answer, but for a stop sequence in it; `last`: the answer's text ends there (a call opens, or
        the generation ended), so what may have begun a stop sequence is text."""
        if self.calls or self._calls_only:
            return
        text, self.stop = self._stops.feed(text)
        if self.stop is not None:
            self._state = self._ended
        elif last:
            text += self._stops.flush()
        if text:
            self._emit(TextChunk(text))


def _same(first: ToolCall, second: ToolCall) -> bool:
    """The same call, however its arguments are spaced."""
    return first.name == second.name and json.loads(first.arguments or "{}") == json.loads(second.arguments or "{}")


def _partial(text: str, marker: str) -> int:
    """The length of the longest end of `text` that begins `marker`."""
    for length in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-length:]):
            return length
    return 0
