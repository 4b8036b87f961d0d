"""A whole generation gathered for a non-streamed answer: its parts (text, reasoning blocks, tool calls) in the
order they began, and its result; each dialect renders them in its own shape."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from warpcore.server.core.domain import (
    Finish,
    FinishReason,
    ReasoningChunk,
    TextChunk,
    ToolCallDelta,
)
from warpcore.server.core.engine import GenerationOutput, GenerationResult
from warpcore.server.core.tokens import TokenLogprob
from warpcore.server.core.tooling import (
    ToolCall,
)


@dataclass
class Part:
    kind: str
    """"text", "refusal", "reasoning" or "tool"."""
    text: str = ""
    """Text, refusal text, reasoning text, or a tool call's JSON arguments."""
    signature: str = ""
    redacted: bool = False
    id: str = ""
    name: str = ""
    logprobs: list[TokenLogprob] = field(default_factory=list)
    """A text part's tokens' log-probabilities, when asked for."""


class Collected:
    def __init__(self, logprobs: bool = False) -> None:
        self.parts: list[Part] = []
        self._logprobs = logprobs
        self._tools: dict[int, Part] = {}
        self.result: GenerationResult | None = None

    def add(self, output: GenerationOutput) -> None:
        last = self.parts[-1] if self.parts else None
        if isinstance(output, GenerationResult):
            self.result = output
        elif isinstance(output, TextChunk):
            kind = "refusal" if output.refusal else "text"
            if last is None or last.kind != kind:
                last = Part(kind)
                self.parts.append(last)
            last.text += output.text
            last.logprobs += output.logprobs
        elif isinstance(output, ReasoningChunk):
            self._reasoning(output, last)
        elif isinstance(output, ToolCallDelta):
            part = self._tools.get(output.index)
            if part is None:
                part = self._tools[output.index] = Part("tool", id=output.id, name=output.name)
                self.parts.append(part)
            part.text += output.arguments

    def _reasoning(self, chunk: ReasoningChunk, last: Part | None) -> None:
        if chunk.redacted:
            self.parts.append(Part("reasoning", signature=chunk.signature, redacted=True))
            return
        if last is None or last.kind != "reasoning" or last.signature or last.redacted:
            last = Part("reasoning")
            self.parts.append(last)
        last.text += chunk.text
        last.signature = chunk.signature

    @property
    def logprobs(self) -> list[TokenLogprob] | None:
        """The log-probabilities of the text's tokens, in order; None when the request did not ask for them."""
        if not self._logprobs:
            return None
        return [token for part in self.parts if part.kind == "text" for token in part.logprobs]

    @property
    def text(self) -> str:
        return "".join(part.text for part in self.parts if part.kind == "text")

    @property
    def refusal(self) -> str:
        """The text in which the model declined the request, if it did."""
        return "".join(part.text for part in self.parts if part.kind == "refusal")

    def tool_calls(self) -> list[tuple[ToolCall, bool]]:
        """Every call the answer holds, each with whether it is complete (`calls_of`)."""
        assert self.result is not None
        return calls_of(self.parts, self.result.finish)

    @property
    def reason(self) -> FinishReason:
        assert self.result is not None
        return self.result.finish.reason


def calls_of(parts: Sequence[Part], finish: Finish) -> list[tuple[ToolCall, bool]]:
    """Every call an answer of `parts` that ended with `finish` holds, each with whether it is complete: in the
    order they began, then those a backend gave whole, only in its result. A call that max_tokens cut short keeps the
    arguments it got, which are no whole JSON object, as the vendors' APIs hand back such a call."""
    complete = {call.id: call for call in finish.tool_calls}
    calls = [
        (complete.pop(part.id), True) if part.id in complete else (ToolCall(part.id, part.name, part.text), False)
        for part in parts
        if part.kind == "tool"
    ]
    return calls + [(call, True) for call in complete.values()]
