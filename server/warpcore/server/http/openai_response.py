"""Domain generations as OpenAI Chat Completions: the whole answer, or its `chat.completion.chunk` events, which the
openai SDK's stream accumulator folds back into the same answer; and what the legacy Completions' answers share with
them (the usage, the header, the end of a stream)."""

from __future__ import annotations

import math
import struct
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from warpcore.server.core.domain import Finish, FinishReason, ReasoningChunk, TextChunk, ToolCallDelta
from warpcore.server.core.engine import GenerationOutput
from warpcore.server.core.errors import WarpcoreError
from warpcore.server.core.tokens import PromptUsage, TokenLogprob, TopLogprob
from warpcore.server.http.call_order import CallOrder
from warpcore.server.http.collect import Collected
from warpcore.server.http.errors import openai_error
from warpcore.server.http.openai_request import FIELD_NAMES
from warpcore.server.http.sse import DONE, SLOT, event, fill, template

FINISH_REASONS = {
    FinishReason.STOP: "stop",
    FinishReason.STOP_SEQUENCE: "stop",
    FinishReason.LENGTH: "length",  # the context window's end too: the API says nothing else for it
    FinishReason.TOOL_CALLS: "tool_calls",
    FinishReason.CONTENT_FILTER: "content_filter",
    # The chat API has no paused turn, and an OpenAI route cannot continue one (an Anthropic model refuses an
    # assistant message last there): the answer stands as it is.
    FinishReason.PAUSED: "stop",
}


def usage_of(finish: Finish) -> dict[str, Any] | None:
    """None (`usage: null`, which the openai SDK types as optional) when the backend did not report the usage; its
    `completion_tokens_details` (optional too) only when the backend counts reasoning tokens apart."""
    if (counts := finish.counts()) is None:
        return None
    prompt_tokens, completion_tokens = counts
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {
            "cached_tokens": finish.cached_prompt_tokens,
            "cache_write_tokens": finish.cache_creation_tokens,
        },
    }
    if finish.reasoning_tokens is not None:
        usage["completion_tokens_details"] = {"reasoning_tokens": finish.reasoning_tokens}
    return usage


_SINGLE = struct.Struct("<f")


def single(value: float) -> float:
    """`value` as the gRPC door's `float` fields carry it, so that both doors give equal log-probabilities."""
    try:
        narrowed: float = _SINGLE.unpack(_SINGLE.pack(value))[0]
    except OverflowError:  # beyond single precision's range, where protobuf stores an infinity
        return math.copysign(math.inf, value)
    return narrowed


def _token(token: TokenLogprob | TopLogprob, with_bytes: bool) -> dict[str, Any]:
    entry = {"token": token.text, "logprob": single(token.logprob)}
    return {**entry, "bytes": list(token.token)} if with_bytes else entry


def logprob_entries(tokens: Sequence[TokenLogprob], with_bytes: bool = True) -> list[dict[str, Any]]:
    """Tokens' log-probabilities as both OpenAI APIs give them: each token's text and bytes (but in the Responses
    API's text delta and done events, which have none), and the most likely tokens at its place."""
    return [
        {**_token(token, with_bytes), "top_logprobs": [_token(top, with_bytes) for top in token.top]}
        for token in tokens
    ]


def _logprobs(tokens: Sequence[TokenLogprob]) -> dict[str, Any]:
    return {"content": logprob_entries(tokens), "refusal": None}


def header(model: str, kind: str, id_prefix: str = "chatcmpl") -> dict[str, Any]:
    return {
        "id": f"{id_prefix}-{uuid.uuid4().hex}",
        "object": kind,
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": None,
    }


def _thinking_block(signature: str, redacted: bool, text: str = "") -> dict[str, Any]:
    """A reasoning block with what Anthropic needs back on the next turn: the signature, or the redacted data."""
    if redacted:
        return {"type": "redacted_thinking", "data": signature}
    return {"type": "thinking", "thinking": text, "signature": signature}


def completion(model: str, collected: Collected) -> dict[str, Any]:
    assert collected.result is not None
    calls = [call for call, _ in collected.tool_calls()]  # a call cut short too, as the API hands it back
    message: dict[str, Any] = {
        "role": "assistant",
        "content": collected.text if collected.text or not (calls or collected.refusal) else None,
        "refusal": collected.refusal or None,
    }
    reasoning = [part for part in collected.parts if part.kind == "reasoning"]
    if reasoning:
        message["reasoning_content"] = "".join(part.text for part in reasoning)
        message["thinking_blocks"] = [_thinking_block(p.signature, p.redacted, p.text) for p in reasoning]
    if calls:
        message["tool_calls"] = [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
            for call in calls
        ]
    logprobs = None if collected.logprobs is None else _logprobs(collected.logprobs)
    choice = {"index": 0, "message": message, "logprobs": logprobs, "finish_reason": FINISH_REASONS[collected.reason]}
    return {**header(model, "chat.completion"), "choices": [choice], "usage": usage_of(collected.result.finish)}


