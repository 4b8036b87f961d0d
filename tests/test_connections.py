"""The gRPC connection's own rules: a client's keepalive pings, as often as the server allows, keep a call open while
the server has nothing to send (a generation waiting on its upstream, a call queued, a model loading)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import serving
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import load
from warpcore.server.rpc.server import ServingOptions
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
