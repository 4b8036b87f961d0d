"""Tool calls, reasoning with its signatures, and JSON output the HTTP door gives out: the same domain events give,
through each official SDK's own stream accumulator, the same answer as the non-streamed body, and reasoning given out
with tool calls comes back when a client drops it (the way in, the same conversation in either dialect giving the
same domain request, is in test_http_request_translation.py).

The events are the domain's, encoded by the door's dialect modules and served over loopback HTTP to the SDK as
they would be by the door, so that every kind of event is checked whatever a backend sends; whole tool loops and
structured output through the running door, to each provider and to llama.cpp, are in test_http_tool_loops.py."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import anthropic
import openai
import pytest
from aiohttp import web
from anthropic.types import MessageParam

from warpcore.server.core.bounds import DEFAULT_MAX_TOKENS
from warpcore.server.core.domain import Finish, FinishReason, ReasoningChunk, TextChunk, ToolCallDelta
from warpcore.server.core.engine import GenerationOutput, GenerationResult
from warpcore.server.core.tooling import ReasoningBlock, ToolCall
from warpcore.server.http.anthropic_response import AnthropicStream, message
from warpcore.server.http.collect import Collected
from warpcore.server.http.openai_request import chat_request
from warpcore.server.http.openai_response import OpenAIStream, completion
from warpcore.server.http.reasoning_memory import ReasoningMemory
from warpcore.server.http.sse import SLOT, event, fill, template

# Two parallel calls whose argument deltas interleave, as an OpenAI upstream may send them.
EVENTS: list[GenerationOutput] = [
    ReasoningChunk("Let me "),
    ReasoningChunk("think.", signature="sig-1"),
    ReasoningChunk(signature="opaque-data", redacted=True),
    TextChunk("Checking "),
    TextChunk("both."),
    ToolCallDelta(0, id="call_a", name="get_weather", arguments='{"ci'),
    ToolCallDelta(1, id="call_b", name="get_weather", arguments='{"city"'),
    ToolCallDelta(0, arguments='ty":"Paris"}'),
    ToolCallDelta(1, arguments=':"Rome"}'),
]
# The result names the complete calls, as the engine's always does (core/tool_calls.py).
WHOLE_CALLS = (
    ToolCall("call_a", "get_weather", '{"city":"Paris"}'),
    ToolCall("call_b", "get_weather", '{"city":"Rome"}'),
)
RESULT = GenerationResult(
    Finish(FinishReason.TOOL_CALLS, prompt_tokens=20, completion_tokens=30, tool_calls=WHOLE_CALLS), 0.01, 0.1
)
CALLS = [("call_a", "get_weather", {"city": "Paris"}), ("call_b", "get_weather", {"city": "Rome"})]


@pytest.fixture
async def serve() -> AsyncIterator[list[bytes]]:
    """A loopback server answering every POST with the event stream put in the list, and its URL first."""
    body: list[bytes] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(body[1])
        return response

    app = web.Application()
    app.router.add_post("/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    body.append(f"http://127.0.0.1:{runner.addresses[0][1]}".encode())
    yield body
    await runner.cleanup()


def collected() -> Collected:
    whole = Collected()
    for output in [*EVENTS, RESULT]:
        whole.add(output)
    return whole


async def test_openai_stream_and_body_carry_reasoning_text_and_every_call(serve: list[bytes]) -> None:
    stream = OpenAIStream("m", include_usage=True)
    serve.append(stream.start(None) + b"".join(stream.feed(event) for event in EVENTS) + stream.end(RESULT.finish))
    client = openai.AsyncOpenAI(base_url=serve[0].decode(), api_key="k", max_retries=0)
    async with client, client.chat.completions.stream(model="m", messages=[{"role": "user", "content": "?"}]) as events:
        final = await events.get_final_completion()
    body = completion("m", collected())
    streamed = final.choices[0].message
    assert final.choices[0].finish_reason == body["choices"][0]["finish_reason"] == "tool_calls"
    assert streamed.content == body["choices"][0]["message"]["content"] == "Checking both."
    calls = [(call.id, call.function.name, json.loads(call.function.arguments)) for call in streamed.tool_calls or []]
    assert calls == CALLS
    whole_calls = body["choices"][0]["message"]["tool_calls"]
    assert [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in whole_calls] == CALLS
    extra = streamed.model_extra or {}
    assert extra["reasoning_content"] == body["choices"][0]["message"]["reasoning_content"] == "Let me think."
    blocks = [{k: v for k, v in block.items() if k != "index"} for block in extra["thinking_blocks"]]
    assert blocks == body["choices"][0]["message"]["thinking_blocks"]
    assert blocks == [
        {"type": "thinking", "thinking": "Let me think.", "signature": "sig-1"},
        {"type": "redacted_thinking", "data": "opaque-data"},
    ]
    assert final.usage is not None
    assert final.usage.total_tokens == 50


async def test_anthropic_stream_gives_each_parallel_call_its_own_block(serve: list[bytes]) -> None:
    stream = AnthropicStream("m")
    serve.append(stream.start(None) + b"".join(stream.feed(event) for event in EVENTS) + stream.end(RESULT.finish))
    client = anthropic.AsyncAnthropic(base_url=serve[0].decode(), api_key="k", max_retries=0)
    question: list[MessageParam] = [{"role": "user", "content": "?"}]
    async with client, client.messages.stream(model="m", max_tokens=9, messages=question) as events:
        final = await events.get_final_message()
    streamed = [block.model_dump(exclude_none=True) for block in final.content]
    for block in streamed:
        block.pop("parsed_output", None)
        block.pop("caller", None)
    whole = message("m", collected())
    assert streamed == whole["content"]
    assert [block["type"] for block in streamed] == ["thinking", "redacted_thinking", "text", "tool_use", "tool_use"]
    assert streamed[0] == {"type": "thinking", "thinking": "Let me think.", "signature": "sig-1"}
    assert streamed[1] == {"type": "redacted_thinking", "data": "opaque-data"}
    assert [(block["id"], block["name"], block["input"]) for block in streamed[3:]] == CALLS
    assert final.stop_reason == whole["stop_reason"] == "tool_use"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (20, 30)


async def test_reasoning_given_out_with_tool_calls_comes_back_when_the_client_drops_it() -> None:
    memory = ReasoningMemory(capacity=1)

    async def generated() -> AsyncGenerator[GenerationOutput, None]:
        for output in [*EVENTS, RESULT]:
            yield output

    assert [output async for output in memory.recorded("m", generated())] == [*EVENTS, RESULT]
    returned: dict[str, Any] = {
        "model": "m",
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": "Checking both.",
                "tool_calls": [
                    {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
                    for call_id, name, args in CALLS
                ],
            },
            {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_b", "content": "rain"},
        ],
    }
    restored = memory.restore("m", chat_request(returned, DEFAULT_MAX_TOKENS).params)
    assert restored.messages[1].reasoning == (
        ReasoningBlock("Let me think.", "sig-1"),
        ReasoningBlock(signature="opaque-data", redacted=True),
    )
    assert restored.messages[0] == chat_request(returned, DEFAULT_MAX_TOKENS).params.messages[0]
    # Reasoning the client did send back is kept as sent.
    returned["messages"][1]["thinking_blocks"] = [{"type": "thinking", "thinking": "own", "signature": "s"}]
    assert memory.restore("m", chat_request(returned, DEFAULT_MAX_TOKENS).params).messages[1].reasoning == (
        ReasoningBlock("own", "s"),
    )
    # Bounded: the answers least recently remembered or given back are forgotten first.
    memory.remember("m", ["call_c", "call_d"], (ReasoningBlock("later", "sig-2"),))
    del returned["messages"][1]["thinking_blocks"]
    assert memory.restore("m", chat_request(returned, DEFAULT_MAX_TOKENS).params).messages[1].reasoning == ()


@pytest.mark.parametrize("text", ['say "hi"\n', "caf\u00e9 \U0001f600", "\\u0000", "\x00", ""])
def test_a_filled_event_is_the_event_encoded_whole(text: str) -> None:
    data = {"type": "content_block_delta", "index": 3, "delta": {"type": "text_delta", "text": SLOT}}
    whole = {**data, "delta": {"type": "text_delta", "text": text}}
    assert fill(template(data, "content_block_delta"), text) == event(whole, "content_block_delta")
