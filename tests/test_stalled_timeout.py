"""A caller that stops reading, and never closes its connection, keeps its generation's slot only for the stalled
reader timeout: then its generation is stopped, the call ends cancelled, and the caller queued behind it runs."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import TINY_MODEL, AccessLines, greedy, load_tiny, serving, serving_doors
from tests.fakes.script import Script
from tests.hosted import key_of
from tests.http_door import async_openai_client, openai_messages
from warpcore.server.core.domain import Admission, ApiSettings, BackendKind, GenerationParams, LoadSpec
from warpcore.server.core.engine import GenerationOutput, GenerationResult
from warpcore.server.core.limits import Limits
from warpcore.server.rpc.server import ServingOptions
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

if TYPE_CHECKING:
    from tests.fakes.openai_api import FakeOpenAI
    from warpcore.server.doors import Doors

TIMEOUT = 1.0
"""The servers' stalled reader timeout here: short, for the test's sake."""


def options() -> ServingOptions:
    """A server's limits are its own: one that has shut down refuses every call from then on."""
    return ServingOptions(limits=Limits(stalled_reader_timeout=TIMEOUT))


SMALL_WINDOW = [("grpc.http2.lookahead_bytes", 1024), ("grpc.http2.bdp_probe", 0)]
"""A client's HTTP/2 flow-control window of 1 KiB: one that reads nothing holds the server's writes at once."""


@pytest.fixture
async def doors(server_env: Mapping[str, str]) -> AsyncIterator[Doors]:
    async with serving_doors(server_env, options()) as started:
        yield started


async def until(condition: Callable[[], bool], what: str, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


async def read_to_end(call: grpc.aio.UnaryStreamCall[pb.GenerateRequest, pb.GenerateResponse]) -> None:
    while await call.read() is not grpc.aio.EOF:
        pass


async def test_a_local_generation_whose_grpc_caller_reads_nothing_is_stopped_and_frees_its_slot(
    server_env: Mapping[str, str], access_lines: AccessLines, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", logger="warpcore.server")
    async with (
        serving(server_env, options()) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}", options=SMALL_WINDOW) as stalled_channel,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        await load_tiny(stub, parallel=1)
        assert await access_lines.next() == ("LoadModel", "tiny", "OK")
        stalled = inference_pb2_grpc.InferenceServiceStub(stalled_channel).Generate(greedy("the world", 2000))
        first = await stalled.read()
        assert isinstance(first, pb.GenerateResponse)
        started = time.monotonic()
        # The model's one slot is the stalled call's: this call waits for it, then runs.
        frames = [frame async for frame in stub.Generate(greedy("hello", 4), timeout=30)]
        waited = time.monotonic() - started
        assert frames[-1].result.usage.completion_tokens == 4
        assert waited >= TIMEOUT
        with pytest.raises(grpc.aio.AioRpcError) as ended:  # the frames written before the stop, then the status
            await read_to_end(stalled)
        assert ended.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert "read nothing of it for 1 s" in (ended.value.details() or "")
    lines = [await access_lines.next(), await access_lines.next()]
    assert lines[0] == ("Generate", "tiny", "DEADLINE_EXCEEDED")  # the status its caller got
    assert lines[1] == ("Generate", "tiny", "OK")
    assert access_lines.records[-2].__dict__["finish_reason"] == "cancelled"
    assert access_lines.records[-2].__dict__["ended_by"] == "stalled_reader"
    assert "ended_by" not in access_lines.records[-1].__dict__
    warnings = [record for record in caplog.records if "read nothing" in record.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].__dict__["request_id"] == access_lines.records[-2].__dict__["request_id"]


async def test_a_hosted_stream_whose_http_caller_reads_nothing_is_stopped_and_its_upstream_closed(
    doors: Doors, openai_upstream: FakeOpenAI, access_lines: AccessLines, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", logger="warpcore.server")
    settings = ApiSettings(api_key=key_of(openai_upstream), base_url=openai_upstream.base_url)
    spec = LoadSpec("m", BackendKind.OPENAI, openai_upstream.models[0], settings, None, Admission(max_streams=1))
    await doors.engine.load(spec)
    # More than the sockets' buffers hold, then nothing until warpcore hangs up.
    openai_upstream.script = Script(chunks=["x" * 65536] * 200, stall_after=200)
    body = {"model": "m", "messages": openai_messages(), "stream": True}
    assert doors.http is not None
    small = socket.socket()
    small.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: the door's writes wait at once
    small.connect(("127.0.0.1", doors.http.port))
    reader, writer = await asyncio.open_connection(sock=small)
    payload = json.dumps(body).encode()
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    writer.write(head.encode() + payload)  # and nothing is read
    try:
        gates = doors.engine.limits.gates
        await until(lambda: "m" in gates and gates["m"].active == 1, "the stalled stream never started")
        openai_upstream.script = Script(chunks=["fine"])
        started = time.monotonic()
        async with async_openai_client(doors) as client:
            answer = await asyncio.wait_for(client.chat.completions.create(model="m", messages=openai_messages()), 30)
        assert answer.choices[0].message.content == "fine"
        assert time.monotonic() - started >= TIMEOUT
        await asyncio.wait_for(openai_upstream.disconnected.wait(), 10)
        while await asyncio.wait_for(reader.read(1 << 20), 10):  # what was written, then the door hangs up
            pass
    finally:
        writer.close()
    lines = [await access_lines.next(), await access_lines.next()]
    assert lines == [("/v1/chat/completions", "m", "CANCELLED"), ("/v1/chat/completions", "m", "OK")]
    assert access_lines.records[-2].__dict__["finish_reason"] == "cancelled"
    assert access_lines.records[-2].__dict__["ended_by"] == "stalled_reader"
    assert access_lines.records[-2].__dict__["upstream_request_id"] == "req_fake_123"
    # A tester's finding: the warning's request id was empty at the HTTP door.
    warnings = [record for record in caplog.records if "read nothing" in record.getMessage()]
    assert [warning.__dict__["request_id"] for warning in warnings] == [access_lines.records[-2].__dict__["request_id"]]


async def test_a_caller_that_takes_its_outputs_slowly_is_not_cut(doors: Doors) -> None:
    """A caller that pauses before every output it asks for, each time for a good part of the timeout, is reading:
    only an output left untaken for a whole timeout ends a generation. (Measured at the engine: over gRPC, a stream's
    frames wait in grpc's buffers, and a slow reader's pauses add up before a frame is taken from the generation.)"""
    await doors.engine.load(LoadSpec("tiny", BackendKind.LLAMA_CPP, TINY_MODEL, None, None))
    params = GenerationParams(prompt="the world", messages=(), max_tokens=6, temperature=0.0)
    outputs = [output async for output in slowly(doors.engine.generate("tiny", params), TIMEOUT * 0.4)]
    result = outputs[-1]
    assert isinstance(result, GenerationResult)
    assert result.finish.completion_tokens == 6


async def slowly(outputs: AsyncIterator[GenerationOutput], pause: float) -> AsyncIterator[GenerationOutput]:
    async for output in outputs:
        yield output
        await asyncio.sleep(pause)  # a slow reader's pause before it asks for the next output
