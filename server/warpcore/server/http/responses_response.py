"""Domain generations as OpenAI Responses `response` objects: output items (reasoning, messages, function calls) in
the order their parts began, status, usage, and the request's settings repeated. The whole answer and the stream's
last event render the same parts alike (responses_stream.py)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from warpcore.server.core.domain import Finish, FinishReason
from warpcore.server.core.errors import ErrorCode, WarpcoreError
from warpcore.server.core.tooling import ToolCall
from warpcore.server.http.collect import Collected, Part, calls_of
from warpcore.server.http.openai_response import logprob_entries

_PREFIXES = {"text": "msg", "refusal": "msg", "reasoning": "rs", "tool": "fc"}
# A paused turn too: as on the chat route, whose "stop" it is (openai_response.FINISH_REASONS).
_COMPLETED = (FinishReason.STOP, FinishReason.STOP_SEQUENCE, FinishReason.TOOL_CALLS, FinishReason.PAUSED)
# Why a response is incomplete, by the finish that cut it: a LENGTH the context window ended is max_output_tokens
# too, the API's one reason for an answer cut by its length.
_INCOMPLETE = {FinishReason.LENGTH: "max_output_tokens", FinishReason.CONTENT_FILTER: "content_filter"}
# The codes a failed response's `error` may carry (the SDK's ResponseError), by the domain's.
_FAILURE_CODES = {ErrorCode.RESOURCE_EXHAUSTED: "rate_limit_exceeded", ErrorCode.INVALID_ARGUMENT: "invalid_prompt"}


@dataclass(frozen=True)
class Head:
    """What names one response for its whole life: every event of its stream, and every item in it, says the same."""

    model: str
    echo: Mapping[str, Any]
    key: str = field(default_factory=lambda: uuid.uuid4().hex)
    created_at: int = field(default_factory=lambda: int(time.time()))

    def item_id(self, kind: str, index: int) -> str:
        return f"{_PREFIXES[kind]}_{self.key}_{index}"

    def response(
        self, status: str, output: list[dict[str, Any]], finish: Finish | None, error: dict[str, str] | None = None
    ) -> dict[str, Any]:
        cut = None if finish is None else _INCOMPLETE.get(finish.reason)
        return {
            "id": f"resp_{self.key}",
            "object": "response",
            "created_at": self.created_at,
            "completed_at": int(time.time()) if status == "completed" else None,
            "status": status,
            "model": self.model,
            "output": output,
            "error": error,
            "incomplete_details": {"reason": cut} if cut else None,
            "usage": None if finish is None else _usage(finish),  # None too when the backend reported none
            **self.echo,
        }


def status(finish: Finish) -> str:
    return "completed" if finish.reason in _COMPLETED else "incomplete"


def failure(error: WarpcoreError) -> dict[str, str]:
    """A failed response's `error`: the nearest of the codes the API gives there."""
    return {"code": _FAILURE_CODES.get(error.code, "server_error"), "message": error.message}


def _usage(finish: Finish) -> dict[str, Any] | None:
    """OpenAI counts cached prompt tokens within `input_tokens`, and reasoning tokens within `output_tokens`."""
    if (counts := finish.counts()) is None:
        return None
    prompt_tokens, completion_tokens = counts
    return {
        "input_tokens": prompt_tokens,
        "input_tokens_details": {
            "cached_tokens": finish.cached_prompt_tokens,
            "cache_write_tokens": finish.cache_creation_tokens,
        },
        "output_tokens": completion_tokens,
        "output_tokens_details": {"reasoning_tokens": finish.reasoning_tokens or 0},  # the SDK requires a number
        "total_tokens": prompt_tokens + completion_tokens,
    }


def output_text(part: Part | None = None) -> dict[str, Any]:
    """A text part (none yet: an empty one) as the content of a message item."""
    text, logprobs = (part.text, logprob_entries(part.logprobs)) if part else ("", [])
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs}


def refusal(part: Part | None = None) -> dict[str, Any]:
    """A refusal part (none yet: an empty one) as the content of a message item."""
    return {"type": "refusal", "refusal": part.text if part else ""}


def message(item_id: str, state: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": item_id, "type": "message", "role": "assistant", "status": state, "content": content}


def function_call(item_id: str, call: ToolCall, state: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "call_id": call.id,
        "name": call.name,
        "arguments": call.arguments,
        "status": state,
    }


def reasoning(item_id: str, part: Part) -> dict[str, Any]:
    """A reasoning block as an item: its text as the summary, and its signature (or a redacted block's data, with no
    summary part) as the encrypted content a client hands back with the next input."""
    summary = [] if part.redacted else [{"type": "summary_text", "text": part.text}]
    return {"id": item_id, "type": "reasoning", "summary": summary, "encrypted_content": part.signature or None}


def output_items(head: Head, parts: Sequence[Part], finish: Finish) -> list[dict[str, Any]]:
    """An item per part, in order: the last one `incomplete` when the answer was cut short, a function call whose
    arguments a cut left unfinished too; then the calls a backend gave whole, only in its result."""
    calls = iter(calls_of(parts, finish))  # in the order of the tool parts, then any given only whole
    last = status(finish)
    items = []
    for index, part in enumerate(parts):
        state = last if index == len(parts) - 1 else "completed"
        item_id = head.item_id(part.kind, index)
        if part.kind in ("text", "refusal"):
            items.append(message(item_id, state, [output_text(part) if part.kind == "text" else refusal(part)]))
        elif part.kind == "reasoning":
            items.append(reasoning(item_id, part))
        else:
            call, complete = next(calls)
            items.append(function_call(item_id, call, "completed" if complete else "incomplete"))
    items += [function_call(head.item_id("tool", len(items)), call, "completed") for call, _ in calls]
    return items


def answer(model: str, echo: Mapping[str, Any], collected: Collected) -> dict[str, Any]:
    assert collected.result is not None
    head, finish = Head(model, echo), collected.result.finish
    return head.response(status(finish), output_items(head, collected.parts, finish), finish)
