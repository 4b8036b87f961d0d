"""Tools, schemas and conversations a provider would refuse, or that would cost the server: a clear
INVALID_ARGUMENT naming the field, in bounded time, before anything goes upstream; the server keeps serving."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from tests.conftest import failed_stream, rich_details
from tests.fakes.openai_api import FakeOpenAI
from tests.hosted import load
from tests.tool_wire import WEATHER, chat, stream, user
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import tools_pb2

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

TIME_LIMIT = 2.0  # seconds: every refusal here is a parse and a walk of at most a few hundred kilobytes


def tool(parameters: Any, name: str = "t") -> tools_pb2.Tool:
    text = parameters if isinstance(parameters, str) else json.dumps(parameters)
    return tools_pb2.Tool(name=name, parameters_json=text)


def call(call_id: str = "c1", arguments: str = '{"city": "Bern"}', name: str = "get_weather") -> tools_pb2.ToolCall:
    return tools_pb2.ToolCall(id=call_id, name=name, arguments=arguments)


def assistant(*calls: tools_pb2.ToolCall) -> pb.ChatMessage:
    return pb.ChatMessage(role=pb.ROLE_ASSISTANT, tool_calls=calls)


def result(call_id: str = "c1") -> pb.ChatMessage:
    return pb.ChatMessage(role=pb.ROLE_TOOL, tool_call_id=call_id, content="ok")


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


async def test_many_large_schemas_are_checked_in_bounded_time(stub: Stub, openai_upstream: FakeOpenAI) -> None:
    """Each schema is checked against its metaschema on the event loop: 100 valid schemas of 30 kB each, the last
    tool's invalid, are refused in bounded time, where draft 2020-12's check in the jsonschema library took about
    0.3 s each and held every other call that long."""
    await load(stub, openai_upstream)
    properties = {f"field_{n}": {"type": "string", "description": f"the {n}th field"} for n in range(500)}
    large = {"type": "object", "properties": properties}
    assert 25_000 < len(json.dumps(large)) < 40_000
    tools = (*(tool(large, f"t{n}") for n in range(100)), tool({"type": "objekt"}, "last"))
    started = time.monotonic()
    _, error = await failed_stream(stub.Generate(chat(user("hi"), tools=tools)))
    assert time.monotonic() - started < TIME_LIMIT
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert rich_details(error)[1] == ["tools[100].parameters_json"]


async def test_megabytes_of_arguments_are_checked_off_the_event_loop(stub: Stub, openai_upstream: FakeOpenAI) -> None:
    """A tester's finding: 40 calls of 60 kB arguments held every other call for half a second while the server
    checked them. Checked on a thread, where the event loop goes on serving, they are refused as they were (the last
    one holds NaN)."""
    await load(stub, openai_upstream)
    arguments = json.dumps({"a": [[n, {"k": "v" * 10}] for n in range(2000)]})
    turns = [user("hi")]
    for n in range(40):
        bad = n == 39
        turns += [assistant(call(f"c{n}", arguments.replace("0", "NaN", 1) if bad else arguments)), result(f"c{n}")]
    tools = (tool({"type": "object"}, "get_weather"),)
    _, error = await failed_stream(stub.Generate(chat(*turns, tools=tools)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert rich_details(error)[1] == ["messages[79].tool_calls[0].arguments"]
    assert "NaN" in (error.details() or "")


async def test_recursive_schema_and_unknown_keywords_go_to_the_provider_unchanged(
    stub: Stub, openai_upstream: FakeOpenAI
) -> None:
    """A recursive "$ref", keywords the dialect does not know and ECMA-262 patterns are valid JSON Schema: the provider
    judges them."""
    schema = {
        "type": "object",
        "properties": {"node": {"$ref": "#/$defs/node"}},
        "$defs": {
            "node": {"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}
        },
        "x-vendor-hint": {"$ref": "#/not/a/schema/position"},  # an unknown keyword's value is data
        "examples": [{"$ref": "#/nowhere"}],
        # ECMA-262 patterns that Python's re does not read (a Unicode property, a named group) are patterns still.
        "patternProperties": {r"^\p{L}+$": {"type": "string", "pattern": r"(?<year>\d{4})-\d{2}"}},
    }
    await load(stub, openai_upstream)
    await stream(stub.Generate(chat(user("hi"), tools=(tool(schema, "tree"),))))
    body = openai_upstream.requests[-1].body
    assert body is not None
    assert body["tools"][0]["function"]["parameters"] == schema


@pytest.mark.parametrize(
    "reasoning",
    [tools_pb2.ReasoningOptions(budget_tokens=16), tools_pb2.ReasoningOptions(adaptive=True)],
    ids=["budget", "adaptive"],
)
async def test_llama_cpp_refuses_reasoning_options_naming_their_protobuf_field(
    stub: Stub, tiny: str, reasoning: tools_pb2.ReasoningOptions
) -> None:
    options = pb.GenerationOptions(max_tokens=32, reasoning=reasoning)
    _, error = await failed_stream(stub.Generate(pb.GenerateRequest(model_id=tiny, prompt="hi", options=options)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rich_details(error)[1] == ["options.reasoning"]


async def test_reasoning_options_of_defaults_ask_for_nothing(stub: Stub, tiny: str) -> None:
    """As a client that always fills its sub-messages sends them: the same answer as without."""
    options = pb.GenerationOptions(max_tokens=8, temperature=0.0)
    request = pb.GenerateRequest(model_id=tiny, prompt="hi", options=options)
    plain = await stream(stub.Generate(request))
    request.options.reasoning.SetInParent()
    filled = await stream(stub.Generate(request))
    assert plain.result is not None
    assert filled.result is not None
    assert plain.text
    assert filled.text == plain.text
    assert filled.result.usage == plain.result.usage


async def test_a_schema_a_local_model_cannot_enforce_is_told_by_the_requests_own_field_names(
    stub: Stub, tiny: str
) -> None:
    either = {"type": "object", "properties": {"a": {"oneOf": [{"type": "string"}, {"type": "integer"}]}}}
    request = chat(user("hi"), tools=(tool(either),))
    request.model_id = tiny
    _, error = await failed_stream(stub.Generate(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rich_details(error)[1] == ["tools[0].parameters_json"]
    # The message begins with the field as the caller's request names it, not as the server's domain does.
    assert (error.details() or "").startswith("tools[0].parameters_json at #/properties/a: oneOf cannot"), (
        error.details()
    )
