"""The Anthropic dialect's event order when an upstream mixes text into its tool calls: blocks one after another,
no delta after its block's stop, and the streamed message the same as the whole one."""

from __future__ import annotations

import json

import anthropic
from anthropic.types import MessageParam

from tests.test_http_translation import serve  # noqa: F401 - the fixture
from warpcore.server.core.domain import Finish, FinishReason, ReasoningChunk, TextChunk, ToolCallDelta
from warpcore.server.core.engine import GenerationOutput, GenerationResult
from warpcore.server.core.tooling import ToolCall
from warpcore.server.http.anthropic_response import AnthropicStream, message
from warpcore.server.http.collect import Collected

# An OpenAI upstream's stream: call A begins, call B begins, a word of text, then the rest of B's and A's arguments.
MIXED: list[GenerationOutput] = [
    ToolCallDelta(0, id="call_a", name="get_weather", arguments='{"city":'),
    ToolCallDelta(1, id="call_b", name="get_weather", arguments=""),
    TextChunk("thinking aloud"),
    ToolCallDelta(1, arguments='{"city":"Rome"}'),
    ToolCallDelta(0, arguments='"Paris"}'),
]
CALLS = (ToolCall("call_a", "get_weather", '{"city":"Paris"}'), ToolCall("call_b", "get_weather", '{"city":"Rome"}'))
RESULT = GenerationResult(Finish(FinishReason.TOOL_CALLS, 5, 9, tool_calls=CALLS), 0.01, 0.1)
QUESTION: list[MessageParam] = [{"role": "user", "content": "?"}]


def _events(body: bytes) -> list[dict[str, object]]:
    return [json.loads(line[6:]) for line in body.decode().splitlines() if line.startswith("data: ")]


async def test_no_delta_follows_its_blocks_stop_and_text_follows_the_calls(serve: list[bytes]) -> None:  # noqa: F811
    stream = AnthropicStream("m")
    body = stream.start(None) + b"".join(stream.feed(output) for output in MIXED) + stream.end(RESULT.finish)
    stopped: set[object] = set()
    for item in _events(body):
        if item["type"] == "content_block_stop":
            stopped.add(item["index"])
        elif item["type"] in ("content_block_delta", "content_block_start"):
            assert item["index"] not in stopped, item
    serve.append(body)
    client = anthropic.AsyncAnthropic(base_url=serve[0].decode(), api_key="k", max_retries=0)
    inputs_at_stop = []
    async with client, client.messages.stream(model="m", max_tokens=9, messages=QUESTION) as events:
        async for event in events:
            if event.type == "content_block_stop" and event.content_block.type == "tool_use":
                inputs_at_stop.append(event.content_block.input)  # a caller may run each call as its block ends
        final = await events.get_final_message()
    assert inputs_at_stop == [{"city": "Paris"}, {"city": "Rome"}]
    whole = Collected()
    for output in [*MIXED, RESULT]:
        whole.add(output)
    streamed = [block.model_dump(exclude_none=True, exclude={"caller", "parsed_output"}) for block in final.content]
    assert streamed == message("m", whole)["content"]
    assert [block["type"] for block in streamed] == ["tool_use", "tool_use", "text"]


def test_thinking_between_calls_ends_them_and_keeps_its_place() -> None:
    """Claude's interleaved thinking: a call, thinking, a call, each in its place."""
    stream = AnthropicStream("m")
    outputs: list[GenerationOutput] = [
        ToolCallDelta(0, id="toolu_1", name="f", arguments="{}"),
        ReasoningChunk("next", signature="sig"),
        ToolCallDelta(1, id="toolu_2", name="f", arguments="{}"),
    ]
    body = stream.start(None) + b"".join(stream.feed(output) for output in outputs) + stream.end(RESULT.finish)
    starts = [item["content_block"] for item in _events(body) if item["type"] == "content_block_start"]
    assert [block["type"] for block in starts] == ["tool_use", "thinking", "tool_use"]  # type: ignore[index]
