"""The Python SDK takes tools, tool_choice and response_format shaped as the openai and anthropic SDKs take them, and
gives the provider what its own types give; a vendor's shape it cannot carry is refused by name, and a vendor's format
is never taken for a schema."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import OPENAI_KEY
from tests.sdk_support import target
from warpcore.client import ApiConfig, AsyncClient, GenerationOptions, Tool
from warpcore.client._tools import request_fields
from warpcore.v1 import tools_pb2

__all__ = ["target"]  # the fixture, used by name

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
