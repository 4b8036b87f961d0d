"""Deltas longer than a gRPC frame may be: an upstream's single event of more text than the server's --max-message-bytes
arrives whole, cut into frames that fit, where grpc refused the frame and ended the call with no result."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import serving
from tests.fakes.base import FakeUpstream
from tests.fakes.script import Script
from tests.hosted import load, prompt
from warpcore.server.core.domain import ReasoningChunk, TextChunk, ToolCallDelta
from warpcore.server.core.tokens import TokenLogprob
from warpcore.server.rpc.delta_pieces import piece_chars, pieces
from warpcore.server.rpc.server import ServingOptions
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

LIMIT = 4096


@pytest.fixture
async def small_frames(server_env: Mapping[str, str]) -> AsyncIterator[Stub]:
    async with (
        serving(server_env, ServingOptions(max_message_bytes=LIMIT)) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        yield inference_pb2_grpc.InferenceServiceStub(channel)


async def test_an_event_longer_than_a_frame_arrives_whole_in_frames_that_fit(
    small_frames: Stub, upstream: FakeUpstream
) -> None:
    long = "é" * 3000 + "😀" * 1000 + "x" * 5000  # bytes of 2 and 4 a character, over the limit several times
    upstream.script = Script(chunks=["a", long, "b"])
    await load(small_frames, upstream)
    frames = [frame async for frame in small_frames.Generate(prompt())]
    assert "".join(frame.delta.text for frame in frames) == "a" + long + "b"
    assert max(frame.ByteSize() for frame in frames) <= LIMIT
    assert frames[-1].result.finish_reason == pb.FINISH_REASON_STOP


def test_pieces_keep_each_deltas_parts_where_a_reader_looks_for_them() -> None:
    assert pieces(TextChunk("short"), 5) == (TextChunk("short"),)
    token = TokenLogprob(b"abcdef", -0.5)
    assert pieces(TextChunk("abcdef", logprobs=(token,), refusal=True), 4) == [
        TextChunk("abcd", refusal=True),
        TextChunk("ef", logprobs=(token,), refusal=True),
    ]
    assert pieces(ReasoningChunk("abcdefghi", signature="sig"), 4) == [
        ReasoningChunk("abcd"),
        ReasoningChunk("efgh"),
        ReasoningChunk("i", signature="sig"),
    ]
    assert pieces(ToolCallDelta(2, id="call_1", name="f", arguments='{"a": 1}'), 5) == [
        ToolCallDelta(2, id="call_1", name="f", arguments='{"a":'),
        ToolCallDelta(2, arguments=" 1}"),
    ]
    assert piece_chars(LIMIT) * 4 <= LIMIT // 2  # room for the rest of the frame
