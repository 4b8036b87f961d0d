"""Tool choice, structured output and usage through the OpenAI and Anthropic backends: the real SDKs against loopback
servers that speak each wire protocol, and the request bodies those servers received: the allowed and strict tools, JSON
schema and JSON object output, usage details and max_completion_tokens."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from tests.conftest import failed_stream, rich_details
from tests.fakes.base import FakeUpstream
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import load, posts
from tests.tool_wire import CLOCK, WEATHER, chat, stream, user
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import tools_pb2

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


CHOICES = {
    "none": (tools_pb2.TOOL_CHOICE_MODE_NONE, "", "none", {"type": "none"}),
    "required": (
        tools_pb2.TOOL_CHOICE_MODE_REQUIRED,
        "",
        "required",
        {"type": "any", "disable_parallel_tool_use": True},
    ),
    "named": (
        tools_pb2.TOOL_CHOICE_MODE_NAMED,
        "get_time",
        {"type": "function", "function": {"name": "get_time"}},
        {"type": "tool", "name": "get_time", "disable_parallel_tool_use": True},
    ),
}


@pytest.mark.parametrize("choice", list(CHOICES))
async def test_tool_choice_and_parallel_calls_reach_the_provider(
    stub: Stub, upstream: FakeUpstream, choice: str
) -> None:
    mode, name, openai_choice, anthropic_choice = CHOICES[choice]
    await load(stub, upstream)
    request = chat(
        user("Time?"),
        tools=(WEATHER, CLOCK),
        tool_choice=tools_pb2.ToolChoice(mode=mode, name=name),
        parallel_tool_calls=False,
    )
    await stream(stub.Generate(request))

    body = posts(upstream)[-1]
    if isinstance(upstream, FakeOpenAI):
        assert body["tool_choice"] == openai_choice
        assert body["parallel_tool_calls"] is False
    else:
        assert body["tool_choice"] == anthropic_choice
        assert "parallel_tool_calls" not in body


async def test_only_the_allowed_tools_reach_the_provider(stub: Stub, upstream: FakeUpstream) -> None:
    await load(stub, upstream)
    choice = tools_pb2.ToolChoice(mode=tools_pb2.TOOL_CHOICE_MODE_REQUIRED, allowed_tools=[CLOCK.name])
    await stream(stub.Generate(chat(user("Time?"), tools=(WEATHER, CLOCK), tool_choice=choice)))

    (tool,) = posts(upstream)[-1]["tools"]
    assert tool.get("function", tool)["name"] == CLOCK.name
    assert "description" not in tool.get("function", tool)  # a tester's finding: OpenAI's got "" (CLOCK has none)
    assert posts(upstream)[-1]["tool_choice"] in ("required", {"type": "any"})


async def test_strict_tool_use_reaches_the_provider_only_for_the_tools_that_ask(
    stub: Stub, upstream: FakeUpstream
) -> None:
    await load(stub, upstream)
    strict_weather = tools_pb2.Tool()
    strict_weather.CopyFrom(WEATHER)
    strict_weather.strict = True
    await stream(stub.Generate(chat(user("Weather?"), tools=(strict_weather, CLOCK))))

    weather, clock = posts(upstream)[-1]["tools"]
    if isinstance(upstream, FakeOpenAI):
        weather, clock = weather["function"], clock["function"]
    assert weather["strict"] is True
    assert "strict" not in clock  # a compatible server that does not know the field is not sent it


def _schema_format(**fields: Any) -> pb.GenerationOptions:
    return pb.GenerationOptions(response_format=tools_pb2.ResponseFormat(**fields))


ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"n": {"type": "integer", "maximum": 5}},
    "required": ["n"],
    "additionalProperties": False,
}


async def test_json_schema_output_reaches_the_provider(stub: Stub, upstream: FakeUpstream) -> None:
    await load(stub, upstream)
    upstream.script = Script(chunks=['{"n": ', "4}"])
    options = _schema_format(
        type=tools_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
        name="answer",
        schema_json=json.dumps(ANSWER_SCHEMA),
        strict=True,
    )
    streamed = await stream(stub.Generate(chat(user("A number?"), tools=(), options=options)))

    assert json.loads(streamed.text) == {"n": 4}
    body = posts(upstream)[-1]
    if isinstance(upstream, FakeOpenAI):
        sent = body["response_format"]
        assert sent == {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": ANSWER_SCHEMA, "strict": True},
        }
        schema = sent["json_schema"]["schema"]
    else:
        assert body["output_config"] == {"format": {"type": "json_schema", "schema": ANSWER_SCHEMA}}
        schema = body["output_config"]["format"]["schema"]
    assert type(schema["properties"]["n"]["maximum"]) is int
    assert "tools" not in body


async def test_json_object_output(stub: Stub, upstream: FakeUpstream) -> None:
    await load(stub, upstream)
    options = _schema_format(type=tools_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT)
    call = stub.Generate(chat(user("JSON please"), tools=(), options=options))
    if isinstance(upstream, FakeOpenAI):
        await stream(call)
        assert posts(upstream)[-1]["response_format"] == {"type": "json_object"}
    else:  # the Messages API has JSON Schema output only
        _, error = await failed_stream(call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert rich_details(error)[1] == ["options.response_format"]
        assert posts(upstream) == []


async def test_usage_details(stub: Stub, upstream: FakeUpstream) -> None:
    await load(stub, upstream)
    details: dict[str, Any]
    if isinstance(upstream, FakeOpenAI):
        details = {"prompt_tokens_details": {"cached_tokens": 7}, "completion_tokens_details": {"reasoning_tokens": 2}}
        expected = pb.Usage(prompt_tokens=11, completion_tokens=3, cached_prompt_tokens=7, reasoning_tokens=2)
    else:
        details = {
            "cache_read_input_tokens": 5,
            "cache_creation_input_tokens": 4,
            "output_tokens_details": {"thinking_tokens": 2},
        }
        expected = pb.Usage(
            prompt_tokens=11 + 5 + 4,
            completion_tokens=3,
            cached_prompt_tokens=5,
            cache_creation_tokens=4,
            reasoning_tokens=2,
        )
    upstream.script = Script(usage_details=details)
    streamed = await stream(stub.Generate(chat(user("hi"), tools=())))
    assert streamed.result is not None
    assert streamed.result.usage == expected


async def test_openai_switches_to_max_completion_tokens_on_the_first_refusal(
    stub: Stub, openai_upstream: FakeOpenAI
) -> None:
    await load(stub, openai_upstream, model="gpt-4o")
    openai_upstream.script = Script(refuse_max_tokens=True)
    for _ in range(2):
        streamed = await stream(stub.Generate(chat(user("hi"), tools=(), options=pb.GenerationOptions(max_tokens=99))))
        assert streamed.text == "Hello, world"
    sent = [(body.get("max_tokens"), body.get("max_completion_tokens")) for body in posts(openai_upstream)]
    assert sent == [(99, None), (None, 99), (None, 99)]  # refused once, then the model's own field
