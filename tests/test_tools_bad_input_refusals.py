"""Tools, schemas and conversations a provider would refuse, or that would cost the server: a clear INVALID_ARGUMENT
naming the field, in bounded time, before anything goes upstream."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from tests.conftest import failed_stream, rich_details
from tests.fakes.openai_api import FakeOpenAI
from tests.hosted import load
from tests.tool_wire import WEATHER, chat, stream, user
from tests.tools_bad_input_support import TIME_LIMIT, assistant, call, result, tool
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import tools_pb2

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


DEEP = "[" * 30_000 + "]" * 30_000  # under the size bound, far past the nesting bound
NESTED: dict[str, Any] = {"type": "object"}
for _ in range(40):
    NESTED = {"type": "object", "properties": {"a": NESTED}}

CASES: dict[str, tuple[pb.GenerateRequest, str]] = {
    "1000 tools": (chat(user("hi"), tools=tuple(tool({}, f"t{n}") for n in range(1000))), "tools"),
    "huge schema": (chat(user("hi"), tools=(tool({"description": "x" * 70_000}),)), "tools[0].parameters_json"),
    "deep JSON": (chat(user("hi"), tools=(WEATHER, tool(DEEP))), "tools[1].parameters_json"),
    "deep schema": (chat(user("hi"), tools=(tool(NESTED),)), "tools[0].parameters_json"),
    "not JSON": (chat(user("hi"), tools=(tool("{'type': 'object'}"),)), "tools[0].parameters_json"),
    "not a schema": (chat(user("hi"), tools=(tool({"type": "objekt"}),)), "tools[0].parameters_json"),
    "unknown dialect": (
        chat(user("hi"), tools=(tool({"$schema": "https://example.com/my-dialect"}),)),
        "tools[0].parameters_json",
    ),
    "not an object schema": (chat(user("hi"), tools=(tool({"type": "array"}),)), "tools[0].parameters_json"),
    # Python's parser reads these; an upstream SDK's encoder, a grammar's bounds or a tokenizer would then fail.
    "number beyond a double": (
        chat(user("hi"), tools=(tool('{"type": "integer", "maximum": 1e309}'),)),
        "tools[0].parameters_json",
    ),
    "NaN in a schema": (
        chat(user("hi"), tools=(tool('{"type": "object", "maximum": NaN}'),)),
        "tools[0].parameters_json",
    ),
    "unpaired surrogate in a schema": (
        chat(user("hi"), tools=(tool('{"type": "object", "description": "\\ud800"}'),)),
        "tools[0].parameters_json",
    ),
    "integer of 5000 digits": (
        chat(user("hi"), tools=(tool('{"type": "integer", "maximum": 1' + "0" * 5000 + "}"),)),
        "tools[0].parameters_json",
    ),
    "bad tool name": (chat(user("hi"), tools=(tool({}, "get weather"),)), "tools[0].name"),
    "long tool name": (chat(user("hi"), tools=(tool({}, "t" * 65),)), "tools[0].name"),
    "same tool twice": (chat(user("hi"), tools=(WEATHER, WEATHER)), "tools[1].name"),
    "named tool unknown": (
        chat(user("hi"), tool_choice=tools_pb2.ToolChoice(mode=tools_pb2.TOOL_CHOICE_MODE_NAMED, name="nope")),
        "tool_choice.name",
    ),
    "required without tools": (
        chat(user("hi"), tools=(), tool_choice=tools_pb2.ToolChoice(mode=tools_pb2.TOOL_CHOICE_MODE_REQUIRED)),
        "tool_choice",
    ),
    "unknown tool choice": (chat(user("hi"), tool_choice=tools_pb2.ToolChoice(mode=99)), "tool_choice.mode"),  # type: ignore[arg-type]
    "allowed tool unknown": (
        chat(user("hi"), tool_choice=tools_pb2.ToolChoice(allowed_tools=["get_weather", "nope"])),
        "tool_choice.allowed_tools[1]",
    ),
    "allowed tool twice": (
        chat(user("hi"), tool_choice=tools_pb2.ToolChoice(allowed_tools=["get_weather", "get_weather"])),
        "tool_choice.allowed_tools[1]",
    ),
    "allowed tools with none": (
        chat(
            user("hi"),
            tool_choice=tools_pb2.ToolChoice(mode=tools_pb2.TOOL_CHOICE_MODE_NONE, allowed_tools=["get_weather"]),
        ),
        "tool_choice.allowed_tools",
    ),
    "allowed tools with a named tool": (
        chat(
            user("hi"),
            tool_choice=tools_pb2.ToolChoice(
                mode=tools_pb2.TOOL_CHOICE_MODE_NAMED, name="get_weather", allowed_tools=["get_weather"]
            ),
        ),
        "tool_choice.allowed_tools",
    ),
    "arguments not JSON": (
        chat(user("hi"), assistant(call(arguments='{"city": "Bern"')), result()),
        "messages[1].tool_calls[0].arguments",
    ),
    "arguments empty": (
        chat(user("hi"), assistant(call(arguments="")), result()),
        "messages[1].tool_calls[0].arguments",
    ),
    "arguments not an object": (
        chat(user("hi"), assistant(call(arguments="[1, 2]")), result()),
        "messages[1].tool_calls[0].arguments",
    ),
    "arguments too deep": (
        chat(user("hi"), assistant(call(arguments='{"a": ' + DEEP + "}")), result()),
        "messages[1].tool_calls[0].arguments",
    ),
    "arguments with Infinity": (
        chat(user("hi"), assistant(call(arguments='{"city": Infinity}')), result()),
        "messages[1].tool_calls[0].arguments",
    ),
    "arguments with an unpaired surrogate": (
        chat(user("hi"), assistant(call(arguments='{"city": "\\udc00"}')), result()),
        "messages[1].tool_calls[0].arguments",
    ),
    "call of an undeclared tool": (
        chat(user("hi"), assistant(call(name="rm_rf")), result()),
        "messages[1].tool_calls[0].name",
    ),
    "call without id": (chat(user("hi"), assistant(call(call_id="")), result("")), "messages[1].tool_calls[0].id"),
    "same call id twice": (
        chat(user("hi"), assistant(call(), call()), result(), result()),
        "messages[1].tool_calls[1].id",
    ),
    "result without a call": (chat(user("hi"), result("c9")), "messages[1].tool_call_id"),
    "result of another call": (chat(user("hi"), assistant(call()), result("c2")), "messages[2].tool_call_id"),
    "result answered twice": (chat(user("hi"), assistant(call()), result(), result()), "messages[3].tool_call_id"),
    "call left unanswered": (chat(user("hi"), assistant(call()), user("well?")), "messages[2]"),
    "call unanswered at the end": (chat(user("hi"), assistant(call())), "messages[1]"),
    "result late": (
        chat(user("hi"), assistant(call()), user("well?"), result()),
        "messages[2]",
    ),
    "calls on a user turn": (
        chat(pb.ChatMessage(role=pb.ROLE_USER, content="hi", tool_calls=[call()])),
        "messages[0].tool_calls",
    ),
    "error flag on a user turn": (
        chat(pb.ChatMessage(role=pb.ROLE_USER, content="hi", is_error=True)),
        "messages[0].is_error",
    ),
    "redacted block with text": (
        chat(
            user("hi"),
            pb.ChatMessage(
                role=pb.ROLE_ASSISTANT,
                content="x",
                reasoning=[tools_pb2.ReasoningBlock(text="secret", signature="s", redacted=True)],
            ),
            user("and?"),
        ),
        "messages[1].reasoning[0]",
    ),
    "json_schema without schema": (
        chat(
            user("hi"),
            options=pb.GenerationOptions(
                response_format=tools_pb2.ResponseFormat(type=tools_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA)
            ),
        ),
        "options.response_format.schema_json",
    ),
    "response schema invalid": (
        chat(
            user("hi"),
            options=pb.GenerationOptions(
                response_format=tools_pb2.ResponseFormat(
                    type=tools_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA, schema_json='{"minimum": "five"}'
                )
            ),
        ),
        "options.response_format.schema_json",
    ),
    "response schema with a dangling $ref": (
        chat(
            user("hi"),
            options=pb.GenerationOptions(
                response_format=tools_pb2.ResponseFormat(
                    type=tools_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
                    schema_json='{"type": "object", "properties": {"a": {"$ref": "#/$defs/nope"}}}',
                )
            ),
        ),
        "options.response_format.schema_json",
    ),
    "tool schema with a dangling $ref": (
        chat(user("hi"), tools=(tool({"type": "object", "properties": {"a": {"$ref": "#/$defs/gone"}}}, "t"),)),
        "tools[0].parameters_json",
    ),
    "tool schema with a pattern that does not compile": (
        chat(user("hi"), tools=(tool({"type": "object", "properties": {"a": {"pattern": "(?<y"}}}, "t"),)),
        "tools[0].parameters_json",
    ),
    "a name with json_object": (
        chat(
            user("hi"),
            options=pb.GenerationOptions(
                response_format=tools_pb2.ResponseFormat(type=tools_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT, name="n")
            ),
        ),
        "options.response_format.name",
    ),
    "budget over max_tokens": (
        chat(
            user("hi"),
            options=pb.GenerationOptions(max_tokens=100, reasoning=tools_pb2.ReasoningOptions(budget_tokens=100)),
        ),
        "options.reasoning.budget_tokens",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_refused_naming_the_field_before_anything_goes_upstream(
    stub: Stub, openai_upstream: FakeOpenAI, case: str
) -> None:
    await load(stub, openai_upstream)
    request, field = CASES[case]
    started = time.monotonic()
    frames, error = await failed_stream(stub.Generate(request))
    elapsed = time.monotonic() - started

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert rich_details(error)[1] == [field], error.details()
    assert frames == []
    assert elapsed < TIME_LIMIT
    assert [r for r in openai_upstream.requests if r.method == "POST"] == []
    # The server keeps serving.
    served = await stream(stub.Generate(chat(user("hi"), tools=())))
    assert served.text == "Hello, world"
