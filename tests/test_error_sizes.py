"""A refusal quoting a caller's long value stays small at either door, and still says what is wrong."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import grpc
import httpx2
import pytest

from tests.conftest import load_tiny, rich_details
from tests.http_door import base_url
from warpcore.server.core.bounds import MAX_ERROR_MESSAGE_BYTES, fitted_message
from warpcore.server.doors import Doors
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import tools_pb2 as tpb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

LONG = "\U0001f600" * 100_000  # 400 kB of UTF-8, 1.2 MB as JSON escapes


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"model": "tiny", "messages": [{"role": LONG, "content": "hi"}]}),
        ("/v1/chat/completions", {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], LONG: 1}),
        ("/v1/messages", {"model": "tiny", "max_tokens": 5, "messages": [{"role": LONG, "content": "hi"}]}),
    ],
)
async def test_an_http_refusal_quoting_a_long_value_is_cut(doors: Doors, path: str, body: dict[str, Any]) -> None:
    headers = {"anthropic-version": "2023-06-01", "content-type": "application/json"}
    async with httpx2.AsyncClient(base_url=base_url(doors), headers=headers) as client:
        answer = await client.post(path, content=json.dumps(body))
    assert answer.status_code == 400
    assert len(answer.content) < 8 * MAX_ERROR_MESSAGE_BYTES  # was six times the request, here 7 MB
    error = answer.json()["error"]
    assert "characters)" in error["message"]
    assert len(error["message"].encode()) <= MAX_ERROR_MESSAGE_BYTES
    assert len(error.get("param") or "") < 300


def test_a_cut_message_fits_whole_in_its_bytes() -> None:
    for message in ("x" * 5000, "\U0001f600" * 5000, "é" * 2000):
        fitted = fitted_message(message)
        assert len(fitted.encode()) <= MAX_ERROR_MESSAGE_BYTES
        assert fitted.endswith(f"... ({len(message)} characters)")
    assert fitted_message("short") == "short"


async def test_a_schema_refused_deep_inside_still_says_why(stub: Stub) -> None:
    await load_tiny(stub)
    schema: dict[str, Any] = {"type": "bogus"}
    for level in range(30):
        schema = {"type": "object", "properties": {f"level_{level:02}_{'x' * 24}": schema}}
    request = pb.GenerateRequest(
        model_id="tiny",
        prompt="hi",
        options=pb.GenerationOptions(
            max_tokens=4,
            response_format=tpb.ResponseFormat(
                type=tpb.RESPONSE_FORMAT_TYPE_JSON_SCHEMA, schema_json=json.dumps(schema)
            ),
        ),
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        async for _ in stub.Generate(request):
            pass
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "bogus" in (refused.value.details() or "")
    assert rich_details(refused.value)[1] == ["options.response_format.schema_json"]


async def test_a_long_tool_name_is_quoted_cut_and_says_so(stub: Stub) -> None:
    await load_tiny(stub)
    tool = tpb.Tool(name="lookup", parameters_json='{"type": "object"}')
    request = pb.GenerateRequest(
        model_id="tiny",
        prompt="hi",
        options=pb.GenerationOptions(max_tokens=4),
        tools=[tool],
        tool_choice=tpb.ToolChoice(mode=tpb.TOOL_CHOICE_MODE_NAMED, name="n" * 1000),
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        async for _ in stub.Generate(request):
            pass
    assert "(1000 characters)" in (refused.value.details() or "")
