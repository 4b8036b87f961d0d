"""A model that declines: an OpenAI model's refusal text, and a stop by the backend's safety policy (OpenAI's
content_filter, Claude's refusal), reach every door as that door's API says them, never as an ordinary answer."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from tests.conftest import collect
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.base import FakeUpstream
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import prompt
from tests.http_door import anthropic_messages, async_anthropic_client, async_openai_client, load_hosted
from tests.http_door import openai_messages as chat_messages
from warpcore.client import AsyncClient, FinishReason
from warpcore.server.doors import Doors
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

DECLINED = ["I'm sorry, ", "I can't help with that."]
REFUSING = Script(events=[{"content": None, "refusal": piece} for piece in DECLINED])
"""An OpenAI model's refusal, as the API streams it: `refusal` deltas, no content."""


async def test_an_openai_refusal_is_refusal_text_over_grpc_and_in_the_sdk(
    doors: Doors, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.script = REFUSING
    await load_hosted(doors, openai_upstream)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{doors.grpc.port}") as channel:
        frames = [frame async for frame in inference_pb2_grpc.InferenceServiceStub(channel).Generate(prompt())]
    deltas = [frame.delta for frame in frames if frame.HasField("delta")]
    assert "".join(delta.text for delta in deltas) == "".join(DECLINED)
    assert all(delta.refusal for delta in deltas)
    assert frames[-1].result.finish_reason == pb.FINISH_REASON_STOP
    async with AsyncClient(f"127.0.0.1:{doors.grpc.port}") as client:
        response = await client.generate("m", prompt="Help me", response_format={"type": "object"})
        stream = await client.generate("m", prompt="Help me", stream=True)
        texts = [text async for text in stream.text_stream]
    assert (response.text, response.refusal, response.parsed) == ("", "".join(DECLINED), None)
    assert response.message().content == "".join(DECLINED)  # what the model said, handed back as its turn
    assert texts == []  # the answer's text: a refusal is not part of it


async def test_an_openai_refusal_through_each_dialect(doors: Doors, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.script = REFUSING
    await load_hosted(doors, openai_upstream)
    declined = "".join(DECLINED)
    async with async_openai_client(doors) as client:
        whole = await client.chat.completions.create(model="m", messages=chat_messages(), max_tokens=20)
        async with client.chat.completions.stream(model="m", messages=chat_messages(), max_tokens=20) as chunks:
            streamed = await chunks.get_final_completion()
        response = await client.responses.create(model="m", input="Help me", max_output_tokens=20)
        async with client.responses.stream(model="m", input="Help me", max_output_tokens=20) as events:
            kinds = [event.type async for event in events]
            final = await events.get_final_response()
    assert whole.choices[0].message.content is None
    for completion in (whole, streamed):
        message = completion.choices[0].message
        assert (message.content or "", message.refusal, completion.choices[0].finish_reason) == ("", declined, "stop")
    for answer in (response, final):
        assert answer.status == "completed"
        [item] = answer.output
        assert item.type == "message"
        assert [(part.type, getattr(part, "refusal", None)) for part in item.content] == [("refusal", declined)]
    assert "response.refusal.delta" in kinds
    assert "response.refusal.done" in kinds
    assert "response.output_text.delta" not in kinds
    async with async_anthropic_client(doors) as anthropic_sdk:
        message_whole = await anthropic_sdk.messages.create(model="m", messages=anthropic_messages(), max_tokens=20)
        async with anthropic_sdk.messages.stream(model="m", messages=anthropic_messages(), max_tokens=20) as stream:
            message_streamed = await stream.get_final_message()
    for said in (message_whole, message_streamed):
        # Anthropic has no refusal text of its own: the words, and the stop reason Claude's refusals have.
        assert [(block.type, getattr(block, "text", None)) for block in said.content] == [("text", declined)]
        assert said.stop_reason == "refusal"


@pytest.mark.parametrize(
    ("upstream_reason", "grpc_reason", "chat", "messages", "incomplete"),
    [
        ("content_filter", pb.FINISH_REASON_CONTENT_FILTER, "content_filter", "refusal", "content_filter"),
        ("refusal", pb.FINISH_REASON_CONTENT_FILTER, "content_filter", "refusal", "content_filter"),
        (
            "model_context_window_exceeded",
            pb.FINISH_REASON_LENGTH,
            "length",
            "model_context_window_exceeded",
            "max_output_tokens",
        ),
    ],
)
async def test_a_stop_by_the_backend_is_told_as_such_everywhere(
    doors: Doors,
    openai_upstream: FakeOpenAI,
    anthropic_upstream: FakeAnthropic,
    upstream_reason: str,
    grpc_reason: int,
    chat: str,
    messages: str,
    incomplete: str,
) -> None:
    upstream: FakeUpstream = openai_upstream if upstream_reason == "content_filter" else anthropic_upstream
    upstream.script = Script(chunks=["Once upon", " a time"], finish_reason=upstream_reason)
    await load_hosted(doors, upstream)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{doors.grpc.port}") as channel:
        _, result = await collect(inference_pb2_grpc.InferenceServiceStub(channel).Generate(prompt()))
    assert result.finish_reason == grpc_reason
    async with AsyncClient(f"127.0.0.1:{doors.grpc.port}") as client:
        response = await client.generate("m", prompt="Tell a story")
    assert response.text == "Once upon a time"  # the text before the stop stands
    expected = FinishReason.CONTENT_FILTER if grpc_reason == pb.FINISH_REASON_CONTENT_FILTER else FinishReason.LENGTH
    assert response.finish_reason is expected
    answers: list[Any] = []
    async with async_openai_client(doors) as client:
        completion = await client.chat.completions.create(model="m", messages=chat_messages(), max_tokens=20)
        # (The SDK's stream helper raises on these reasons, as its parser does: the raw chunks say them.)
        chunks = await client.chat.completions.create(model="m", messages=chat_messages(), max_tokens=20, stream=True)
        streamed = [choice.finish_reason async for chunk in chunks for choice in chunk.choices if choice.finish_reason]
        answers += [await client.responses.create(model="m", input="Tell a story", max_output_tokens=20)]
    assert [completion.choices[0].finish_reason, *streamed] == [chat, chat]
    [answer] = answers
    assert answer.status == "incomplete"
    assert answer.incomplete_details is not None
    assert answer.incomplete_details.reason == incomplete
    async with async_anthropic_client(doors) as anthropic_sdk:
        message = await anthropic_sdk.messages.create(model="m", messages=anthropic_messages(), max_tokens=20)
    assert message.stop_reason == messages


async def test_a_refusal_handed_back_is_the_assistant_turn_s_text(
    doors: Doors, anthropic_upstream: FakeAnthropic
) -> None:
    # The openai SDK hands a refused turn back as it got it: content null, the words in `refusal`.
    await load_hosted(doors, anthropic_upstream)
    turns: Any = [
        {"role": "user", "content": "Help me"},
        {"role": "assistant", "content": None, "refusal": "I can't help with that."},
        {"role": "user", "content": "Then say hello"},
    ]
    async with async_openai_client(doors) as client:
        await client.chat.completions.create(model="m", messages=turns, max_tokens=20)
    sent = anthropic_upstream.requests[-1].body
    assert sent is not None
    assert sent["messages"][1] == {"role": "assistant", "content": "I can't help with that."}
