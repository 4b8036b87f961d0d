"""An upstream's broken answer, which comes again however often it is asked, is told to the official SDKs as not to be
retried (`x-should-retry: false`), and over gRPC carries no RetryInfo. An outside tester's finding: LiteLLM's Messages
route, opening a new tool_use block with the same id for each piece of a call, was answered with a 503 that the
anthropic SDK's default retries sent upstream three times in four seconds. The real SDKs against loopback fakes."""

from __future__ import annotations

from typing import Any

import anthropic
import grpc
import openai
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tests.conftest import failed_stream, rich_details
from tests.fakes.base import FakeUpstream
from tests.fakes.script import Script
from tests.http_door import anthropic_messages, base_url, openai_messages
from tests.tool_wire import Call, script_steps
from warpcore.server.doors import Doors
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"city": {"type": "string"}}}
_OPENAI_TOOLS: Any = [{"type": "function", "function": {"name": "get_weather", "parameters": _SCHEMA}}]
_ANTHROPIC_TOOLS: Any = [{"name": "get_weather", "input_schema": _SCHEMA}]


def broken(upstream: FakeUpstream, flaw: str) -> str:
    """Script the upstream's broken answer; the reason it fails with."""
    if flaw == "event not JSON":
        upstream.script = Script(chunks=["a"], malformed_after=0, headers={"retry-after": "7"})
        return "UPSTREAM_MALFORMED_STREAM"
    events, finish = script_steps(upstream, [Call(0, "call_1", "get_weather"), Call(1, "call_1", "get_weather")])
    upstream.script = Script(events=events, finish_reason=finish, headers={"retry-after": "7"})
    return "UPSTREAM_MALFORMED_TOOL_CALL"


@pytest.mark.parametrize("flaw", ["event not JSON", "tool call id repeated"])
async def test_an_upstreams_broken_answer_is_not_retried(hosted: Doors, upstream: FakeUpstream, flaw: str) -> None:
    reason = broken(upstream, flaw)
    async with openai.AsyncOpenAI(base_url=f"{base_url(hosted)}/v1", api_key="x") as openai_sdk:  # default retries
        with pytest.raises(openai.InternalServerError) as from_openai:
            await openai_sdk.chat.completions.create(model="m", messages=openai_messages(), tools=_OPENAI_TOOLS)
    async with anthropic.AsyncAnthropic(base_url=base_url(hosted), api_key="x") as anthropic_sdk:
        with pytest.raises(anthropic.InternalServerError) as from_anthropic:
            await anthropic_sdk.messages.create(
                model="m", messages=anthropic_messages(), max_tokens=10, tools=_ANTHROPIC_TOOLS
            )
    for failure in (from_openai.value, from_anthropic.value):
        assert failure.status_code == 503  # the upstream's fault, as before
        assert failure.response.headers["x-should-retry"] == "false"
        assert "retry-after" not in failure.response.headers
    assert from_openai.value.code == reason.lower()
    assert len([request for request in upstream.requests if request.method == "POST"]) == 2  # one each

    async with grpc.aio.insecure_channel(f"127.0.0.1:{hosted.grpc.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        _, error = await failed_stream(stub.Generate(pb.GenerateRequest(model_id="m", prompt="hi")))
    assert (error.code(), rich_details(error)[0].reason) == (grpc.StatusCode.UNAVAILABLE, reason)  # codes kept
    status = rpc_status.from_call(error)
    assert status is not None
    assert not any(detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for detail in status.details)
