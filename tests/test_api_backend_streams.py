"""OpenAI and Anthropic backends through the real SDKs, against loopback servers that speak their protocols: streamed
deltas and usage, deadlines and timeouts on a stalled stream, and shutdown."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.api_backends_support import Code
from tests.conftest import AccessLines, collect, failed_stream, serving
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.base import FakeUpstream
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import api_config, load, prompt
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


# Generation


async def test_stream_passes_deltas_usage_finish_reason_and_request_id(stub: Stub, upstream: FakeUpstream) -> None:
    upstream.script = Script(chunks=["One", " two", " three"], prompt_tokens=9, request_id="req-42")
    await load(stub, upstream)
    frames = [frame async for frame in stub.Generate(prompt(max_tokens=50))]
    assert [frame.delta.text for frame in frames[:-1]] == ["One", " two", " three"]
    result = frames[-1].result
    assert result.finish_reason == pb.FINISH_REASON_STOP
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (9, 3)
    assert result.upstream_request_id == "req-42"


@pytest.mark.parametrize(
    ("start_usage", "delta_usage", "usage"),
    [
        pytest.param({"input_tokens": 0}, {"input_tokens": 11, "output_tokens": 42}, (11, 42), id="litellm"),
        pytest.param({"input_tokens": 11, "output_tokens": 1}, {"output_tokens": 42}, (11, 42), id="anthropic"),
        pytest.param({"input_tokens": 11}, {"input_tokens": 0, "output_tokens": 42}, (11, 42), id="zero-in-delta"),
        pytest.param({"input_tokens": 11, "output_tokens": 5}, {"output_tokens": None}, (11, 5), id="null-in-delta"),
        pytest.param({}, {"input_tokens": 13, "output_tokens": 42}, (13, 42), id="only-in-delta"),
        pytest.param({"input_tokens": 9}, {"input_tokens": 12, "output_tokens": 42}, (12, 42), id="latest-wins"),
    ],
)
async def test_anthropic_usage_from_whichever_event_carries_it(
    stub: Stub,
    anthropic_upstream: FakeAnthropic,
    start_usage: dict[str, int | None],
    delta_usage: dict[str, int | None],
    usage: tuple[int, int],
) -> None:
    anthropic_upstream.script = Script(start_usage=start_usage, delta_usage=delta_usage)
    await load(stub, anthropic_upstream)
    _, result = await collect(stub.Generate(prompt()))
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == usage


async def test_deltas_pass_through_before_the_upstream_finishes_and_cancel_closes_it(
    stub: Stub, upstream: FakeUpstream
) -> None:
    upstream.script = Script(chunks=["a", "b", "c"], stall_after=2)
    await load(stub, upstream)
    call = stub.Generate(prompt())
    received = []
    async for frame in call:
        received.append(frame.delta.text)
        if len(received) == 2:
            break
    assert received == ["a", "b"]  # sent while the upstream still holds the rest back
    call.cancel()
    await asyncio.wait_for(upstream.disconnected.wait(), 5)


async def test_deadline_ends_a_stalled_stream_and_closes_the_upstream(stub: Stub, upstream: FakeUpstream) -> None:
    upstream.script = Script(chunks=["a", "b"], stall_after=1)
    await load(stub, upstream)
    _, error = await failed_stream(stub.Generate(prompt(), timeout=1.0))
    assert error.code() == Code.DEADLINE_EXCEEDED
    await asyncio.wait_for(upstream.disconnected.wait(), 5)


async def test_remaining_deadline_bounds_the_upstream_timeout(stub: Stub, upstream: FakeUpstream) -> None:
    await load(stub, upstream, api_config(upstream, timeout={"seconds": 600}))
    await collect(stub.Generate(prompt(), timeout=5))
    # Both SDKs announce the read timeout they apply in this header.
    assert float(upstream.requests[-1].headers["x-stainless-read-timeout"]) < 6  # 5 s, give or take rounding


async def test_configured_timeout_ends_a_stalled_stream(stub: Stub, upstream: FakeUpstream) -> None:
    upstream.script = Script(chunks=["a", "b"], stall_after=1)
    await load(stub, upstream, api_config(upstream, timeout={"nanos": 500_000_000}))
    frames, error = await failed_stream(stub.Generate(prompt(), timeout=30))
    assert error.code() == Code.DEADLINE_EXCEEDED
    provider = "openai" if isinstance(upstream, FakeOpenAI) else "anthropic"
    assert error.details() == (
        f"{provider} upstream error: 127.0.0.1:{upstream.port} did not answer in time (the backend's timeout allows"
        " 0.5 s for each wait, the call's deadline less if it is sooner)"
    )
    assert [frame.WhichOneof("frame") for frame in frames] == ["delta", "result"]
    assert frames[-1].result.finish_reason == pb.FINISH_REASON_ERROR


async def test_shutdown_ends_a_hosted_stream_with_a_cancelled_frame_and_its_usage(
    server_env: dict[str, str], anthropic_upstream: FakeAnthropic, access_lines: AccessLines
) -> None:
    # 1000 chunks 10 ms apart: far longer than the grace, so that only the drain can end the stream.
    anthropic_upstream.script = Script(chunks=["tick"] * 1000, delay=0.01, prompt_tokens=17, request_id="req-drained")
    async with serving(server_env) as server, grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        await load(stub, anthropic_upstream)
        frames = aiter(stub.Generate(prompt()))
        first = await anext(frames)
        stopping = asyncio.ensure_future(server.stop(1.0))
        rest = [frame async for frame in frames]
        await stopping
    assert first.delta.text == "tick"
    result = rest[-1].result
    assert result.finish_reason == pb.FINISH_REASON_CANCELLED
    # What the upstream had reported when the stream was stopped: message_start's prompt count; its output count (1)
    # is of the answer's start, no count of the answer cut.
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (17, 0)
    assert result.upstream_request_id == "req-drained"
    await asyncio.wait_for(anthropic_upstream.disconnected.wait(), 5)  # the upstream stream was closed
    # A tester's finding: the access line said completion_tokens 0 after the text it streamed, a false count.
    while (await access_lines.next())[0] != "Generate":
        pass
    logged = access_lines.records[-1].__dict__
    assert (logged["finish_reason"], logged["prompt_tokens"], "completion_tokens" in logged) == ("cancelled", 17, False)


async def test_a_hosted_stream_stalled_at_shutdown_ends_cancelled_with_the_prompt_usage_told(
    server_env: dict[str, str], anthropic_upstream: FakeAnthropic
) -> None:
    # Silent after its first chunk: no event comes to stop at, so the drain cuts the call, whose result still says
    # what the upstream told of the prompt (message_start) rather than nothing.
    anthropic_upstream.script = Script(chunks=["a", "b"], stall_after=1, prompt_tokens=17, request_id="req-stalled")
    async with serving(server_env) as server, grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        await load(stub, anthropic_upstream)
        frames = aiter(stub.Generate(prompt()))
        await anext(frames)
        stopping = asyncio.ensure_future(server.stop(1.0))
        rest = [frame async for frame in frames]
        await stopping
    result = rest[-1].result
    assert result.finish_reason == pb.FINISH_REASON_CANCELLED
    assert result.usage.prompt_tokens == 17
    assert result.upstream_request_id == "req-stalled"  # a tester's finding: only the access log had it
