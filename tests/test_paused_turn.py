"""A long turn an Anthropic model paused (`pause_turn`) is told as paused where the door's API can say it, whole and
streamed, and goes on when the answer is sent back as the last assistant message; the OpenAI routes, which have no
such reason, say it as a finished turn."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from tests.conftest import collect
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.script import Script
from tests.hosted import prompt
from tests.http_door import anthropic_messages, async_anthropic_client, async_openai_client, load_hosted, text_of
from tests.http_door import openai_messages as chat_messages
from warpcore.client import AsyncClient, FinishReason
from warpcore.server.doors import Doors
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

SO_FAR = ["Searching ", "the archive"]
PAUSING = Script(chunks=SO_FAR, finish_reason="pause_turn")


@pytest.fixture
async def pausing(doors: Doors, anthropic_upstream: FakeAnthropic) -> Doors:
    """The doors, with an Anthropic model loaded as "m" whose turns pause."""
    anthropic_upstream.script = PAUSING
    await load_hosted(doors, anthropic_upstream)
    return doors


async def test_a_paused_turn_is_paused_over_grpc_and_in_the_sdk(
    pausing: Doors, anthropic_upstream: FakeAnthropic
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{pausing.grpc.port}") as channel:
        text, result = await collect(inference_pb2_grpc.InferenceServiceStub(channel).Generate(prompt()))
    assert (text, result.finish_reason) == ("".join(SO_FAR), pb.FINISH_REASON_PAUSED)
    async with AsyncClient(f"127.0.0.1:{pausing.grpc.port}") as client:
        response = await client.generate("m", prompt="Find it")
        streamed = await (await client.generate("m", prompt="Find it", stream=True)).get_final_response()
        assert (response.text, response.finish_reason) == ("".join(SO_FAR), FinishReason.PAUSED)
        assert (streamed.text, streamed.finish_reason) == ("".join(SO_FAR), FinishReason.PAUSED)
        anthropic_upstream.script = Script(chunks=[" found it."])
        question = {"role": "user", "content": "Find it"}
        going_on = await client.generate("m", messages=[question, response.message()], continue_last_message=True)
    assert going_on.finish_reason is FinishReason.STOP
    sent = anthropic_upstream.requests[-1].body
    assert sent is not None
    assert sent["messages"] == [question, {"role": "assistant", "content": "".join(SO_FAR)}]


async def test_a_paused_turn_through_each_dialect(pausing: Doors, anthropic_upstream: FakeAnthropic) -> None:
    async with async_anthropic_client(pausing) as client:
        whole = await client.messages.create(model="m", messages=anthropic_messages(), max_tokens=20)
        async with client.messages.stream(model="m", messages=anthropic_messages(), max_tokens=20) as stream:
            streamed = await stream.get_final_message()
        assert [whole.stop_reason, streamed.stop_reason] == ["pause_turn", "pause_turn"]
        assert text_of(whole) == text_of(streamed) == "".join(SO_FAR)
        # Sent back as it came, the paused answer is continued (prefill) by the upstream.
        anthropic_upstream.script = Script(chunks=[" found it."])
        turns: Any = [*anthropic_messages(), {"role": "assistant", "content": whole.content}]
        going_on = await client.messages.create(model="m", messages=turns, max_tokens=20)
    assert going_on.stop_reason == "end_turn"
    sent = anthropic_upstream.requests[-1].body
    assert sent is not None
    assert sent["messages"][-1] == {"role": "assistant", "content": "".join(SO_FAR)}
    anthropic_upstream.script = PAUSING
    async with async_openai_client(pausing) as openai_sdk:
        completion = await openai_sdk.chat.completions.create(model="m", messages=chat_messages(), max_tokens=20)
        async with openai_sdk.chat.completions.stream(model="m", messages=chat_messages(), max_tokens=20) as chunks:
            final = await chunks.get_final_completion()
        response = await openai_sdk.responses.create(model="m", input="Find it", max_output_tokens=20)
    # The chat API has no paused turn: the answer so far, as a finished one.
    assert [completion.choices[0].finish_reason, final.choices[0].finish_reason] == ["stop", "stop"]
    assert completion.choices[0].message.content == "".join(SO_FAR)
    assert (response.status, response.output_text) == ("completed", "".join(SO_FAR))
