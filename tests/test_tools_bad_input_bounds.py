"""Tools, schemas and reasoning options at the edges: many large schemas checked in bounded time, megabytes of arguments
checked off the event loop, what is valid passed to the provider unchanged, and what llama.cpp cannot honour told by the
request's own field names; the server keeps serving."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import failed_stream, rich_details
from tests.fakes.openai_api import FakeOpenAI
from tests.hosted import load
from tests.tool_wire import chat, stream, user
from tests.tools_bad_input_support import TIME_LIMIT, assistant, call, result, tool
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import tools_pb2

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


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
