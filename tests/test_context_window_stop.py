"""An answer the model's context window ended, rather than max_tokens, is told apart from one max_tokens ended (an
outside tester's finding: Anthropic's `model_context_window_exceeded` came out as a plain max_tokens stop, so a client
raising max_tokens to retry would keep failing): over gRPC FINISH_REASON_LENGTH with context_window_exceeded, in the
SDK and the CLI, and on the door's Anthropic route as Claude says it; the OpenAI routes, which have no such reason,
say `length` and `max_output_tokens` as before."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
import pytest

from tests.cli import warpcore
from tests.conftest import collect, greedy, load_tiny
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.script import Script
from tests.hosted import prompt
from tests.http_door import anthropic_messages, async_anthropic_client, async_openai_client, load_hosted, text_of
from tests.http_door import openai_messages as chat_messages
from warpcore.client import AsyncClient, FinishReason
from warpcore.server.doors import Doors
from warpcore.server.rpc.server import WarpcoreServer
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

SO_FAR = ["The history ", "of Rome"]


@pytest.mark.parametrize(
    ("upstream_reason", "window"), [("model_context_window_exceeded", True), ("max_tokens", False)]
)
async def test_an_anthropic_length_stop_says_whether_the_context_window_ended_it(
    doors: Doors, anthropic_upstream: FakeAnthropic, upstream_reason: str, window: bool
) -> None:
    anthropic_upstream.script = Script(chunks=SO_FAR, finish_reason=upstream_reason)
    await load_hosted(doors, anthropic_upstream)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{doors.grpc.port}") as channel:
        text, result = await collect(inference_pb2_grpc.InferenceServiceStub(channel).Generate(prompt()))
    assert (text, result.finish_reason, result.context_window_exceeded) == (
        "".join(SO_FAR),
        pb.FINISH_REASON_LENGTH,
        window,
    )
    async with AsyncClient(f"127.0.0.1:{doors.grpc.port}") as client:
        response = await client.generate("m", prompt="Tell it")
        streamed = await (await client.generate("m", prompt="Tell it", stream=True)).get_final_response()
    for answer in (response, streamed):
        assert (answer.finish_reason, answer.context_window_exceeded) == (FinishReason.LENGTH, window)
    said = "model_context_window_exceeded" if window else "max_tokens"
    async with async_anthropic_client(doors) as anthropic_sdk:
        whole = await anthropic_sdk.messages.create(model="m", messages=anthropic_messages(), max_tokens=20)
        async with anthropic_sdk.messages.stream(model="m", messages=anthropic_messages(), max_tokens=20) as stream:
            delta_reasons = [event.delta.stop_reason async for event in stream if event.type == "message_delta"]
            final = await stream.get_final_message()
    assert [whole.stop_reason, final.stop_reason, *delta_reasons] == [said, said, said]
    assert text_of(whole) == text_of(final) == "".join(SO_FAR)
    async with async_openai_client(doors) as openai_sdk:
        completion = await openai_sdk.chat.completions.create(model="m", messages=chat_messages(), max_tokens=20)
        chunks = await openai_sdk.chat.completions.create(
            model="m", messages=chat_messages(), max_tokens=20, stream=True
        )
        chunked = [choice.finish_reason async for chunk in chunks for choice in chunk.choices if choice.finish_reason]
        answered = await openai_sdk.responses.create(model="m", input="Tell it", max_output_tokens=20)
    # Chat Completions and Responses have one reason for both: the only one each API has.
    assert [completion.choices[0].finish_reason, *chunked] == ["length", "length"]
    assert answered.status == "incomplete"
    assert answered.incomplete_details is not None
    assert answered.incomplete_details.reason == "max_output_tokens"


async def test_a_local_model_tells_a_full_context_from_max_tokens(stub: Stub, server: WarpcoreServer) -> None:
    model = await load_tiny(stub, model_id="small", context_size=256)
    _, full = await collect(stub.Generate(greedy("the", 1000, model_id="small")))
    assert full.usage.prompt_tokens + full.usage.completion_tokens == model.context_size
    assert (full.finish_reason, full.context_window_exceeded) == (pb.FINISH_REASON_LENGTH, True)
    room = model.context_size - full.usage.prompt_tokens
    _, short = await collect(stub.Generate(greedy("the", 8, model_id="small")))
    assert (short.finish_reason, short.context_window_exceeded, short.usage.completion_tokens) == (
        pb.FINISH_REASON_LENGTH,
        False,
        8,
    )
    # max_tokens one short of the room left ends it; max_tokens exactly the room fills the context, where more
    # max_tokens would give no more.
    _, below = await collect(stub.Generate(greedy("the", room - 1, model_id="small")))
    _, exact = await collect(stub.Generate(greedy("the", room, model_id="small")))
    assert [below.context_window_exceeded, exact.context_window_exceeded] == [False, True]
    async with AsyncClient(f"127.0.0.1:{server.port}") as client:
        response = await client.generate("small", prompt="the", max_tokens=1000, temperature=0)
    assert (response.finish_reason, response.context_window_exceeded) == (FinishReason.LENGTH, True)
    target = f"127.0.0.1:{server.port}"
    filled = await warpcore(target, "generate", "--model", "small", "--max-tokens", "1000", "the")
    cut = await warpcore(target, "generate", "--model", "small", "--max-tokens", "8", "the")
    assert (filled.code, cut.code) == (0, 0)
    assert filled.stderr.endswith(", finish: length (context window full)]\n"), filled.stderr
    assert cut.stderr.endswith(", finish: length]\n"), cut.stderr
