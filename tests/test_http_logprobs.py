"""Log-probabilities through the HTTP door's OpenAI dialects: `logprobs` and `top_logprobs` in, each choice's
`logprobs.content` (a Responses `output_text`'s `logprobs`) out, whole and streamed, as the openai SDK parses and
accumulates them; exactly the values the gRPC door gives for the same request; refusals name the field."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
import openai
import pytest
from openai.types.chat import ChatCompletionTokenLogprob
from openai.types.responses.response_output_text import Logprob

from tests.conftest import TINY_MODEL
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.http_door import async_openai_client, load_hosted, openai_messages
from tests.test_logprobs import Scored, scored_stream
from warpcore.server.core.domain import BackendKind, LoadSpec
from warpcore.server.doors import Doors
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

TOP = 3
TOKENS = 10


@pytest.fixture
async def tiny_door(doors: Doors) -> Doors:
    await doors.engine.load(LoadSpec("tiny", BackendKind.LLAMA_CPP, TINY_MODEL, None, None))
    return doors


async def grpc_scored(doors: Doors) -> tuple[str, Scored]:
    """The same greedy chat with logprobs through the gRPC door."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{doors.grpc.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        request = pb.GenerateRequest(
            model_id="tiny",
            messages=[pb.ChatMessage(role=pb.ROLE_USER, content="hello")],
            options=pb.GenerationOptions(max_tokens=TOKENS, temperature=0, logprobs=True, top_logprobs=TOP),
        )
        text, scored, _ = await scored_stream(stub.Generate(request))
    return text, scored


def scored_of(tokens: Sequence[ChatCompletionTokenLogprob | Logprob] | None) -> Scored:
    """Tokens' logprobs as (bytes, logprob, top alternatives), the values as sent, to compare with gRPC's with ==;
    checks that each token's text is its bytes."""
    assert tokens is not None
    scored: Scored = []
    for token in tokens:
        assert token.bytes is not None
        assert token.token == bytes(token.bytes).decode("utf-8", errors="replace")
        top = [(bytes(other.bytes or ()), other.logprob) for other in token.top_logprobs]
        scored.append((bytes(token.bytes), token.logprob, top))
    return scored


def choice_scored(logprobs: openai.types.chat.chat_completion.ChoiceLogprobs | None) -> Scored:
    assert logprobs is not None
    return scored_of(logprobs.content)


async def test_openai_clients_get_the_grpc_logprobs_whole_and_streamed(tiny_door: Doors) -> None:
    text, expected = await grpc_scored(tiny_door)
    assert len(expected) == TOKENS
    assert all(len(top) == TOP for _, _, top in expected)
    options = {"model": "tiny", "messages": openai_messages("hello"), "max_tokens": TOKENS, "temperature": 0}
    async with async_openai_client(tiny_door) as client:
        whole = await client.chat.completions.create(**options, logprobs=True, top_logprobs=TOP)  # type: ignore[call-overload]
        chunks = await client.chat.completions.create(**options, logprobs=True, top_logprobs=TOP, stream=True)  # type: ignore[call-overload]
        pieces = [chunk.choices[0] async for chunk in chunks if chunk.choices]
        async with client.chat.completions.stream(**options, logprobs=True, top_logprobs=TOP) as stream:  # type: ignore[arg-type]
            # The SDK's accumulator, read directly: its final parse refuses an answer cut by the length limit.
            async for _ in stream:
                pass
            accumulated = stream.current_completion_snapshot
    assert whole.choices[0].message.content == accumulated.choices[0].message.content == text
    assert choice_scored(whole.choices[0].logprobs) == expected
    assert choice_scored(accumulated.choices[0].logprobs) == expected
    # Each text chunk carries the tokens its text is made of.
    texts = [piece for piece in pieces if piece.delta.content]
    assert texts
    for piece in texts:
        assert piece.delta.content is not None
        assert b"".join(token for token, _, _ in choice_scored(piece.logprobs)) == piece.delta.content.encode()


