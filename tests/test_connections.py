"""The gRPC connection's own rules: a client's keepalive pings, as often as the server allows, keep a call open while
the server has nothing to send (a generation waiting on its upstream, a call queued, a model loading); answers go
uncompressed, compressed requests are taken."""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import serving
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import load, posts
from tests.relay import PREFACE, relay
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


def _message_flags(http2: bytes) -> list[int]:
    """The compressed flag of each gRPC message in one side's HTTP/2 frames (DATA frames joined per stream)."""
    data: dict[int, bytearray] = {}
    at = len(PREFACE) if http2.startswith(PREFACE) else 0
    while at + 9 <= len(http2):
        length, kind, stream = int.from_bytes(http2[at : at + 3]), http2[at + 3], int.from_bytes(http2[at + 5 : at + 9])
        if kind == 0:  # DATA
            data.setdefault(stream, bytearray()).extend(http2[at + 9 : at + 9 + length])
        at += 9 + length
    flags = []
    for body in data.values():
        while body:
            flags.append(body[0])
            del body[: 5 + int.from_bytes(body[1:5])]
    return flags


async def test_answers_go_uncompressed_to_a_client_that_accepts_gzip_and_its_gzip_request_is_taken(
    server_env: dict[str, str], openai_upstream: FakeOpenAI
) -> None:
    """What the README says of compression (a tester's question): a stream's frames are too small for gzip to pay."""
    openai_upstream.script = Script(chunks=["la " * 2000])
    sent = (bytearray(), bytearray())
    async with serving(server_env) as server:
        proxy = await asyncio.start_server(functools.partial(relay, server.port, sent), "127.0.0.1", 0)
        port = proxy.sockets[0].getsockname()[1]
        async with proxy, grpc.aio.insecure_channel(f"127.0.0.1:{port}", compression=grpc.Compression.Gzip) as channel:
            stub: Stub = inference_pb2_grpc.InferenceServiceStub(channel)
            await load(stub, openai_upstream)
            frames = [frame async for frame in stub.Generate(pb.GenerateRequest(model_id="m", prompt="hi " * 5000))]
    assert "".join(frame.delta.text for frame in frames) == "la " * 2000
    assert posts(openai_upstream)[-1]["messages"][-1]["content"] == "hi " * 5000
    assert _message_flags(bytes(sent[0]))[-1] == 1  # the prompt went gzip-compressed
    answers = _message_flags(bytes(sent[1]))
    assert answers == [0] * (1 + len(frames))  # the load's answer and every frame, none compressed
