"""The prompt's usage in Anthropic's message_start, and the stop sequence that ended an answer, read with the official
anthropic SDK (its raw event stream for message_start) from a llama.cpp model (the tiny one) and from the hosted
fakes, and the same two facts on the gRPC stream."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import grpc
import pytest
from anthropic.types import RawMessageDeltaEvent, RawMessageStartEvent, RawMessageStreamEvent

from tests.conftest import greedy
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.base import FakeUpstream
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.http_door import anthropic_messages, async_anthropic_client, async_openai_client, load_hosted, text_of
from tests.test_http_door_sdks import tiny_door  # noqa: F401 - the fixture
from warpcore.server.doors import Doors
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

MESSAGES = anthropic_messages("hello")
GREEDY = {"temperature": 0}
ABSENT = "never generated"
"""A stop sequence that matches nothing, listed before the one that does."""


async def raw_events(client: anthropic.AsyncAnthropic, **options: Any) -> list[RawMessageStreamEvent]:
    options.setdefault("messages", MESSAGES)
    stream = await client.messages.create(stream=True, **options)
    return [event async for event in stream]


def start_and_end(events: list[RawMessageStreamEvent]) -> tuple[RawMessageStartEvent, RawMessageDeltaEvent]:
    start, delta = events[0], events[-2]
    assert isinstance(start, RawMessageStartEvent)
    assert isinstance(delta, RawMessageDeltaEvent)
    assert events[-1].type == "message_stop"
    return start, delta


async def test_message_start_counts_the_prompt_of_a_local_model(tiny_door: Doors) -> None:  # noqa: F811
    # Long enough for whole prefill pieces, so that the second time the prompt cache serves its beginning.
    messages = anthropic_messages("hello there " * 40)
    usages = []
    async with async_anthropic_client(tiny_door) as client:
        for _ in range(2):
            events = await raw_events(client, model="tiny", max_tokens=4, extra_body=GREEDY, messages=messages)
            start, end = start_and_end(events)
            first, last = start.message.usage, end.usage
            assert first.output_tokens == 0
            assert (first.input_tokens, first.cache_read_input_tokens, first.cache_creation_input_tokens) == (
                last.input_tokens,
                last.cache_read_input_tokens,
                last.cache_creation_input_tokens,
            )
            usages.append(first)
    cold, warm = usages
    assert cold.input_tokens > 0
    assert cold.cache_read_input_tokens == 0
    # As Anthropic counts: the tokens read from the cache are not among input_tokens; together they are the prompt.
    read = warm.cache_read_input_tokens or 0
    assert 0 < read < cold.input_tokens
    assert warm.input_tokens + read == cold.input_tokens


async def test_the_matching_stop_sequence_of_a_local_model(tiny_door: Doors) -> None:  # noqa: F811
    async with async_anthropic_client(tiny_door) as client:
        plain = await client.messages.create(model="tiny", messages=MESSAGES, max_tokens=12, extra_body=GREEDY)
        text = text_of(plain)
        stop = text.split()[2]
        options: dict[str, Any] = {
            "model": "tiny",
            "messages": MESSAGES,
            "max_tokens": 12,
            "extra_body": GREEDY,
            "stop_sequences": [ABSENT, stop],
        }
        whole = await client.messages.create(**options)
        async with client.messages.stream(**options) as stream:
            streamed = await stream.get_final_message()
    assert (plain.stop_reason, plain.stop_sequence) == ("max_tokens", None)
    for message in (whole, streamed):
        assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", stop)
        assert text_of(message) == text[: text.index(stop)]


async def test_grpc_carries_the_prompt_usage_on_the_first_frame_and_the_stop_sequence(
    tiny_door: Doors,  # noqa: F811
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{tiny_door.grpc.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        frames = [frame async for frame in stub.Generate(greedy("the world", 12))]
        text = "".join(frame.delta.text for frame in frames)
        stop = text.split()[2]
        stopped = [frame async for frame in stub.Generate(greedy("the world", 12, stop_sequences=[ABSENT, stop]))]
    for run in (frames, stopped):
        first, result = run[0], run[-1].result
        assert first.HasField("delta")
        assert first.HasField("prompt_usage")
        assert not any(frame.HasField("prompt_usage") for frame in run[1:])
        assert first.prompt_usage.prompt_tokens == result.usage.prompt_tokens > 0
        assert first.prompt_usage.cached_prompt_tokens == result.usage.cached_prompt_tokens
        assert first.prompt_usage.completion_tokens == 0
    assert (frames[-1].result.finish_reason, frames[-1].result.stop_sequence) == (pb.FINISH_REASON_LENGTH, "")
    assert (stopped[-1].result.finish_reason, stopped[-1].result.stop_sequence) == (
        pb.FINISH_REASON_STOP_SEQUENCE,
        stop,
    )


async def test_message_start_counts_the_prompt_an_anthropic_upstream_counted_first(
    doors: Doors, anthropic_upstream: FakeAnthropic
) -> None:
    anthropic_upstream.script = Script(chunks=["One", " two"], prompt_tokens=9)
    await load_hosted(doors, anthropic_upstream)
    async with async_anthropic_client(doors) as client:
        start, end = start_and_end(await raw_events(client, model="m", max_tokens=20))
    assert start.message.usage.input_tokens == end.usage.input_tokens == 9


async def test_message_start_goes_out_before_the_first_token(doors: Doors, anthropic_upstream: FakeAnthropic) -> None:
    # The upstream sends its message_start, then nothing until it is hung up on: the door's must not wait for text.
    anthropic_upstream.script = Script(chunks=["never sent"], prompt_tokens=9, stall_after=0)
    await load_hosted(doors, anthropic_upstream)
    async with async_anthropic_client(doors) as client:

        async def first_event() -> RawMessageStreamEvent:
            async with await client.messages.create(stream=True, messages=MESSAGES, model="m", max_tokens=20) as stream:
                return await anext(aiter(stream))

        first = await asyncio.wait_for(first_event(), 10)
    assert isinstance(first, RawMessageStartEvent)
    assert first.message.usage.input_tokens == 9
    await asyncio.wait_for(anthropic_upstream.disconnected.wait(), 5)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_without_an_early_count_message_start_says_0_and_message_delta_the_count(
    provider: str, doors: Doors, openai_upstream: FakeOpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    # An OpenAI upstream reports usage in its last chunk only; an Anthropic-compatible server (LiteLLM's
    # /v1/messages) may count 0 at the start and the prompt in its message_delta.
    upstream: FakeUpstream = openai_upstream
    if provider == "anthropic":
        upstream = anthropic_upstream
        upstream.script = Script(
            chunks=["One"], start_usage={"input_tokens": 0}, delta_usage={"input_tokens": 11, "output_tokens": 1}
        )
    await load_hosted(doors, upstream)
    async with async_anthropic_client(doors) as client:
        start, end = start_and_end(await raw_events(client, model="m", max_tokens=20))
        async with client.messages.stream(model="m", messages=MESSAGES, max_tokens=20) as stream:
            final = await stream.get_final_message()
    assert start.message.usage.input_tokens == 0
    assert end.usage.input_tokens == final.usage.input_tokens == 11


async def test_the_stop_sequence_an_anthropic_upstream_matched(doors: Doors, anthropic_upstream: FakeAnthropic) -> None:
    anthropic_upstream.script = Script(chunks=["One", " two"], finish_reason="stop_sequence", stop_sequence="END")
    await load_hosted(doors, anthropic_upstream)
    options: dict[str, Any] = {"model": "m", "messages": MESSAGES, "max_tokens": 20, "stop_sequences": [ABSENT, "END"]}
    async with async_anthropic_client(doors) as client:
        whole = await client.messages.create(**options)
        async with client.messages.stream(**options) as stream:
            streamed = await stream.get_final_message()
    for message in (whole, streamed):
        assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "END")
        assert text_of(message) == "One two"


async def test_the_chat_dialect_counts_the_prompt_tokens_an_upstream_wrote_to_its_cache(
    doors: Doors, anthropic_upstream: FakeAnthropic
) -> None:
    """Chat completions left out `cache_write_tokens`, which the Responses dialect and the Anthropic one give."""
    written = {"cache_creation_input_tokens": 7}
    anthropic_upstream.script = Script(chunks=["One"], prompt_tokens=9, usage_details=written)
    await load_hosted(doors, anthropic_upstream)
    question: Any = [{"role": "user", "content": "hi"}]
    async with async_openai_client(doors) as client:
        whole = await client.chat.completions.create(model="m", messages=question)
        chunks = await client.chat.completions.create(
            model="m", messages=question, stream=True, stream_options={"include_usage": True}
        )
        streamed = [chunk.usage async for chunk in chunks if chunk.usage is not None]
    for usage in (whole.usage, *streamed):
        assert usage is not None
        assert usage.prompt_tokens_details is not None
        assert usage.prompt_tokens_details.cache_write_tokens == 7
    assert len(streamed) == 1
