"""A domain generation as the Responses API's event stream: response.created and .in_progress, then each output item
added, its deltas and done, then response.completed (or .incomplete), whose response the openai SDK's `responses.stream`
accumulator returns; every event numbered by `sequence_number`.

The parts are gathered as for a whole answer (collect.py), so that the items streamed and those of the last event are
the whole answer's. A text or reasoning item is done when the next part begins; function calls stay open until the
end, as an upstream may interleave the arguments of parallel calls, and their final arguments are the result's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from warpcore.server.core.domain import Finish, FinishReason, ReasoningChunk, TextChunk, ToolCallDelta
from warpcore.server.core.engine import GenerationOutput
from warpcore.server.core.errors import WarpcoreError
from warpcore.server.core.tokens import PromptUsage
from warpcore.server.core.tooling import ToolCall
from warpcore.server.http.collect import Collected
from warpcore.server.http.errors import openai_error
from warpcore.server.http.openai_response import logprob_entries
from warpcore.server.http.responses_request import FIELD_NAMES
from warpcore.server.http.responses_response import (
    Head,
    failure,
    function_call,
    message,
    output_items,
    output_text,
    reasoning,
    refusal,
    status,
)
from warpcore.server.http.sse import event


class ResponsesStream:
    def __init__(self, model: str, echo: Mapping[str, Any]) -> None:
        self._head = Head(model, echo)
        self._collected = Collected()
        self._sequence = 0
        self._open: int | None = None
        """The output index of the open text or reasoning item."""
        self._calls: dict[int, int] = {}
        """The output index of each tool call's item, by the call's index."""

    def _event(self, kind: str, **fields: Any) -> bytes:
        self._sequence += 1
        return event({"type": kind, **fields, "sequence_number": self._sequence - 1}, kind)

    def start(self, prompt: PromptUsage | None) -> bytes:
        """The prompt's usage has no place before the response's end."""
        response = self._head.response("in_progress", [], None)
        return self._event("response.created", response=response) + self._event(
            "response.in_progress", response=response
        )

    def feed(self, output: GenerationOutput) -> bytes:
        parts = self._collected.parts
        began = len(parts)
        self._collected.add(output)
        index = len(parts) - 1
        if isinstance(output, TextChunk):
            head = self._begin_text(index, output.refusal) if len(parts) > began else b""
            if output.refusal:
                return head + self._item_event("response.refusal.delta", index, content_index=0, delta=output.text)
            logprobs = logprob_entries(output.logprobs, with_bytes=False)
            delta = self._item_event(
                "response.output_text.delta", index, content_index=0, delta=output.text, logprobs=logprobs
            )
            return head + delta
        if isinstance(output, ReasoningChunk):
            return self._reasoning(output, index, len(parts) > began)
        if isinstance(output, ToolCallDelta):
            return self._tool(output, index)
        return b""

    def _item_event(self, kind: str, index: int, **fields: Any) -> bytes:
        item_id = self._head.item_id(self._collected.parts[index].kind, index)
        return self._event(kind, item_id=item_id, output_index=index, **fields)

    def _added(self, index: int, item: dict[str, Any]) -> bytes:
        return self._event("response.output_item.added", output_index=index, item=item)

    def _begin_text(self, index: int, refused: bool) -> bytes:
        added = self._close() + self._added(index, message(self._head.item_id("text", index), "in_progress", []))
        self._open = index
        part = refusal() if refused else output_text()
        return added + self._item_event("response.content_part.added", index, content_index=0, part=part)

    def _reasoning(self, chunk: ReasoningChunk, index: int, began: bool) -> bytes:
        part = self._collected.parts[index]
        out = b""
        if began:
            item = reasoning(self._head.item_id("reasoning", index), part)
            out += self._close() + self._added(index, {**item, "summary": [], "encrypted_content": None})
            self._open = index
            if not chunk.redacted:
                summary = {"type": "summary_text", "text": ""}
                out += self._item_event("response.reasoning_summary_part.added", index, summary_index=0, part=summary)
        if chunk.text:
            out += self._item_event("response.reasoning_summary_text.delta", index, summary_index=0, delta=chunk.text)
        return out + (self._close() if chunk.signature else b"")

    def _tool(self, delta: ToolCallDelta, index: int) -> bytes:
        out = b""
        if delta.index not in self._calls:
            self._calls[delta.index] = index
            call = ToolCall(delta.id, delta.name, "")
            out += self._close() + self._added(
                index, function_call(self._head.item_id("tool", index), call, "in_progress")
            )
        if delta.arguments:
            position = self._calls[delta.index]
            out += self._item_event("response.function_call_arguments.delta", position, delta=delta.arguments)
        return out

    def _close(self, item: dict[str, Any] | None = None) -> bytes:
        """The done events of the open text or reasoning item: `item` as the whole answer renders it, at the end;
        before, as it stands (complete: another part followed it)."""
        if self._open is None:
            return b""
        index, self._open = self._open, None
        part = self._collected.parts[index]
        item_id = self._head.item_id(part.kind, index)
        if part.kind in ("text", "refusal"):
            item = item or message(item_id, "completed", [output_text(part) if part.kind == "text" else refusal(part)])
            content = item["content"][0]
            if part.kind == "text":
                done = {"text": part.text, "logprobs": logprob_entries(part.logprobs, with_bytes=False)}
                closing = self._item_event("response.output_text.done", index, content_index=0, **done)
            else:
                closing = self._item_event("response.refusal.done", index, content_index=0, refusal=part.text)
            closing += self._item_event("response.content_part.done", index, content_index=0, part=content)
        else:
            item = item or reasoning(item_id, part)
            closing = b""
            for number, summary in enumerate(item["summary"]):
                fields = {"summary_index": number}
                closing += self._item_event(
                    "response.reasoning_summary_text.done", index, text=summary["text"], **fields
                )
                closing += self._item_event("response.reasoning_summary_part.done", index, part=summary, **fields)
        return closing + self._event("response.output_item.done", output_index=index, item=item)

    def end(self, finish: Finish) -> bytes:
        items = output_items(self._head, self._collected.parts, finish)
        out = self._close(items[self._open]) if self._open is not None else b""
        for index in sorted(self._calls.values()):
            arguments = items[index]["arguments"]
            out += self._item_event("response.function_call_arguments.done", index, arguments=arguments)
            out += self._event("response.output_item.done", output_index=index, item=items[index])
        for index in range(len(self._collected.parts), len(items)):  # calls given whole, in the result only
            out += self._added(index, items[index]) + self._event(
                "response.output_item.done", output_index=index, item=items[index]
            )
        state = status(finish)
        kind = "response.completed" if state == "completed" else "response.incomplete"
        return out + self._event(kind, response=self._head.response(state, items, finish))

    def fail(self, error: WarpcoreError, request_id: str, cut: Finish | None) -> bytes:
        """An `error` event with the error as the API's error bodies give it, then response.failed, which ends the
        response's life as a failed one: with the usage of the generation it `cut`, in the response's `usage`."""
        body = openai_error(error, FIELD_NAMES)["error"]
        out = self._event("error", code=body["code"], message=body["message"], param=body["param"])
        # What was sent before the failure stays in the response's output, each item incomplete.
        items = output_items(self._head, self._collected.parts, Finish(FinishReason.ERROR))
        response = self._head.response("failed", items, cut, failure(error))
        return out + self._event("response.failed", response=response)