async def test_responses_clients_get_the_grpc_logprobs_whole_and_streamed(tiny_door: Doors) -> None:
    text, expected = await grpc_scored(tiny_door)
    asked: dict[str, Any] = {
        **{"model": "tiny", "input": "hello", "max_output_tokens": TOKENS, "temperature": 0},
        **{"include": ["message.output_text.logprobs"], "top_logprobs": TOP},
    }
    async with async_openai_client(tiny_door) as client:
        whole = await client.responses.create(**asked)
        async with client.responses.stream(**asked) as stream:
            events = [event async for event in stream]
    [message] = whole.output
    assert message.type == "message"
    assert message.content[0].type == "output_text"
    assert message.content[0].text == text
    assert scored_of(message.content[0].logprobs) == expected
    # A delta's tokens are the output's, in the delta type's members only (a tester's finding: bytes, which it has
    # not, came with them).
    deltas = [token for event in events if event.type == "response.output_text.delta" for token in event.logprobs]
    assert [(token.token, token.logprob) for token in deltas] == [
        (token.token, token.logprob) for token in message.content[0].logprobs
    ]
    assert not any(token.model_extra or any(top.model_extra for top in token.top_logprobs or ()) for token in deltas)


async def test_no_logprobs_unless_asked(tiny_door: Doors) -> None:
    options = {"model": "tiny", "messages": openai_messages("hello"), "max_tokens": 4, "temperature": 0}
    async with async_openai_client(tiny_door) as client:
        whole = await client.chat.completions.create(**options)  # type: ignore[call-overload]
        chunks = await client.chat.completions.create(**options, stream=True)  # type: ignore[call-overload]
        pieces = [chunk.choices[0] async for chunk in chunks if chunk.choices]
        bare = await client.chat.completions.create(**options, logprobs=True)  # type: ignore[call-overload]
    assert whole.choices[0].logprobs is None
    assert all(piece.logprobs is None for piece in pieces)
    scored = choice_scored(bare.choices[0].logprobs)
    assert len(scored) == 4
    assert all(top == [] for _, _, top in scored)  # no alternatives unless top_logprobs asks for them


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": -1}, "top_logprobs"),
        ({"logprobs": "yes"}, "logprobs"),
        ({"logprobs": True, "top_logprobs": 2.5}, "top_logprobs"),
    ],
)
async def test_bad_logprob_options_are_a_400_naming_the_field(
    tiny_door: Doors, options: dict[str, object], param: str
) -> None:
    async with async_openai_client(tiny_door) as client:
        with pytest.raises(openai.BadRequestError) as raised:
            await client.chat.completions.create(
                model="tiny", messages=openai_messages(), max_tokens=4, extra_body=options
            )
    assert raised.value.param == param


async def test_an_openai_upstream_passes_its_logprobs_to_an_openai_client(
    doors: Doors, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.script = Script(chunks=["Hel", "lo", " wörld"])
    await load_hosted(doors, openai_upstream)
    async with async_openai_client(doors) as client:
        whole = await client.chat.completions.create(
            model="m", messages=openai_messages(), max_tokens=8, logprobs=True, top_logprobs=2
        )
    body = openai_upstream.requests[-1].body
    assert body is not None
    assert (body["logprobs"], body["top_logprobs"]) == (True, 2)
    scored = choice_scored(whole.choices[0].logprobs)
    assert [token for token, _, _ in scored] == [piece.encode() for piece in ("Hel", "lo", " wörld")]
    assert [[other for other, _ in top] for _, _, top in scored] == [[token, b"alt1"] for token, _, _ in scored]


async def test_an_anthropic_model_refuses_logprobs_naming_the_field(
    doors: Doors, anthropic_upstream: FakeAnthropic
) -> None:
    await load_hosted(doors, anthropic_upstream)
    async with async_openai_client(doors) as client:
        with pytest.raises(openai.BadRequestError) as raised:
            await client.chat.completions.create(model="m", messages=openai_messages(), max_tokens=4, logprobs=True)
    assert raised.value.param == "logprobs"
    assert not any(request.path == "/v1/messages" for request in anthropic_upstream.requests)
