"""Refusals and failures of the HTTP door as each official SDK parses it: each bad field of an OpenAI or Anthropic
request, and a JSON Schema in any place, is 400 naming it."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx2
import pytest

from tests.fakes.base import FakeUpstream
from tests.http_door import (
    base_url,
)
from tests.http_errors_support import ANTHROPIC_MESSAGES, OPENAI_MESSAGES, openai_failure
from warpcore.server.doors import Doors

NOT_STOP_SEQUENCES: tuple[object, ...] = ({}, 0, False, "", "e", ["a", None])


OPENAI_CALLED = [
    *OPENAI_MESSAGES,
    {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "nope"}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "ok"},
]
"""A call of a tool the request does not declare."""
F_TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"logprobs": True, "top_logprobs": 30}, "top_logprobs"),
        ({"logit_bias": {"1": 500}}, "logit_bias"),
        ({"logit_bias": {"one": 5}}, "logit_bias"),
        ({"n": 2}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": 3}, "temperature"),
        ({"seed": 2**40}, "seed"),
        ({"presence_penalty": 3}, "presence_penalty"),
        ({"frequency_penalty": -2.5}, "frequency_penalty"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"tool_choice": {"type": "function", "function": {"name": "f"}}}, "tool_choice.function.name"),
        ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}, None),
        # The domain's call holds its name: named here by the request's path, inside `function`.
        ({"messages": OPENAI_CALLED, "tools": [F_TOOL]}, "messages[1].tool_calls[0].function.name"),
    ],
)
async def test_bad_openai_fields_are_400_naming_them(
    hosted: Doors, upstream: FakeUpstream, options: dict[str, object], param: str | None
) -> None:
    sent = len(upstream.requests)
    failure = await openai_failure(hosted, **options)
    assert (failure.status_code, failure.type) == (400, "invalid_request_error")
    assert failure.param == (param or "messages[0].content[0].type")
    assert len(upstream.requests) == sent  # refused before anything went upstream


def result_block(call_id: str) -> dict[str, object]:
    return {"type": "tool_result", "tool_use_id": call_id, "content": "ok"}


CALLED = [
    {"role": "user", "content": "hi"},
    {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": "c1", "name": "f", "input": {}},
            {"type": "tool_use", "id": "c2", "name": "f", "input": {}},
        ],
    },
]
"""A turn whose two calls wait for their results."""
TOOLS = [{"name": "f", "input_schema": {"type": "object"}}]
WELL = {"type": "text", "text": "well?"}
USE_T1 = {"type": "tool_use", "id": "t1", "name": "f", "input": {}}


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"max_tokens": None}, "max_tokens"),
        ({"messages": []}, "messages: must hold at least one message"),
        ({"messages": [{"role": "user", "content": [{"type": "video", "source": {}}]}]}, "messages[0].content[0].type"),
        ({"tool_choice": {"type": "tool", "name": "f"}}, "tool_choice.name"),
        *(({"stop_sequences": value}, "stop_sequences") for value in NOT_STOP_SEQUENCES),
        ({"thinking": {"type": "enabled"}}, "thinking.budget_tokens"),
        ({"output_config": {"effort": "minimal"}}, "output_config.effort"),
        ({"inference_geo": "us"}, "inference_geo"),
        ({"mcp_servers": [{"type": "url", "url": "https://mcp.example", "name": "x"}]}, "mcp_servers"),
        ({"container": "container_1"}, "container"),
        ({"context_management": {"edits": []}}, "context_management"),
        # Tool results are turns of their own in the domain: refusals of them, or after them, name the request's.
        (
            {
                "messages": [*CALLED, {"role": "user", "content": [result_block("c1"), result_block("zz")]}],
                "tools": TOOLS,
            },
            "messages[2].content[1].tool_use_id: no call with id 'zz'",
        ),
        (
            {"messages": [*CALLED, {"role": "user", "content": [result_block("c1"), WELL]}], "tools": TOOLS},
            "messages[2]: call 'c2' of messages[1] has no tool result before this turn",
        ),
        ({"messages": [*CALLED, {"role": "user", "content": [WELL]}]}, "messages[1].content[0].name: no tool named"),
        (
            {
                "messages": [
                    CALLED[0],
                    {"role": "assistant", "content": [USE_T1, USE_T1]},
                    {"role": "user", "content": [result_block("t1")]},
                ],
                "tools": TOOLS,
            },
            "messages[1].content[1].id: two tool calls have id 't1'",  # the second block, not the first
        ),
    ],
)
async def test_bad_anthropic_fields_are_400_naming_them(hosted: Doors, options: dict[str, object], field: str) -> None:
    body = {"model": "m", "messages": ANTHROPIC_MESSAGES, "max_tokens": 10, **options}
    async with httpx2.AsyncClient() as client:
        response = await client.post(
            f"{base_url(hosted)}/v1/messages", json={k: v for k, v in body.items() if v is not None}
        )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(field)


DEEP_SCHEMA = json.loads('{"items":' * 100 + "{}" + "}" * 100)
# Per dialect, a body with a JSON Schema at each place one goes, and the field each place is named by.
SCHEMA_PLACES: dict[str, tuple[Callable[[object], dict[str, object]], ...]] = {
    "/v1/chat/completions": (
        lambda schema: {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}},
        },
        lambda schema: {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": schema}}],
        },
    ),
    "/v1/messages": (
        lambda schema: {
            "model": "m",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "hi"}],
            "output_config": {"format": {"type": "json_schema", "schema": schema}},
        },
        lambda schema: {
            "model": "m",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"name": "f", "input_schema": schema}],
        },
    ),
}
SCHEMA_FIELDS = {
    "/v1/chat/completions": ["response_format.json_schema.schema", "tools[0].function.parameters"],
    "/v1/messages": ["output_config.format.schema", "tools[0].input_schema"],
}


@pytest.mark.parametrize("path", list(SCHEMA_PLACES))
@pytest.mark.parametrize(
    ("schema", "says"),
    [
        ({"type": "object", "required": 1}, "invalid JSON Schema at required"),
        ({"type": 3}, "invalid JSON Schema at type"),
        (DEEP_SCHEMA, "nested deeper than 64 levels"),
        (
            {"type": "object", "properties": {"code": {"type": "string", "pattern": "[A-Z"}}},
            "invalid JSON Schema at properties/code/pattern: '[A-Z' is not a regular expression",
        ),
        ({"patternProperties": {"(x": {}}}, "invalid JSON Schema at patternProperties: '(x' is not a regular"),
    ],
)
async def test_a_schema_is_checked_as_over_grpc_before_any_backend_sees_it(
    path: str, schema: dict[str, object], says: str, doors: Doors
) -> None:
    async with httpx2.AsyncClient(base_url=base_url(doors)) as client:
        for place, field in zip(SCHEMA_PLACES[path], SCHEMA_FIELDS[path], strict=True):
            refused = await client.post(path, json=place(schema))
            assert refused.status_code == 400, refused.text
            error = refused.json()["error"]
            assert says in error["message"]
            if path == "/v1/chat/completions":
                assert error["param"] == field
            valid = await client.post(path, json=place({"type": "object"}))
            assert valid.status_code == 404, valid.text  # taken, up to the unknown model
