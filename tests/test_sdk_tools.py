"""The Python SDK's tools, structured output and reasoning, sync and asyncio, against the real server and the
loopback fakes: a tool loop from a typed function, a pydantic tool and response format, stream events."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pydantic
import pytest

from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import ANTHROPIC_KEY, OPENAI_KEY
from tests.sdk_support import blocking
from tests.test_tools_hosted_reasoning import THINKING_EVENTS
from tests.tool_wire import Args, Call, script_steps
from warpcore.client import (
    ApiConfig,
    AsyncClient,
    Client,
    FinishReason,
    GenerateResult,
    GenerationOptions,
    Message,
    ReasoningBlock,
    ReasoningDelta,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallDelta,
)
from warpcore.client._messages import FUNCTION_TOOLS_NEED_PYDANTIC
from warpcore.client._tools import request_fields
from warpcore.server.rpc.server import WarpcoreServer
from warpcore.v1 import tools_pb2


def get_weather(city: str, days: int = 1) -> str:
    """The weather in a city."""
    return f"{days} days of sun in {city}"


class Answer(pydantic.BaseModel):
    """A number and why."""

    n: int
    why: str


@pytest.fixture
def target(server: WarpcoreServer) -> str:
    return f"127.0.0.1:{server.port}"


def test_tools_from_a_typed_function_and_a_pydantic_model() -> None:
    tool = Tool.from_function(get_weather)
    assert (tool.name, tool.description) == ("get_weather", "The weather in a city.")
    assert tool.parameters["required"] == ["city"]
    assert tool.parameters["properties"]["days"] == {"default": 1, "title": "Days", "type": "integer"}
    model_tool = Tool.from_model(Answer)
    assert (model_tool.name, model_tool.description) == ("Answer", "A number and why.")
    assert set(model_tool.parameters["properties"]) == {"n", "why"}


async def test_sync_tool_loop(target: str, openai_upstream: FakeOpenAI) -> None:
    wire, reason = script_steps(
        openai_upstream, [Call(0, "call_1", "get_weather"), Args(0, '{"city": "Bern", '), Args(0, '"days": 2}')]
    )
    openai_upstream.script = Script(events=wire, finish_reason=reason)

    @blocking
    def use() -> tuple[list[Any], str]:
        with Client(target, timeout=30) as client:
            config = ApiConfig(api_key=OPENAI_KEY, base_url=openai_upstream.base_url)
            client.load_model("gpt-4o-mini", backend="openai", model_id="m", config=config)
            messages: list[Message] = [Message("user", "Weather in Bern?")]
            with client.generate("m", messages=messages, tools=[get_weather], stream=True) as stream:
                events = list(stream)
                first = stream.get_final_response()
            assert first.finish_reason is FinishReason.TOOL_CALLS
            (call,) = first.tool_calls
            assert call == ToolCall("call_1", "get_weather", '{"city": "Bern", "days": 2}')
            messages += [first.message(), Message.tool_result(call, get_weather(**call.parsed_arguments()))]
            openai_upstream.script = Script(chunks=["Sunny, ", "two days."])
            return events, client.generate("m", messages=messages, tools=[get_weather]).text

    events, answer = await use()
    assert [type(event) for event in events] == [ToolCallDelta, ToolCallDelta, ToolCallDelta, GenerateResult]
    assert events[0] == ToolCallDelta(0, "call_1", "get_weather", "")
    assert answer == "Sunny, two days."
    body = openai_upstream.requests[-1].body
    assert body is not None
    assert body["messages"][1]["tool_calls"][0]["function"]["arguments"] == '{"city": "Bern", "days": 2}'
    assert body["messages"][2] == {"role": "tool", "tool_call_id": "call_1", "content": "2 days of sun in Bern"}
    assert body["tools"][0]["function"]["parameters"]["properties"]["city"] == {"title": "City", "type": "string"}


async def test_async_structured_output_is_parsed(target: str, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.script = Script(chunks=['{"n": 4, ', '"why": "2+2"}'])
    async with AsyncClient(target, timeout=30) as client:
        config = ApiConfig(api_key=OPENAI_KEY, base_url=openai_upstream.base_url)
        await client.load_model("gpt-4o-mini", backend="openai", model_id="m", config=config)
        response = await client.generate("m", prompt="2+2?", response_format=Answer)
    assert response.parsed == Answer(n=4, why="2+2")
    body = openai_upstream.requests[-1].body
    assert body is not None
    assert body["response_format"]["json_schema"]["name"] == "Answer"
    assert body["response_format"]["json_schema"]["schema"] == Answer.model_json_schema()


async def test_async_reasoning_events_and_blocks_handed_back(target: str, anthropic_upstream: FakeAnthropic) -> None:
    anthropic_upstream.script = Script(events=THINKING_EVENTS, finish_reason="tool_use")
    async with AsyncClient(target, timeout=30) as client:
        config = ApiConfig(api_key=ANTHROPIC_KEY, base_url=anthropic_upstream.base_url)
        await client.load_model(anthropic_upstream.models[0], backend="anthropic", model_id="m", config=config)
        options: dict[str, Any] = {"tools": [get_weather], "max_tokens": 4096, "reasoning_budget": 2048}
        stream = await client.generate("m", messages=[("user", "Weather?")], stream=True, **options)
        kinds = [type(event) async for event in stream]
        first = await stream.get_final_response()
        assert first.reasoning == (
            ReasoningBlock("Zürich is in Switzerland.", "EqQBCgIYAhIM+sig=="),
            ReasoningBlock(signature="ENCRYPTED/x==", redacted=True),
        )
        anthropic_upstream.script = Script(chunks=["Sunny."])
        messages = [Message("user", "Weather?"), first.message(), Message.tool_result(first.tool_calls[0], "sun")]
        await client.generate("m", messages=messages, **options)
    assert kinds.count(ReasoningDelta) == 4
    assert TextDelta in kinds
    body = anthropic_upstream.requests[-1].body
    assert body is not None
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert [block["type"] for block in body["messages"][1]["content"]] == [
        "thinking",
        "redacted_thinking",
        "text",
        "tool_use",
    ]
    assert body["messages"][1]["content"][0]["signature"] == "EqQBCgIYAhIM+sig=="
    assert json.dumps(body["messages"][2]["content"][0]) == json.dumps(
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sun"}
    )


WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
ANSWER_SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}}


async def test_tools_choices_and_formats_shaped_as_the_vendors_sdks_take_them(
    target: str, openai_upstream: FakeOpenAI
) -> None:
    """Code written for the openai or anthropic SDK passes its tools, tool_choice and response_format as they are;
    the provider receives what the SDK's own types give."""
    typed: dict[str, Any] = {
        "tools": [Tool("get_weather", "The weather", WEATHER_SCHEMA, strict=True), Tool("get_time")],
        "tool_choice": "get_time",
        "parallel_tool_calls": False,
        "response_format": tools_pb2.ResponseFormat(
            type=tools_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA, name="answer", schema_json=json.dumps(ANSWER_SCHEMA)
        ),
    }
    openai_shaped: dict[str, Any] = {
        "tools": [
            {
                "type": "function",
                "function": {"name": "get_weather", "description": "The weather", "parameters": WEATHER_SCHEMA},
            },
            {"type": "function", "function": {"name": "get_time", "strict": None}},
        ],
        "tool_choice": {"type": "function", "function": {"name": "get_time"}},
        "parallel_tool_calls": False,
        "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": ANSWER_SCHEMA}},
    }
    openai_shaped["tools"][0]["function"]["strict"] = True
    anthropic_shaped: dict[str, Any] = {
        **openai_shaped,
        "tools": [
            {"name": "get_weather", "description": "The weather", "input_schema": WEATHER_SCHEMA, "strict": True},
            {"name": "get_time"},
        ],
        "tool_choice": {"type": "tool", "name": "get_time", "disable_parallel_tool_use": True},
    }
    del anthropic_shaped["parallel_tool_calls"]
    openai_upstream.script = Script(chunks=['{"n": 1}'])
    async with AsyncClient(target, timeout=30) as client:
        config = ApiConfig(api_key=OPENAI_KEY, base_url=openai_upstream.base_url)
        await client.load_model("gpt-4o-mini", backend="openai", model_id="m", config=config)
        for options in (typed, openai_shaped, anthropic_shaped):
            await client.generate("m", prompt="Time?", **options)
    typed_body, *vendor_bodies = [request.body for request in openai_upstream.requests[-3:]]
    assert typed_body is not None
    assert typed_body["tools"][0]["function"]["strict"] is True
    assert typed_body["tool_choice"] == {"type": "function", "function": {"name": "get_time"}}
    assert vendor_bodies == [typed_body, typed_body]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "'web_search_20250305' is no function"),
        ({"tools": [{"name": "t", "input_schema": {}, "input_examples": [{}]}]}, "'input_examples' is not carried"),
        ({"tools": [{"name": "t", "cache_control": {"type": "persistent"}}]}, 'cache_control is {"type": "ephemeral"}'),
        ({"tools": [{"name": "t", "cache_control": {"type": "ephemeral", "ttl": "2h"}}]}, 'ttl is "5m" or "1h"'),
        ({"tools": [{"type": "function", "function": {"name": "t"}, "x": 1}]}, "'x' is not carried"),
        ({"tools": [{"name": "t", "parameters": {}, "input_schema": {}}]}, "not both"),
        ({"tools": [{"description": "nameless"}]}, "needs a name"),
        ({"tools": [{"name": "t", "strict": "yes"}]}, "strict is true or false"),
        ({"tool_choice": {"type": "banana"}}, "unknown tool_choice type 'banana'"),
        ({"tool_choice": {"type": "tool"}}, "holds the name of one tool"),
        ({"tool_choice": {"type": "allowed_tools", "mode": "none", "tools": []}}, "holds a mode, auto or required"),
        ({"tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "mcp"}]}}, "an allowed tool is"),
        ({"tool_choice": {"type": "allowed_tools", "mode": "required", "tools": []}}, "lists one tool at least"),
        ({"tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "custom", "name": "a"}]}}, "is"),
        (
            {
                "tool_choice": {
                    "type": "allowed_tools",
                    "mode": "auto",
                    "tools": [{"type": "function", "name": "a", "x": 1}],
                }
            },
            "an allowed tool is",
        ),
        ({"tool_choice": {"type": "allowed_tools", "allowed_tools": ["a"]}}, "holds a mode"),
        ({"tool_choice": {"type": "allowed_tools", "allowed_tools": None}}, "holds a mode"),
        (
            {"tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}, "junk": 1}},
            "and nothing else",
        ),
        ({"tool_choice": {"type": "auto", "disable_parallel_tool_use": True}, "parallel_tool_calls": True}, "disagree"),
        ({"response_format": {"type": "json_object", "strict": True}}, "holds nothing else"),
        ({"response_format": {"type": "json_schema", "json_schema": {"schema": {}, "title": "t"}}}, "holds"),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"schema": {"description": "a"}, "description": "b"},
                }
            },
            "differs from its schema's own",
        ),
    ],
)
def test_vendor_shapes_that_cannot_be_carried_are_refused_by_name(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        request_fields(GenerationOptions(**options))  # type: ignore[typeddict-item]


TIME_CHOICE = {"type": "function", "function": {"name": "get_time"}}


def test_vendor_formats_are_never_taken_for_schemas() -> None:
    _, fields, _ = request_fields(GenerationOptions(response_format={"type": "text"}))
    assert fields["response_format"].type == tools_pb2.RESPONSE_FORMAT_TYPE_TEXT
    _, fields, _ = request_fields(GenerationOptions(response_format={"type": "json_schema", "schema": ANSWER_SCHEMA}))
    assert (fields["response_format"].name, fields["response_format"].strict) == ("response", True)
    _, fields, _ = request_fields(GenerationOptions(response_format={"title": "Answer", **ANSWER_SCHEMA}))
    assert json.loads(fields["response_format"].schema_json)["properties"] == ANSWER_SCHEMA["properties"]
    assert (fields["response_format"].name, fields["response_format"].strict) == ("Answer", False)
    described = {"type": "json_schema", "json_schema": {"schema": ANSWER_SCHEMA, "description": "A count"}}
    _, fields, _ = request_fields(GenerationOptions(response_format=described))
    assert json.loads(fields["response_format"].schema_json) == {**ANSWER_SCHEMA, "description": "A count"}
    request, _, _ = request_fields(GenerationOptions(tool_choice={"type": "any"}))
    assert request["tool_choice"].mode == tools_pb2.TOOL_CHOICE_MODE_REQUIRED


def test_openai_allowed_tools_in_either_api_shape_become_the_choice_allowed_tools() -> None:
    chat = {"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [TIME_CHOICE]}}
    responses = {"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "get_time"}]}
    for choice in (chat, responses):
        request, _, _ = request_fields(GenerationOptions(tool_choice=choice))
        assert request["tool_choice"] == tools_pb2.ToolChoice(
            mode=tools_pb2.TOOL_CHOICE_MODE_REQUIRED, allowed_tools=["get_time"]
        )


async def test_sdk_verbosity(target: str, openai_upstream: FakeOpenAI) -> None:
    async with AsyncClient(target, timeout=30) as client:
        config = ApiConfig(api_key=OPENAI_KEY, base_url=openai_upstream.base_url)
        await client.load_model("gpt-4o-mini", backend="openai", model_id="m", config=config)
        await client.generate("m", prompt="Explain.", verbosity="medium")
        with pytest.raises(ValueError, match="verbosity is one of low, medium, high, not 'loud'"):
            await client.generate("m", prompt="Explain.", verbosity="loud")  # type: ignore[call-overload]
    body = openai_upstream.requests[-1].body
    assert body is not None
    assert body["verbosity"] == "medium"


def test_a_function_tool_without_pydantic_says_what_to_install() -> None:
    """A tester's finding: after `pip install ./client`, the README's tool loop failed with a bare "No module named
    'pydantic'" (the SDK does not depend on it)."""
    script = (
        "import sys; sys.modules['pydantic'] = None\n"  # as where pydantic is not installed
        "from warpcore.client import Tool\n"
        "def get_weather(city: str) -> str: ...\n"
        "try:\n    Tool.from_function(get_weather)\n"
        "except ImportError as error:\n    print(error.name, '|', error)\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    assert run.stdout.strip() == f"pydantic | {FUNCTION_TOOLS_NEED_PYDANTIC}"
    assert "pip install 'warpcore-client[tools]'" in FUNCTION_TOOLS_NEED_PYDANTIC
