"""A request's stop sequences hold on a hosted model whose upstream ignores them (many OpenAI-compatible servers honour
`stop` loosely): the answer ends before the first one, as a local model's does, and the upstream stream is closed;
text held back while it could begin one is released when the stream ends otherwise. A call's arguments and the
reasoning are not cut."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from tests.conftest import collect
from tests.fakes.base import FakeUpstream
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import load, posts, prompt, use
from tests.tool_wire import Args, Call, Text, chat, stream, user
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


async def test_the_answer_ends_before_a_stop_sequence_the_upstream_sent(stub: Stub, upstream: FakeUpstream) -> None:
    await load(stub, upstream)
    upstream.script = Script(chunks=["hello ST", "OP world"])
    text, result = await collect(stub.Generate(prompt(max_tokens=16, stop_sequences=["STOP"])))
    assert (text, result.finish_reason, result.stop_sequence) == ("hello ", pb.FINISH_REASON_STOP_SEQUENCE, "STOP")
    sent = posts(upstream)[-1]
    assert sent.get("stop", sent.get("stop_sequences")) == ["STOP"]  # asked of the upstream too


async def test_the_upstream_stream_closes_at_the_stop_sequence(stub: Stub, upstream: FakeUpstream) -> None:
    # The upstream would send nothing more until its client went: the answer ends without waiting for its end.
    await load(stub, upstream)
    upstream.script = Script(chunks=["one STOP", " two"], stall_after=2)
    text, result = await asyncio.wait_for(collect(stub.Generate(prompt(stop_sequences=["STOP"]))), 10)
    assert (text, result.finish_reason) == ("one ", pb.FINISH_REASON_STOP_SEQUENCE)
    await asyncio.wait_for(upstream.disconnected.wait(), 5)


async def test_the_first_of_several_stop_sequences_ends_the_answer(stub: Stub, upstream: FakeUpstream) -> None:
    await load(stub, upstream)
    upstream.script = Script(chunks=["a S", "Tx <", "en", "d> b STOP"])
    text, result = await collect(stub.Generate(prompt(stop_sequences=["STOP", "<end>"])))
    assert (text, result.stop_sequence) == ("a STx ", "<end>")


async def test_text_held_back_as_a_possible_stop_sequence_is_released_at_the_end(
    stub: Stub, upstream: FakeUpstream
) -> None:
    await load(stub, upstream)
    upstream.script = Script(chunks=["hello ST", "OP"])
    deltas = [frame.delta.text async for frame in stub.Generate(prompt(stop_sequences=["STOP!"])) if frame.delta.text]
    assert deltas == ["hello ", "STOP"]


async def test_text_held_back_comes_before_a_call_that_follows(stub: Stub, upstream: FakeUpstream) -> None:
    # A stop sequence is looked for in a run of text: a call between two runs parts them, and the text stays first.
    await load(stub, upstream)
    use(upstream, [Text("Checking ST"), Call(0, "call_1", "get_weather"), Args(0, '{"city": "STOP"}')])
    streamed = await stream(
        stub.Generate(chat(user("Weather?"), options=pb.GenerationOptions(stop_sequences=["STOP"])))
    )
    assert streamed.result is not None
    assert (streamed.text, streamed.result.finish_reason) == ("Checking ST", pb.FINISH_REASON_TOOL_CALLS)
    assert json.loads(streamed.arguments(0)) == json.loads(streamed.result.tool_calls[0].arguments) == {"city": "STOP"}


async def test_reasoning_is_not_cut(stub: Stub, openai_upstream: FakeOpenAI) -> None:
    await load(stub, openai_upstream)
    openai_upstream.script = Script(events=[{"reasoning_content": "I could STOP here"}, {"content": "Done"}])
    streamed = await stream(stub.Generate(prompt(stop_sequences=["STOP"])))
    assert streamed.result is not None
    assert "".join(piece.text for piece in streamed.reasoning) == "I could STOP here"
    assert (streamed.text, streamed.result.finish_reason) == ("Done", pb.FINISH_REASON_STOP)
