"""A conversation ending with an assistant's text: unset, `continue_last_message` means what a client of the first
release (which has no such field) meant, each backend's API's own reading: an Anthropic model continues the text
(prefill), as the first release sent it; OpenAI and local models answer after it. Set, it is what it says, refused
where the backend's API cannot do it. The HTTP door's dialects keep their APIs' readings.

An outside tester's finding: built from the released contract, `Generate(messages=[user "Hi", assistant "Sure,"])` to
an Anthropic model, which the first release continued, was refused, naming a field an old client does not have."""

from __future__ import annotations

import grpc
import openai
import pytest

from tests.conftest import collect, failed_stream, rich_details
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import posts
from tests.http_door import async_openai_client, load_hosted
from warpcore.client import AsyncClient, FinishReason, InvalidArgumentError
from warpcore.server.doors import Doors
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

HI = pb.ChatMessage(role=pb.ROLE_USER, content="Hi")
SURE = pb.ChatMessage(role=pb.ROLE_ASSISTANT, content="Sure,")
SENT = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Sure,"}]
"""The conversation as it goes upstream, to either API: the assistant's text last."""


def old_shape() -> pb.GenerateRequest:
    """A request a client built from the first release sends: it has no continue_last_message to set."""
    return pb.GenerateRequest(model_id="m", messages=[HI, SURE])


async def test_unset_continues_on_an_anthropic_model_as_the_first_release_did(
    doors: Doors, anthropic_upstream: FakeAnthropic
) -> None:
    await load_hosted(doors, anthropic_upstream)
    anthropic_upstream.script = Script(chunks=[" of course."])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{doors.grpc.port}") as channel:
        text, result = await collect(inference_pb2_grpc.InferenceServiceStub(channel).Generate(old_shape()))
    assert (text, result.finish_reason) == (" of course.", pb.FINISH_REASON_STOP)
    assert posts(anthropic_upstream)[-1]["messages"] == SENT
    # The SDK, not told, sends what an old client sends; told, what it is told.
    async with AsyncClient(f"127.0.0.1:{doors.grpc.port}") as client:
        chat = [("user", "Hi"), ("assistant", "Sure,")]
        answers = [
            await client.generate("m", messages=chat),
            await client.generate("m", messages=chat, continue_last_message=None),
            await client.generate("m", messages=chat, continue_last_message=True),
        ]
        sent = len(anthropic_upstream.requests)
        with pytest.raises(InvalidArgumentError) as refused:
            await client.generate("m", messages=chat, continue_last_message=False)
    assert {(answer.text, answer.finish_reason) for answer in answers} == {(" of course.", FinishReason.STOP)}
    assert [body["messages"] for body in posts(anthropic_upstream)[-3:]] == [SENT, SENT, SENT]
    assert "continue_last_message" in str(refused.value)
    assert len(anthropic_upstream.requests) == sent


async def test_false_is_refused_on_an_anthropic_model_whose_api_cannot_answer_after(
    doors: Doors, anthropic_upstream: FakeAnthropic
) -> None:
    await load_hosted(doors, anthropic_upstream)
    request = old_shape()
    request.continue_last_message = False
    async with grpc.aio.insecure_channel(f"127.0.0.1:{doors.grpc.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        _, error = await failed_stream(stub.Generate(request))
        with pytest.raises(grpc.aio.AioRpcError) as counted:
            await stub.CountTokens(pb.CountTokensRequest(request=request))
    # The field named is the one whose value cannot be honoured, and the message says what it may be instead.
    for refused, field in ((error, "continue_last_message"), (counted.value, "request.continue_last_message")):
        assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert rich_details(refused)[1] == [field]
        assert "leave continue_last_message unset or true" in (refused.details() or "")
    assert posts(anthropic_upstream) == []


async def test_unset_and_false_answer_after_on_an_openai_model(doors: Doors, openai_upstream: FakeOpenAI) -> None:
    """As the first release did; continuing is refused, OpenAI's API has no prefill."""
    await load_hosted(doors, openai_upstream)
    asked_after = old_shape()
    asked_after.continue_last_message = False
    continued = old_shape()
    continued.continue_last_message = True
    async with grpc.aio.insecure_channel(f"127.0.0.1:{doors.grpc.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        for request in (old_shape(), asked_after):
            _, result = await collect(stub.Generate(request))
            assert result.finish_reason == pb.FINISH_REASON_STOP
        _, error = await failed_stream(stub.Generate(continued))
    assert [body["messages"] for body in posts(openai_upstream)] == [SENT, SENT]
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rich_details(error)[1] == ["continue_last_message"]
    assert "cannot continue it (prefill)" in (error.details() or "")
    assert "leave continue_last_message unset or false" in (error.details() or "")


async def test_the_openai_routes_ask_an_anthropic_model_to_answer_after_and_are_refused(
    doors: Doors, anthropic_upstream: FakeAnthropic
) -> None:
    """The OpenAI dialects read a last assistant message as a finished turn, which an Anthropic model cannot answer
    after: a 400 naming messages (or input), nothing sent, as before."""
    await load_hosted(doors, anthropic_upstream)
    async with async_openai_client(doors) as client:
        with pytest.raises(openai.BadRequestError) as chat:
            await client.chat.completions.create(model="m", messages=[*SENT], max_tokens=5)  # type: ignore[list-item]
        with pytest.raises(openai.BadRequestError) as responses:
            await client.responses.create(model="m", input=[*SENT], max_output_tokens=16)  # type: ignore[list-item]
    assert posts(anthropic_upstream) == []
    for refused in (chat.value, responses.value):
        assert "continues a last assistant message (prefill)" in refused.message
        # Advice these routes' clients can act on: they have no continue_last_message.
        assert "continue_last_message" not in refused.message
        assert "end with a user message" in refused.message
        assert "/v1/messages" in refused.message
    assert (chat.value.param, responses.value.param) == ("messages", "input")
