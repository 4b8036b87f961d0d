"""What a fake upstream answers to the next requests: text, usage, errors and the ways a stream can fail."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Script:
    """How a fake answers the next requests; tests assign a new one to `fake.script` to change it.

    The stream-failure fields (`cut_after`, `malformed_after`, `error_event_after`, `stall_after`, `delay`)
    apply to streamed answers only; each counts text chunks already sent (0 = before the first one, and
    `len(chunks)` = after the last one, before the closing events).
    """

    chunks: list[str] = field(default_factory=lambda: ["Hello", ",", " world"])  # streamed text deltas
    status: int = 200  # != 200: answer with the vendor's JSON error body and this status
    error_message: str = "scripted failure"
    error_text: str | None = None  # with a status != 200: this text as an HTML body, in place of the JSON error body
    error_type: str | None = None  # vendor error type; None: derived from status by each fake
    error_code: str | None = None  # OpenAI "code" field, e.g. "context_length_exceeded"
    # With a status != 200: this JSON body, in place of the vendor's error body (another server's, as llama.cpp's).
    error_body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)  # extra response headers, e.g. {"retry-after": "7"}
    finish_reason: str | None = None  # OpenAI finish_reason (default "stop") / Anthropic stop_reason ("end_turn")
    stop_sequence: str | None = None  # Anthropic: the stop_sequence that matched (with stop_reason "stop_sequence")
    prompt_tokens: int = 11
    completion_tokens: int | None = None  # None: len(chunks)
    request_id: str = "req_fake_123"  # sent as x-request-id (OpenAI) / request-id (Anthropic)
    request_id_header: str | None = None  # the header `request_id` goes in, when not the vendor's own
    cut_after: int | None = None  # after N chunks, drop the TCP connection (no chunked terminator, no closing events)
    cut_inside_event: bool = False  # with cut_after: drop it halfway through the next event, not between two
    # Drop the connection halfway through a whole JSON body (an error's, a model list's, an answer not streamed),
    # after headers that announce its whole length.
    cut_body: bool = False
    malformed_after: int | None = None  # after N chunks, one SSE event whose data is not JSON, then go on normally
    error_event_after: int | None = (
        None  # Anthropic only: after N chunks, an `error` event (overloaded_error), then end
    )
    stall_after: int | None = None  # after N chunks, send nothing more until the client disconnects
    delay: float = 0.0  # seconds between chunks
    after_stop: list[str] = field(default_factory=list)  # text deltas sent after the stop event (a broken upstream)
    # Anthropic only: the `usage` of message_start and of message_delta, in place of Anthropic's own
    # ({input_tokens: prompt_tokens, output_tokens: 1}, then {output_tokens: output_tokens}); LiteLLM's
    # /v1/messages, say, sends {input_tokens: 0}, then {input_tokens: 11, output_tokens: 42}.
    start_usage: dict[str, int | None] | None = None
    delta_usage: dict[str, int | None] | None = None
    # Vendor stream items sent in place of `chunks` (one per chunk, counted as chunks by the failure fields):
    # OpenAI, the `delta` of each chunk's choice (tool_calls, reasoning_content, content; a "logprobs" key goes to
    # the choice's logprobs in place of the fake's own); Anthropic, whole events
    # with their `type` (content_block_start / content_block_delta / content_block_stop of any blocks).
    events: list[dict[str, Any]] | None = None
    # OpenAI only: each embedding's vector in place of the fake's own; and the embeddings answer's `usage`: "counted"
    # (a token per word), an object sent as it is (`{"prompt_tokens": null}`), or None to leave it out.
    embedding_vectors: list[list[float]] | None = None
    embedding_usage: dict[str, Any] | str | None = "counted"
    usage_details: dict[str, Any] = field(default_factory=dict)  # merged into the usage reported
    # OpenAI only: send the usage chunk include_usage asks for; False: never, as llama-cpp-python's server does not.
    usage_chunk: bool = True
    refuse_max_tokens: bool = False  # OpenAI only: refuse `max_tokens` as its reasoning models do
    split_utf8: bool = False  # write each event in two pieces, the first ending inside a multi-byte character
    # Close the connection once a stream is complete, although its headers announce keep-alive (llama.cpp's server).
    close_after_stream: bool = False
    close_unanswered: bool = False  # close the connection of every request, answering none
    silent: bool = False  # answer no request, not even with a status line, until the client goes or the fake stops

    @property
    def output_tokens(self) -> int:
        """The completion token count to report."""
        return len(self.chunks) if self.completion_tokens is None else self.completion_tokens

    @property
    def text(self) -> str:
        """The whole answer, as a non-streamed response carries it."""
        return "".join(self.chunks)
