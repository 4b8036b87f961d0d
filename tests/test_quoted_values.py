"""Every refusal quoting a value the caller chose quotes it alike, at either door and in each dialect: as Python's
repr (a character that does not print escaped), cut after 256 characters and saying how long the value was (an
outside tester's finding: a role of 2,000 characters was quoted whole, a schema's value was counted with the words
after it, and a zero-width joiner was escaped in one message and not in another)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anthropic
import openai
import pytest
from grpc import StatusCode

from tests.conftest import failed_stream, greedy
from tests.http_errors_support import anthropic_failure, openai_failure
from warpcore.server.doors import Doors
from warpcore.v1 import tools_pb2 as tpb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

ACCENTS = "é" * 2000  # 4,000 bytes: within the 1024-byte message only if it is cut as a value
FACES = "\U0001f600" * 600
JOINED = "a\u200d"  # a zero-width joiner, invisible when shown as itself


def quoted_cut(value: str, kept: int) -> str:
    return f"{value[:kept]!r}... ({len(value)} characters)"


# 256 characters, or fewer within 512 bytes, leaving the message's words room in its 1024.
QUOTES = [(ACCENTS, quoted_cut(ACCENTS, 256)), (FACES, quoted_cut(FACES, 128)), (JOINED, "'a\\u200d'")]


def schema_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}


# Per dialect, the request options that put a value in each of four places, each refused quoting it.
PLACES: dict[str, list[Callable[[str], dict[str, Any]]]] = {
    "openai": [
        lambda value: {"messages": [{"role": value, "content": "hi"}]},
        lambda value: {"messages": [{"role": "user", "content": [{"type": value}]}]},
        lambda value: {"tool_choice": value},
        lambda value: {"response_format": schema_format({"type": value})},
    ],
    "anthropic": [
        lambda value: {"messages": [{"role": value, "content": "hi"}]},
        lambda value: {"messages": [{"role": "user", "content": [{"type": value}]}]},
        lambda value: {"tool_choice": {"type": value}},
        lambda value: {"extra_body": {"output_config": {"format": {"type": "json_schema", "schema": {"type": value}}}}},
    ],
}


@pytest.mark.parametrize(("value", "quote"), QUOTES)
@pytest.mark.parametrize("place", range(4), ids=["role", "part type", "tool_choice", "schema"])
@pytest.mark.parametrize("dialect", list(PLACES))
async def test_http_refusals_quote_a_value_cut_and_escaped(
    doors: Doors, dialect: str, place: int, value: str, quote: str
) -> None:
    options = PLACES[dialect][place](value)
    if dialect == "openai":
        failure: openai.APIStatusError | anthropic.APIStatusError = await openai_failure(doors, **options)
        said = failure.body  # the SDK's: the body's "error"
    else:
        failure = await anthropic_failure(doors, **options)
        said = failure.body["error"] if isinstance(failure.body, dict) else None
    assert failure.status_code == 400
    assert isinstance(said, dict)
    assert quote in said["message"], said


@pytest.mark.parametrize(("value", "quote"), QUOTES)
async def test_grpc_refusals_quote_a_value_cut_and_escaped(tiny: str, stub: Stub, value: str, quote: str) -> None:
    schema = tpb.ResponseFormat(
        type=tpb.RESPONSE_FORMAT_TYPE_JSON_SCHEMA, name="answer", schema_json=json.dumps({"type": value})
    )
    named = tpb.ToolChoice(mode=tpb.TOOL_CHOICE_MODE_NAMED, name=value)
    tools = [tpb.Tool(name="lookup", parameters_json='{"type": "object"}')]
    for request in (greedy("hi", 2, tiny, response_format=schema), greedy("hi", 2, tiny)):
        if not request.options.HasField("response_format"):
            request.tools.extend(tools)
            request.tool_choice.CopyFrom(named)
        _, refused = await failed_stream(stub.Generate(request))
        assert refused.code() == StatusCode.INVALID_ARGUMENT
        assert quote in (refused.details() or ""), refused.details()
