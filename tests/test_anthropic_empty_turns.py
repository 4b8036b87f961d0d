"""Empty text toward the Anthropic API, which refuses an empty message (but a last assistant one), an empty text
block and a last assistant message ending in whitespace: an empty message or that whitespace is refused before
anything is sent, naming it; an empty text part, which adds nothing, is left out. The real server and the real
anthropic SDK against the loopback fake."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import collect, failed_stream, rich_details
from tests.fakes.anthropic_api import FakeAnthropic
from tests.hosted import load
from warpcore.v1 import content_pb2
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


def user(text: str) -> pb.ChatMessage:
    return pb.ChatMessage(role=pb.ROLE_USER, content=text)


def assistant(text: str) -> pb.ChatMessage:
    return pb.ChatMessage(role=pb.ROLE_ASSISTANT, content=text)


@pytest.mark.parametrize(
    ("messages", "field"),
    [
        ([user("")], "messages[0].content"),
        ([user("Hi"), assistant(""), user("Still there?")], "messages[1].content"),
        ([pb.ChatMessage(role=pb.ROLE_SYSTEM, content="Be kind."), user("")], "messages[1].content"),
    ],
)
async def test_an_empty_message_is_refused_naming_it_before_anything_is_sent(
    stub: Stub, anthropic_upstream: FakeAnthropic, messages: list[pb.ChatMessage], field: str
) -> None:
    await load(stub, anthropic_upstream)
    sent = len(anthropic_upstream.requests)
    _, error = await failed_stream(stub.Generate(pb.GenerateRequest(model_id="m", messages=messages)))
    assert (error.code(), rich_details(error)[1]) == (grpc.StatusCode.INVALID_ARGUMENT, [field])
    assert "which the Anthropic API refuses" in (error.details() or "")
    assert len(anthropic_upstream.requests) == sent, "refused before anything was sent"


async def test_an_empty_last_assistant_message_and_empty_text_parts_go_as_the_api_takes_them(
    stub: Stub, anthropic_upstream: FakeAnthropic
) -> None:
    await load(stub, anthropic_upstream)
    parts = [content_pb2.ContentPart(text=text) for text in ("Hi", "", " there")]
    request = pb.GenerateRequest(
        model_id="m",
        messages=[pb.ChatMessage(role=pb.ROLE_USER, parts=parts), user(""), assistant("")],
        continue_last_message=True,
    )
    await collect(stub.Generate(request))
    body = anthropic_upstream.requests[-1].body
    assert body is not None
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": " there"}]},
        {"role": "assistant", "content": ""},
    ]


@pytest.mark.parametrize(
    "last",
    [
        assistant("The answer is "),
        pb.ChatMessage(
            role=pb.ROLE_ASSISTANT,
            parts=[content_pb2.ContentPart(text="The answer"), content_pb2.ContentPart(text=" is\n")],
        ),
    ],
)
async def test_a_last_assistant_message_ending_in_whitespace_is_refused_before_anything_is_sent(
    stub: Stub, anthropic_upstream: FakeAnthropic, last: pb.ChatMessage
) -> None:
    """The API refuses to continue it (final assistant content cannot end with trailing whitespace)."""
    await load(stub, anthropic_upstream)
    sent = len(anthropic_upstream.requests)
    request = pb.GenerateRequest(model_id="m", messages=[user("Hi"), last], continue_last_message=True)
    _, error = await failed_stream(stub.Generate(request))
    assert (error.code(), rich_details(error)[1]) == (grpc.StatusCode.INVALID_ARGUMENT, ["messages"])
    assert "ends in whitespace" in (error.details() or "")
    assert len(anthropic_upstream.requests) == sent
    # Without the whitespace, it is continued.
    request.messages[-1].CopyFrom(assistant("The answer is"))
    await collect(stub.Generate(request))
    assert len(anthropic_upstream.requests) == sent + 1
