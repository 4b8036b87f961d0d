"""Deltas from an upstream faster than gRPC writes go out joined: whole, in order, the first one at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import collect, failed_stream
from tests.fakes.base import FakeUpstream
from tests.fakes.script import Script
from tests.hosted import load, prompt
from warpcore.server.core.coalescing import FIRST_FRAME_HEADSTART, JOIN_BACKLOG, READ_AHEAD, READ_SLICE, coalesced
from warpcore.server.core.domain import GenerationEvent, TextChunk, ToolCallDelta
from warpcore.server.core.errors import UnavailableError
from warpcore.server.core.tokens import PromptUsage, TokenLogprob
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

BURST = [f" t{index}" for index in range(2000)]
"""Sent with no delay: the server reads them far faster than it can write one gRPC message each."""


async def pulling(texts: list[str], pulled: list[str]) -> AsyncGenerator[GenerationEvent, None]:
    """`texts` as deltas, each noted in `pulled` as it is read."""
    for text in texts:
        pulled.append(text)
        yield TextChunk(text)


async def deltas_of(call: grpc.aio.UnaryStreamCall[pb.GenerateRequest, pb.GenerateResponse]) -> list[str]:
    frames = [frame async for frame in call]
    assert frames[-1].HasField("result")
    assert all(frame.HasField("delta") for frame in frames[:-1])
    return [frame.delta.text for frame in frames[:-1]]


async def test_a_burst_arrives_whole_in_order_in_fewer_frames(stub: Stub, upstream: FakeUpstream) -> None:
    upstream.script = Script(chunks=BURST)
    await load(stub, upstream)
    deltas = await deltas_of(stub.Generate(prompt(max_tokens=len(BURST))))
    assert "".join(deltas) == "".join(BURST)
    assert len(deltas) < len(BURST)
    assert deltas[0] == BURST[0]  # the first delta went out alone, at once, not held back for the ones after it


async def test_deltas_pass_one_per_frame_while_the_backlog_is_short(stub: Stub, upstream: FakeUpstream) -> None:
    # All at once as well, but the first goes out alone and the rest never exceed the backlog that gets joined.
    chunks = [f" c{index}" for index in range(JOIN_BACKLOG + 1)]
    upstream.script = Script(chunks=chunks)
    await load(stub, upstream)
    assert await deltas_of(stub.Generate(prompt(max_tokens=len(chunks)))) == chunks


async def test_the_first_delta_waits_for_nothing_after_it(stub: Stub, upstream: FakeUpstream) -> None:
    upstream.script = Script(chunks=["first", "never sent"], stall_after=1)  # then silence until we hang up
    await load(stub, upstream)
    call = stub.Generate(prompt(max_tokens=10))
    first = await call.read()
    assert isinstance(first, pb.GenerateResponse)
    assert first.delta.text == "first"
    call.cancel()
    await upstream.disconnected.wait()  # and the server hung up on the upstream


async def test_a_failure_comes_after_the_text_before_it(stub: Stub, upstream: FakeUpstream) -> None:
    upstream.script = Script(chunks=BURST, cut_after=1500)
    await load(stub, upstream)
    frames, error = await failed_stream(stub.Generate(prompt(max_tokens=len(BURST))))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    # The SDKs' aiohttp transport drops what it had buffered, not yet read, when the connection breaks; with
    # every token sent at once that is most of them. What arrives is a prefix: in order, without gaps.
    text = "".join(frame.delta.text for frame in frames[:-1])
    assert text
    assert "".join(BURST[:1500]).startswith(text)
    assert frames[-1].result.finish_reason == pb.FINISH_REASON_ERROR


async def test_every_delta_read_before_a_failure_goes_out_first() -> None:
    async def events() -> AsyncGenerator[GenerationEvent, None]:
        for text in BURST:
            yield TextChunk(text)
        raise UnavailableError("the upstream went away")

    received: list[str] = []

    async def write_all() -> None:
        async for event in coalesced(events()):
            assert isinstance(event, TextChunk)
            received.append(event.text)
            await asyncio.sleep(0)  # a writer slower than the reader, so that deltas pile up and get joined

    with pytest.raises(UnavailableError, match="went away"):
        await write_all()
    assert "".join(received) == "".join(BURST)
    assert len(received) < len(BURST)


async def test_a_buffered_burst_is_joined_for_a_writer_that_never_waits() -> None:
    # An HTTP response's write returns at once until the socket's buffers are full: the writer is always idle
    # when the next delta comes, and yet a burst already read must not go out one event (and one send) per token.
    async def events() -> AsyncGenerator[GenerationEvent, None]:
        for text in BURST:
            yield TextChunk(text)

    received = [event.text async for event in coalesced(events()) if isinstance(event, TextChunk)]
    assert "".join(received) == "".join(BURST)
    assert received[0] == BURST[0]
    assert len(received) <= len(BURST) // READ_SLICE + 2  # the first alone, then at least a read slice per frame


async def test_a_join_keeps_each_token_s_logprob_a_refusal_apart_and_a_tool_call_in_its_place() -> None:
    answer = [TextChunk(text, (TokenLogprob(text.encode(), -index / 10),)) for index, text in enumerate(BURST[:40])]
    refusal = [TextChunk(" no", refusal=True), TextChunk(" way", refusal=True)]
    call = ToolCallDelta(0, id="call_1", name="lookup")
    tail = [TextChunk(" after"), TextChunk(" the call")]
    deltas: list[GenerationEvent] = [*answer, *refusal, call, *tail]

    async def events() -> AsyncGenerator[GenerationEvent, None]:
        for delta in deltas:
            yield delta

    received = [event async for event in coalesced(events())]
    assert len(received) < len(answer) + len(refusal) + 1 + len(tail)  # joined
    place = received.index(call)
    before, after = received[:place], received[place + 1 :]
    assert all(isinstance(event, TextChunk) for event in before + after)
    texts = [event for event in before if isinstance(event, TextChunk) and not event.refusal]
    refused = [event for event in before if isinstance(event, TextChunk) and event.refusal]
    assert before == texts + refused  # the refusal's text after the answer's, never in one chunk with it
    assert "".join(event.text for event in texts) == "".join(chunk.text for chunk in answer)
    assert [logprob for event in texts for logprob in event.logprobs] == [chunk.logprobs[0] for chunk in answer]
    assert "".join(event.text for event in refused) == " no way"
    assert after == [TextChunk(" after the call")]


async def test_nothing_after_the_first_delta_is_read_until_it_is_written() -> None:
    # A burst already buffered would keep the process busy reading while the caller waits for its first frame.
    pulled: list[str] = []
    stream = coalesced(pulling(BURST, pulled))
    assert await anext(stream) == TextChunk(BURST[0])
    for _ in range(3 * READ_SLICE):  # turns of the loop for the reader, while the first frame is being written
        await asyncio.sleep(0)
    assert pulled == BURST[:1]
    rest: list[str] = []
    async for event in stream:  # asking for the next frame says the first one is written
        assert isinstance(event, TextChunk)
        rest.append(event.text)
        await asyncio.sleep(0)  # a writer slower than the reader, as before
    assert "".join(rest) == "".join(BURST[1:])
    assert len(rest) < len(BURST) - 1  # the rest of the burst was read ahead and joined, as before


async def test_the_usage_and_the_first_delta_reach_the_caller_without_a_turn_of_the_event_loop() -> None:
    # Handed over by a reader task, each waited behind whatever else the loop had to do (the rest of an upstream's
    # burst, other streams' frames) before its frame could be written.
    loop = asyncio.get_running_loop()
    turns: list[str] = []

    async def events() -> AsyncGenerator[GenerationEvent, None]:
        yield PromptUsage(5)
        for text in BURST[:3]:
            yield TextChunk(text)

    stream = coalesced(events())
    loop.call_soon(turns.append, "a turn")
    assert await anext(stream) == PromptUsage(5)
    assert await anext(stream) == TextChunk(BURST[0])
    assert turns == []
    assert [event async for event in stream] == [TextChunk(BURST[1]), TextChunk(BURST[2])]


async def test_a_caller_that_stops_reading_stops_the_reading_of_its_backend() -> None:
    # A client that reads nothing more kept the server reading, and holding, all its upstream sent.
    sent = [f" t{index}" for index in range(10 * READ_AHEAD)]
    pulled: list[str] = []
    stream = coalesced(pulling(sent, pulled))
    received = [await anext(stream), await anext(stream)]  # then the caller stops reading
    for _ in range(4 * len(sent) // READ_SLICE):  # turns of the loop enough for the reader to read them all
        await asyncio.sleep(0)
    delivered = sum(event.text.count(" t") for event in received if isinstance(event, TextChunk))
    assert len(pulled) <= delivered + READ_AHEAD
    received += [event async for event in stream]
    assert "".join(event.text for event in received if isinstance(event, TextChunk)) == "".join(sent)


async def test_the_rest_of_a_burst_is_read_only_after_a_headstart_for_the_caller() -> None:
    # Writing the first frame returns before the caller has run; reading the burst at once would take the core it
    # needs to see its first token.
    loop = asyncio.get_running_loop()
    pulled_at: list[float] = []

    async def events() -> AsyncGenerator[GenerationEvent, None]:
        for text in BURST[:3]:
            pulled_at.append(loop.time())
            yield TextChunk(text)

    stream = coalesced(events())
    assert await anext(stream) == TextChunk(BURST[0])
    written = loop.time()
    assert await anext(stream) == TextChunk(BURST[1])  # asking for it says the first frame is written
    assert pulled_at[1] - written >= FIRST_FRAME_HEADSTART * 0.99  # the loop's timers may fire within its resolution
    await stream.aclose()


async def test_the_prompt_usage_goes_out_first_alone_and_the_first_delta_still_alone_after_it() -> None:
    pulled: list[str] = []

    async def events() -> AsyncGenerator[GenerationEvent, None]:
        yield PromptUsage(5, cached_prompt_tokens=2)
        for text in BURST:
            pulled.append(text)
            yield TextChunk(text)

    stream = coalesced(events())
    assert await anext(stream) == PromptUsage(5, cached_prompt_tokens=2)
    assert await anext(stream) == TextChunk(BURST[0])
    for _ in range(3 * READ_SLICE):
        await asyncio.sleep(0)
    assert pulled == BURST[:1]  # as without the usage: nothing read past the first delta until it is written
    await stream.aclose()


async def test_usage_and_finish_come_last_after_joined_text(stub: Stub, upstream: FakeUpstream) -> None:
    upstream.script = Script(chunks=BURST, prompt_tokens=7)
    await load(stub, upstream)
    text, result = await collect(stub.Generate(prompt(max_tokens=len(BURST))))
    assert text == "".join(BURST)
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (7, len(BURST))
