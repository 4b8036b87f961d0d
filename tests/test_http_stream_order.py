"""The Anthropic dialect's event order when an upstream mixes text into its tool calls: blocks one after another,
no delta after its block's stop, and the streamed message the same as the whole one."""

from __future__ import annotations

import json

import anthropic
import openai
import pytest
from anthropic.types import MessageParam

from tests.test_http_translation import serve  # noqa: F401 - the fixture
from warpcore.server.core.domain import Finish, FinishReason, ReasoningChunk, TextChunk, ToolCallDelta
from warpcore.server.core.engine import GenerationOutput, GenerationResult
from warpcore.server.core.tooling import ToolCall
from warpcore.server.http.anthropic_response import AnthropicStream, message
from warpcore.server.http.collect import Collected
from warpcore.server.http.openai_response import OpenAIStream, completion

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
    streamed = [block.model_dump(exclude_none=True, exclude={"caller", "parsed_output"}) for block in final.content]
    assert streamed == message("m", _whole(MIXED, RESULT))["content"]
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


def _whole(outputs: list[GenerationOutput], result: GenerationResult) -> Collected:
    whole = Collected()
    for output in [*outputs, result]:
        whole.add(output)
    return whole


ENDED = GenerationResult(Finish(FinishReason.STOP, 5, 9), 0.01, 0.1)


@pytest.mark.parametrize(
    ("outputs", "result"),
    [
        ([ToolCallDelta(0, id="call_a", name="f", arguments="{}")], RESULT),
        ([ReasoningChunk("A"), TextChunk("x"), ReasoningChunk("B"), TextChunk("y")], ENDED),
        ([ReasoningChunk("A"), ToolCallDelta(0, id="call_a", name="f", arguments="{}"), ReasoningChunk("B")], RESULT),
        ([ReasoningChunk("only")], ENDED),
        ([], ENDED),
        ([TextChunk("no", refusal=True)], ENDED),
    ],
    ids=["calls only", "reasoning split by text", "reasoning split by a call", "reasoning only", "empty", "refusal"],
)
async def test_the_openai_sdks_accumulated_stream_is_the_whole_message(
    serve: list[bytes],  # noqa: F811
    outputs: list[GenerationOutput],
    result: GenerationResult,
) -> None:
    """A tester's findings: an answer of calls only had content "" streamed and null whole; unsigned reasoning split
    by text was one thinking block streamed and two whole."""
    stream = OpenAIStream("m", include_usage=False)
    serve.append(stream.start(None) + b"".join(stream.feed(output) for output in outputs) + stream.end(result.finish))
    client = openai.AsyncOpenAI(base_url=serve[0].decode(), api_key="k", max_retries=0)
    async with client, client.chat.completions.stream(model="m", messages=[{"role": "user", "content": "?"}]) as events:
        final = await events.get_final_completion()
    streamed = final.choices[0].message
    whole = completion("m", _whole(outputs, result))["choices"][0]["message"]
    assert streamed.content == whole["content"]
    assert streamed.refusal == whole["refusal"]
    extra = streamed.model_extra or {}
    blocks = [{k: v for k, v in block.items() if k != "index"} for block in extra.get("thinking_blocks") or []]
    assert blocks == whole.get("thinking_blocks", [])
    assert extra.get("reasoning_content") == whole.get("reasoning_content")
