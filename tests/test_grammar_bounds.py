"""Hostile schemas for grammar-constrained sampling: refused with INVALID_ARGUMENT naming the field, in bounded
time, and the model keeps serving."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.local_engine import json_params, load_local, local_engine, run
from warpcore.server.core.bounds import GRAMMAR_MAX_BYTES, GRAMMAR_MAX_REPEAT, GRAMMAR_MAX_SCHEMA_NODES, MAX_TOOLS
from warpcore.server.core.domain import (
    FinishReason,
    GenerationParams,
)
from warpcore.server.core.engine import Engine
from warpcore.server.core.errors import InvalidArgumentError
from warpcore.server.core.tooling import (
    Tool,
    ToolChoice,
    ToolChoiceMode,
)

REFUSAL_SECONDS = 2.0


def nested(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"a": schema}, "required": ["a"]}
    return schema


HOSTILE: dict[str, tuple[dict[str, Any], str]] = {
    "many properties": (
        {"type": "object", "properties": {f"p{index}": {"type": "integer"} for index in range(5000)}},
        "SCHEMA_TOO_LARGE",
    ),
    "deep nesting": (nested(500), "SCHEMA_TOO_LARGE"),
    "recursive $ref": (
        {
            "$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}}}},
            "$ref": "#/$defs/node",
        },
        "SCHEMA_UNSUPPORTED",
    ),
    "self $ref": ({"type": "object", "properties": {"me": {"$ref": "#"}}}, "SCHEMA_UNSUPPORTED"),
    "exponential $ref fan-out": (
        {
            "$defs": {
                **{
                    f"d{level}": {
                        "type": "object",
                        "properties": {"l": {"$ref": f"#/$defs/d{level + 1}"}, "r": {"$ref": f"#/$defs/d{level + 1}"}},
                    }
                    for level in range(30)
                },
                "d30": {"type": "integer"},
            },
            "$ref": "#/$defs/d0",
        },
        "SCHEMA_TOO_LARGE",
    ),
    "huge enum": ({"enum": [f"value number {index}" for index in range(20000)]}, "SCHEMA_TOO_LARGE"),
    "huge maxLength": ({"type": "string", "maxLength": 10**9}, "SCHEMA_TOO_LARGE"),
    "huge minItems": ({"type": "array", "items": {"type": "integer"}, "minItems": 10**9}, "SCHEMA_TOO_LARGE"),
    "huge pattern repeat": ({"type": "string", "pattern": "^a{1,1000000}$"}, "SCHEMA_UNSUPPORTED"),
    # Each count is within bounds, their product is not: "aaaa" then has millions of readings, each followed.
    "nested pattern repeats": (
        {"type": "string", "pattern": "^(((a{0,256}){0,256}){0,256})$"},
        "SCHEMA_UNSUPPORTED",
    ),
    "bounds a double cannot tell apart": (
        {"type": "number", "exclusiveMinimum": 100000000000, "exclusiveMaximum": 100000000000.00001},
        "SCHEMA_UNSUPPORTED",
    ),
    "pattern escape": ({"type": "string", "pattern": "^\\D+$"}, "SCHEMA_UNSUPPORTED"),
    "pattern that may hold a quote": ({"type": "string", "pattern": "^[ -~]+$"}, "SCHEMA_UNSUPPORTED"),
    "uniqueItems": ({"type": "array", "items": {"type": "integer"}, "uniqueItems": True}, "SCHEMA_UNSUPPORTED"),
    "oneOf": ({"oneOf": [{"type": "integer"}, {"type": "number"}]}, "SCHEMA_UNSUPPORTED"),
    "remote $ref": ({"$ref": "https://example.com/schema.json"}, "SCHEMA_UNSUPPORTED"),
    "required without property": ({"type": "object", "required": ["ghost"]}, "SCHEMA_UNSUPPORTED"),
    "empty integer range": ({"type": "integer", "minimum": 5, "maximum": 4}, "SCHEMA_UNSUPPORTED"),
    "false schema": ({"type": "object", "properties": {"never": False}, "required": ["never"]}, "SCHEMA_UNSUPPORTED"),
    "empty enum": ({"enum": []}, "SCHEMA_UNSUPPORTED"),
    "prefixItems with an items schema": (
        {"type": "array", "prefixItems": [{"type": "integer"}], "items": {"type": "string"}},
        "SCHEMA_UNSUPPORTED",
    ),
}

# Refusals of a schema no value validates, or no grammar can hold to: each says where in the schema.
POINTED = ["empty enum", "prefixItems with an items schema"]


@pytest.fixture
async def engine(models_path: Path) -> AsyncIterator[Engine]:
    async with local_engine(models_path) as started:
        yield started


async def refused(engine: Engine, model: str, params: GenerationParams) -> InvalidArgumentError:
    started = time.monotonic()
    with pytest.raises(InvalidArgumentError) as error:
        await run(engine, model, params)
    assert time.monotonic() - started < REFUSAL_SECONDS
    return error.value


async def assert_serving(engine: Engine, model: str) -> None:
    outcome = await run(engine, model, json_params({"type": "boolean"}, temperature=0.0))
    assert outcome.result is not None
    assert outcome.result.finish.reason is FinishReason.STOP
    assert outcome.text.strip() in ("true", "false")


@pytest.mark.parametrize("name", HOSTILE)
async def test_a_hostile_response_schema_is_refused_in_bounded_time(engine: Engine, name: str) -> None:
    model = await load_local(engine, "tiny", parallel=2)
    schema, reason = HOSTILE[name]
    error = await refused(engine, model, json_params(schema))
    assert error.field == "response_format.schema"
    assert error.reason == reason, error.message
    assert "response_format.schema" in error.message
    if name in POINTED:
        assert error.metadata["schema_pointer"] == "#"  # where it sits, which llama.cpp's own refusal does not say
    await assert_serving(engine, model)


# What valid JSON Schema the grammar does not take is said so, not called invalid: a tester read "pattern is not a
# regular expression: bad escape \p" of ECMA-262's \p{L}, and "only references into this schema (#/...)" of a
# reference into it by anchor.
UNSUPPORTED_SAYS: dict[str, tuple[dict[str, Any], str]] = {
    "^\\p{L}+$": ({"type": "string", "pattern": "^\\p{L}+$"}, "the escape \\p is not supported"),
    "#anchor": (
        {"$defs": {"word": {"$anchor": "word", "type": "string"}}, "$ref": "#word"},
        "$ref '#word' names an anchor, which is not supported",
    ),
}


@pytest.mark.parametrize("name", UNSUPPORTED_SAYS)
async def test_valid_schemas_the_grammar_does_not_take_are_said_unsupported(engine: Engine, name: str) -> None:
    model = await load_local(engine, "tiny")
    schema, says = UNSUPPORTED_SAYS[name]
    error = await refused(engine, model, json_params(schema))
    assert error.reason == "SCHEMA_UNSUPPORTED"
    assert says in error.message


async def test_tools_whose_grammar_is_too_large_are_refused_naming_the_tool_past_the_cap(engine: Engine) -> None:
    model = await load_local(engine, "tiny")
    one = Tool("tool", "", {"type": "object"})
    many = await refused(engine, model, GenerationParams(prompt="hi", messages=(), max_tokens=8, tools=(one,) * 1000))
    assert many.field == "tools"  # more tools than any request may carry
    # As many tools as a request may carry, each of nine subschemas: together past the grammar's cap.
    properties = {f"p{n}": {"type": "integer"} for n in range(8)}
    parameters = {"type": "object", "properties": properties, "required": list(properties)}
    tools = tuple(Tool(f"tool_{index}", "", parameters) for index in range(MAX_TOOLS))
    params = GenerationParams(
        prompt="the world", messages=(), max_tokens=32, tools=tools, tool_choice=ToolChoice(ToolChoiceMode.REQUIRED)
    )
    error = await refused(engine, model, params)
    assert error.reason == "SCHEMA_TOO_LARGE"
    assert error.field == f"tools[{GRAMMAR_MAX_SCHEMA_NODES // 9}].parameters"
    # Named, only that tool's schema makes the grammar: the same thousand tools are fine.
    named = GenerationParams(
        prompt="the world",
        messages=(),
        max_tokens=300,
        tools=tools,
        tool_choice=ToolChoice(ToolChoiceMode.NAMED, f"tool_{MAX_TOOLS - 1}"),
    )
    outcome = await run(engine, model, named)
    assert outcome.result is not None
    assert outcome.result.finish.reason is FinishReason.TOOL_CALLS
    assert outcome.result.finish.tool_calls[0].name == f"tool_{MAX_TOOLS - 1}"
    await assert_serving(engine, model)


async def test_the_caps_are_the_ones_the_errors_quote(engine: Engine) -> None:
    model = await load_local(engine, "tiny")
    error = await refused(engine, model, json_params({"type": "string", "maxLength": GRAMMAR_MAX_REPEAT + 1}))
    assert str(GRAMMAR_MAX_REPEAT) in error.message
    error = await refused(engine, model, json_params(HOSTILE["huge enum"][0]))
    assert str(GRAMMAR_MAX_BYTES) in error.message
    fine = await run(engine, model, json_params({"type": "string", "maxLength": GRAMMAR_MAX_REPEAT}, max_tokens=8))
    assert fine.result is not None


def doubling(levels: int) -> dict[str, Any]:
    """A schema whose definitions each refer to the one before twice: small as written, 2**levels leaves inlined."""
    defs: dict[str, Any] = {"d0": {"type": "integer"}}
    for level in range(1, levels + 1):
        twice = {"$ref": f"#/$defs/d{level - 1}"}
        defs[f"d{level}"] = {"type": "object", "properties": {"x": twice, "y": twice}, "required": ["x", "y"]}
    return {"$defs": defs, "$ref": f"#/$defs/d{levels}"}


async def test_too_many_subschemas_names_the_ref_whose_inlining_makes_them(engine: Engine) -> None:
    # A tester was pointed at #/$defs/d2/properties/x, where the count happened to pass the cap, in a schema of eleven
    # small definitions: not what to change. The refusal names the $ref whose inlining passed it, where it is used,
    # and says that each use of a $ref counts its definition again.
    model = await load_local(engine, "tiny")
    error = await refused(engine, model, json_params(doubling(10)))
    assert error.reason == "SCHEMA_TOO_LARGE"
    assert error.metadata["schema_pointer"] == "#"
    assert error.message.startswith("response_format.schema at #: inlining $ref '#/$defs/d10' here took")
    assert f"past {GRAMMAR_MAX_SCHEMA_NODES} subschemas" in error.message
    assert "every $ref is inlined, and each use of a $ref counts its definition's subschemas again" in error.message
    # The fan-out: the innermost definition, written twice, was inlined hundreds of times.
    inlined = re.search(r"'#/\$defs/d0' was inlined (\d+) times", error.message)
    assert inlined is not None, error.message
    assert int(inlined[1]) > GRAMMAR_MAX_SCHEMA_NODES // 8
    # A definition used at many places: the use that passed the cap, and how often it was inlined.
    address = {"type": "object", "properties": {f"f{n}": {"type": "string"} for n in range(20)}}
    uses = {f"a{n}": {"$ref": "#/$defs/address"} for n in range(60)}
    schema = {"$defs": {"address": address}, "type": "object", "properties": uses, "required": list(uses)}
    error = await refused(engine, model, json_params(schema))
    pointer = error.metadata["schema_pointer"]
    assert pointer.startswith("#/properties/a")
    times = int(pointer.removeprefix("#/properties/a")) + 1
    assert f"at {pointer}: inlining $ref '#/$defs/address' here took" in error.message
    assert f"'#/$defs/address' was inlined {times} times" in error.message
    await assert_serving(engine, model)


# Schemas taken before formats and patterns were enforced as they are now: still taken, so that old clients keep
# working (a pydantic constr gives a pattern beside maxLength; formats no grammar spells out stay annotations).
STILL_TAKEN: dict[str, dict[str, Any]] = {
    "format no grammar enforces": {"type": "string", "format": "uri", "maxLength": 8},
    "made-up format": {"type": ["string", "null"], "format": "colour", "maxLength": 8},
    "email beside a pattern": {"type": "string", "format": "email", "pattern": "^a{1,3}$"},
    "pattern beside maxLength": {"type": "string", "pattern": "^a{1,3}$", "maxLength": 3},
    "prefixItems beside minItems": {"type": "array", "prefixItems": [{"type": "integer"}], "minItems": 1},
}


@pytest.mark.parametrize("name", STILL_TAKEN)
async def test_schemas_taken_before_are_taken_still(engine: Engine, name: str) -> None:
    model = await load_local(engine, "tiny")
    outcome = await run(engine, model, json_params(STILL_TAKEN[name], temperature=0.0))
    assert outcome.result is not None