class ChunkStream:
    """The end of a stream of OpenAI chunks: the usage chunk (empty `choices`, as the API sends it) when the request
    asked for it, or the error event."""

    def __init__(self, fields: dict[str, Any], include_usage: bool, field_names: Mapping[str, str]) -> None:
        # Asked for usage, every chunk but the usage chunk carries `"usage": null`, as the API's do.
        self._header = {**fields, **({"usage": None} if include_usage else {})}
        self._include_usage = include_usage
        self._field_names = field_names

    def _usage(self, finish: Finish | None) -> bytes:
        """The usage chunk, when the request asked for it (stream_options.include_usage) and the backend told it: the
        API's usage chunk always holds one, and code reads it from the chunk with empty `choices` without a check; a
        stream whose usage is not known (a hosted one cut before its end, an upstream that reports none) ends
        without it, as the API's stream cut short does."""
        usage = None if finish is None or not self._include_usage else usage_of(finish)
        if usage is None:
            return b""
        return event({**self._header, "choices": [], "usage": usage})

    def fail(self, error: WarpcoreError, request_id: str, cut: Finish | None) -> bytes:
        """An `error` event, which the openai SDK raises as an APIError; after the usage of the generation it cut, as
        a finished stream gives it, for a client that bills or budgets by it (a tester's finding)."""
        return self._usage(cut) + event(openai_error(error, self._field_names))


class OpenAIStream(ChunkStream):
    """The events of one streamed completion: a first chunk with the role, one chunk per delta, a last chunk with
    the finish reason, the usage chunk when asked for, then [DONE]."""

    def __init__(self, model: str, include_usage: bool) -> None:
        super().__init__(header(model, "chat.completion.chunk"), include_usage, FIELD_NAMES)
        self._reasoning_blocks = 0
        self._reasoning_open = False  # reasoning text went into block `_reasoning_blocks`, which has no signature yet
        self._role_pending = True
        self._answered = False  # text, a refusal or a call went out: the message's content is not left ""
        self._text = template(self._choice({"content": SLOT}))
        self._calls = CallOrder()

    def _choice(
        self, delta: dict[str, Any], finish_reason: str | None = None, logprobs: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}
        return {**self._header, "choices": [choice]}

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        return event(self._choice(delta, finish_reason))

    def start(self, prompt: PromptUsage | None) -> bytes:
        """Nothing yet: the role chunk goes with the first delta, whose kind it depends on. The prompt's usage has
        no place before the usage chunk at the end."""
        return b""

    def _role(self, output: GenerationOutput | None) -> bytes:
        """The role chunk: with `content` "" before text, null before anything else (an answer of tool calls
        only has no content), as the API sends it, so that the SDK's accumulated message is the whole one."""
        self._role_pending = False
        text = isinstance(output, TextChunk) and not output.refusal
        return self._chunk({"role": "assistant", "content": "" if text else None})

    def feed(self, output: GenerationOutput) -> bytes:
        if self._role_pending and type(output) is not PromptUsage:
            return self._role(output) + self.feed(output)
        if self._reasoning_open and (isinstance(output, TextChunk) or (type(output) is ToolCallDelta and output.id)):
            # Text or a call after unsigned reasoning ends its block, as in the whole message's thinking_blocks.
            self._reasoning_blocks += 1
            self._reasoning_open = False
        if isinstance(output, TextChunk):
            self._answered = True
            if output.refusal:
                return self._chunk({"refusal": output.text})
            if output.logprobs:
                return event(self._choice({"content": output.text}, logprobs=_logprobs(output.logprobs)))
            return fill(self._text, output.text)
        if isinstance(output, ToolCallDelta):
            self._answered = True
            return b"".join(self._call(delta) for delta in self._calls.take(output))
        if isinstance(output, ReasoningChunk):
            return self._reasoning(output)
        return b""

    def _call(self, delta: ToolCallDelta) -> bytes:
        call: dict[str, Any] = {"index": delta.index, "function": {"arguments": delta.arguments}}
        if delta.id or delta.name:
            call.update(id=delta.id, type="function")
            call["function"]["name"] = delta.name
        return self._chunk({"tool_calls": [call]})

    def _reasoning(self, chunk: ReasoningChunk) -> bytes:
        """Reasoning text as `reasoning_content`, which most clients read, and as an indexed `thinking_blocks` entry,
        which the SDK's accumulator merges by index into whole blocks with their signatures (or redacted data), to
        be handed back on the next turn."""
        block: dict[str, Any] = {"index": self._reasoning_blocks}
        if chunk.redacted:
            block.update(type="redacted_thinking", data=chunk.signature)
        else:
            block.update(type="thinking", thinking=chunk.text, signature=chunk.signature)  # "" adds up, as text
        if chunk.signature:
            self._reasoning_blocks += 1
        self._reasoning_open = not chunk.signature and (self._reasoning_open or bool(chunk.text))
        delta: dict[str, Any] = {"thinking_blocks": [block]}
        if chunk.text:
            delta["reasoning_content"] = chunk.text
        return self._chunk(delta)

    def end(self, finish: Finish) -> bytes:
        last = self._role(None) if self._role_pending else b""
        last += b"".join(self._call(delta) for delta in self._calls.rest())
        if not self._answered:  # no text at all (reasoning only, or nothing): the whole message's content is ""
            last += self._chunk({"content": ""})
        last += self._chunk({}, FINISH_REASONS[finish.reason])
        return last + self._usage(finish) + DONE
