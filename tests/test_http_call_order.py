"""Parallel tool calls reach an OpenAI client one after another, as OpenAI's API streams them, whatever order an
upstream interleaves their deltas in: the openai SDK's stream helper takes a call's first delta as the end of the
call before."""

from __future__ import annotations

import json

import openai
import pydantic
from openai.types.chat import ChatCompletionMessageParam

from tests.test_http_translation import CALLS, EVENTS, RESULT, serve
from warpcore.server.core.domain import ToolCallDelta
from warpcore.server.http.call_order import CallOrder
from warpcore.server.http.openai_response import OpenAIStream

__all__ = ["serve"]  # the fixture, used by name


class GetWeather(pydantic.BaseModel):
    city: str


async def test_the_sdks_stream_helper_gets_each_interleaved_call_whole(serve: list[bytes]) -> None:
    """A tester's finding: its `arguments.done` events came with arguments "", and a strict tool's parse failed."""
    stream = OpenAIStream("m", include_usage=False)
    serve.append(stream.start(None) + b"".join(stream.feed(event) for event in EVENTS) + stream.end(RESULT.finish))
    client = openai.AsyncOpenAI(base_url=serve[0].decode(), api_key="k", max_retries=0)
    tool = openai.pydantic_function_tool(GetWeather, name="get_weather")
    question: list[ChatCompletionMessageParam] = [{"role": "user", "content": "?"}]
    async with client, client.chat.completions.stream(model="m", messages=question, tools=[tool]) as events:
        done = [
            (event.index, event.parsed_arguments)
            async for event in events
            if event.type == "tool_calls.function.arguments.done"
        ]
        final = await events.get_final_completion()
    assert done == [(0, GetWeather(city="Paris")), (1, GetWeather(city="Rome"))]
    calls = final.choices[0].message.tool_calls or []
    assert [(call.id, call.function.name, json.loads(call.function.arguments)) for call in calls] == CALLS


def test_calls_that_come_one_after_another_pass_at_once() -> None:
    order = CallOrder()
    first = [ToolCallDelta(0, id="a", name="f", arguments='{"x":'), ToolCallDelta(0, arguments="1}")]
    second = [ToolCallDelta(1, id="b", name="f", arguments="{}")]
    assert [order.take(delta) for delta in [*first, *second]] == [[delta] for delta in [*first, *second]]
    assert order.rest() == []


def test_a_later_call_waits_for_the_open_one_to_be_whole_or_the_end() -> None:
    order = CallOrder()
    opened, later = ToolCallDelta(0, id="a", arguments='{"x"'), ToolCallDelta(1, id="b", arguments="{}")
    assert order.take(opened) == [opened]
    assert order.take(later) == []  # the open call's arguments are no whole JSON yet
    closing = ToolCallDelta(0, arguments=":1}")
    assert order.take(closing) == [closing, later]  # now they are: the call waiting goes, and is open
    unfinished, waiting = ToolCallDelta(2, id="c", arguments='{"y"'), ToolCallDelta(3, id="d", arguments="{}")
    assert order.take(unfinished) == [unfinished]  # call 1's "{}" was whole
    assert order.take(waiting) == []
    assert order.rest() == [waiting]  # the stream ended with call 2 unfinished (cut by max_tokens, say)
