"""The gRPC connection's own rules: a client's keepalive pings, as often as the server allows, keep a call open while
the server has nothing to send (a generation waiting on its upstream, a call queued, a model loading); a connection
holds at most MAX_STREAMS_PER_CONNECTION calls, and a client's further calls wait for one to end."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import serving
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import load
from tests.raw_http2 import END_STREAM, MAX_CONCURRENT_STREAMS, REFUSED_STREAM, connected
from warpcore.server.rpc.server import MAX_STREAMS_PER_CONNECTION, ServingOptions, WarpcoreServer
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

pytestmark = pytest.mark.timeout(60)

PING_SECONDS = 0.5
"""The shortest interval the server allows between a client's pings, in this test (ten seconds in service)."""
SILENCE_SECONDS = 4.5
"""How long the call hears nothing: at a ping a second (gRPC's client sends none more often), more pings than the
two too many that gRPC forgives."""
GENERATE = "/warpcore.v1.InferenceService/Generate"
PAST_THE_CAP = 100
"""Streams a test opens beyond the cap."""
ENDS_SECONDS = 10
"""A timeout that turns the server's holding on to more streams than its cap into a failure."""
WAITING_SECONDS = 1.0
"""How long a call past the cap is seen waiting for a stream."""


async def test_a_client_pinging_as_often_as_allowed_keeps_a_silent_call_open(
    server_env: dict[str, str], openai_upstream: FakeOpenAI
) -> None:
    """A tester's finding: the server's setting had a name gRPC does not know, so it allowed one ping in five minutes
    and closed, after two, the connection of a client whose keepalive pinged every 10 s, and every call on it."""
    openai_upstream.script = Script(chunks=["Once", " upon"], stall_after=1)
    pinging = [
        ("grpc.keepalive_time_ms", int(PING_SECONDS * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    options = ServingOptions(min_client_ping_seconds=PING_SECONDS)
    async with (
        serving(server_env, options) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}", options=pinging) as channel,
    ):
        stub: Stub = inference_pb2_grpc.InferenceServiceStub(channel)
        await load(stub, openai_upstream)
        call = stub.Generate(pb.GenerateRequest(model_id="m", prompt="hi"))
        frames = aiter(call)
        while not (await anext(frames)).delta.text:  # "Once": then the upstream sends nothing
            pass
        await asyncio.sleep(SILENCE_SECONDS)  # not to wait for something: the silence is what is tested
        assert not call.done(), await call.code()
        call.cancel()


async def test_a_connection_holds_no_more_streams_than_its_settings_say(server: WarpcoreServer) -> None:
    """A tester's finding: a stream that ends without its request is kept open by gRPC, before any token is checked,
    and a connection held thousands of them (hundreds of MB over a few connections), as the server set no cap."""
    async with connected(server.port) as connection:
        assert connection.settings.get(MAX_CONCURRENT_STREAMS) == MAX_STREAMS_PER_CONNECTION
        headers = {
            ":method": "POST",
            ":scheme": "http",
            ":path": GENERATE,
            ":authority": f"127.0.0.1:{server.port}",
            "content-type": "application/grpc",
            "te": "trailers",
        }
        opened = connection.open_streams(MAX_STREAMS_PER_CONNECTION + PAST_THE_CAP, headers, END_STREAM)
        ended = await asyncio.wait_for(connection.ended(PAST_THE_CAP), ENDS_SECONDS)
    # It holds no more than its cap: the streams opened past it are refused, the others stay open.
    assert ended == dict.fromkeys(opened[MAX_STREAMS_PER_CONNECTION:], REFUSED_STREAM)


async def test_a_clients_calls_past_the_cap_wait_for_a_stream(server: WarpcoreServer) -> None:
    """A gRPC client reads the cap from the SETTINGS: a call past it waits in the client's own transport, and goes once
    a stream is free, rather than failing or costing the server anything meanwhile. (Without the cap, gRPC's core even
    cancelled some of a burst of a thousand calls on one connection, legitimate ones too, while grpc.aio took them.)"""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        watches = [health.Watch(health_pb2.HealthCheckRequest()) for _ in range(MAX_STREAMS_PER_CONNECTION)]
        await asyncio.gather(*(watch.read() for watch in watches))  # each holds a stream, as long as it watches
        check = asyncio.ensure_future(health.Check(health_pb2.HealthCheckRequest()))
        done, _ = await asyncio.wait([check], timeout=WAITING_SECONDS)
        assert not done
        watches.pop().cancel()
        assert (await check).status == health_pb2.HealthCheckResponse.SERVING
        for watch in watches:
            watch.cancel()
