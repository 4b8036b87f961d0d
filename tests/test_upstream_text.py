"""Text as an API streams it, whole at the caller: a character whose UTF-16 halves come in two events (JSON escapes
each half apart), a half that never gets its partner, the logprobs of a token that is only part of a character, and
a finished call's broken arguments named for what breaks them."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from tests.conftest import collect, failed_stream, rich_details
from tests.fakes.base import FakeUpstream
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import load, prompt, use
from tests.http_door import async_openai_client, load_hosted
from tests.tool_wire import Args, Call, Text, chat, stream, user
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.server.doors import Doors
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

GRINNING = "\U0001f600"
HIGH, LOW = "\ud83d", "\ude00"  # its UTF-16 halves: json.dumps writes each as an escape of its own


@pytest.mark.parametrize(
    ("chunks", "text"),
    [
        ([f"A{HIGH}", f"{LOW}B"], f"A{GRINNING}B"),
        ([f"A{HIGH}", LOW, "B"], f"A{GRINNING}B"),  # the second half alone in its event
        ([HIGH, f"{LOW}B"], f"{GRINNING}B"),  # the first half alone in the first event
        ([f"A{HIGH}{LOW}B"], f"A{GRINNING}B"),  # both in one event, as two escapes
        (["A\ud800", "B"], "A\ufffdB"),  # a first half whose partner never comes
        (["A", f"{LOW}B"], "A\ufffdB"),  # a second half without the first
        (["A", HIGH], "A\ufffd"),  # a first half that ends the stream
    ],
)
async def test_characters_cut_between_events_arrive_whole(
    stub: Stub, upstream: FakeUpstream, chunks: list[str], text: str
) -> None:
    # Each half alone cannot be UTF-8: the stream failed INTERNAL, on gRPC and on both HTTP dialects.
    await load(stub, upstream)
    upstream.script = Script(chunks=chunks)
    streamed, result = await collect(stub.Generate(prompt(max_tokens=16)))
    assert (streamed, result.finish_reason) == (text, pb.FINISH_REASON_STOP)


async def test_tool_call_arguments_cut_inside_a_character_arrive_whole(stub: Stub, upstream: FakeUpstream) -> None:
    await load(stub, upstream)
    use(upstream, [Call(0, "call_1", "get_weather"), Args(0, f'{{"face": "{HIGH}'), Args(0, f'{LOW}"}}')])
    streamed = await stream(stub.Generate(chat(user("Smile"))))
    assert streamed.result is not None
    assert streamed.result.finish_reason == pb.FINISH_REASON_TOOL_CALLS
    assert (
        json.loads(streamed.arguments(0)) == json.loads(streamed.result.tool_calls[0].arguments) == {"face": GRINNING}
    )


async def test_the_http_door_streams_a_character_cut_between_events_whole(doors: Doors, upstream: FakeUpstream) -> None:
    await load_hosted(doors, upstream)
    upstream.script = Script(chunks=[f"A{HIGH}", f"{LOW}B"])
    async with async_openai_client(doors) as client:
        chunks = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "Hi"}], max_tokens=16, stream=True
        )
        text = "".join([choice.delta.content or "" async for chunk in chunks for choice in chunk.choices])
    assert text == f"A{GRINNING}B"


async def test_a_half_left_at_the_end_of_the_text_comes_before_a_call_that_follows(
    stub: Stub, upstream: FakeUpstream
) -> None:
    # It came at the stream's end, after the call: a text block of its own after the tool_use on Anthropic's dialect.
    await load(stub, upstream)
    use(upstream, [Text(f"z{HIGH}"), Call(0, "call_1", "get_weather"), Args(0, "{}")])
    kinds, text = [], ""
    async for frame in stub.Generate(chat(user("Smile"))):
        kinds.append(frame.WhichOneof("frame"))
        text += frame.delta.text
    assert text == "z\ufffd"
    assert kinds.index("tool_call") > max(index for index, kind in enumerate(kinds) if kind == "delta")


def _scored(piece: bytes, logprob: float) -> dict[str, object]:
    token = {"token": f"bytes:{piece!r}", "logprob": logprob, "bytes": list(piece), "top_logprobs": []}
    return {"content": [token]}


ENCODED = GRINNING.encode()
SPLIT_TOKENS = Script(
    events=[
        {"content": "", "logprobs": _scored(ENCODED[:2], -0.5)},  # OpenAI sends part of a character so
        {"content": GRINNING, "logprobs": _scored(ENCODED[2:], -0.25)},
    ]
)
SPLIT_SCORES = [(ENCODED[:2], -0.5), (ENCODED[2:], -0.25)]


async def test_the_logprob_of_a_token_that_is_part_of_a_character_is_kept(
    stub: Stub, openai_upstream: FakeOpenAI
) -> None:
    # OpenAI streams such a token in a chunk whose content is empty: its logprob was dropped with the empty text.
    await load(stub, openai_upstream)
    openai_upstream.script = SPLIT_TOKENS
    deltas = [frame.delta async for frame in stub.Generate(prompt(max_tokens=16, logprobs=True)) if frame.delta.text]
    assert [delta.text for delta in deltas] == [GRINNING]  # with both tokens: a delta's tokens spell its text
    assert [(token.bytes, token.logprob) for token in deltas[0].logprobs] == SPLIT_SCORES


async def test_a_finished_call_with_arguments_beyond_a_double_says_so(stub: Stub, upstream: FakeUpstream) -> None:
    # Said "without an id, a name or arguments that are a JSON object", which sent a reader looking at the wrong part.
    await load(stub, upstream)
    use(upstream, [Call(0, "call_1", "get_weather"), Args(0, '{"size": 1e400}')])
    _, error = await failed_stream(stub.Generate(chat(user("How big?"))))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert rich_details(error)[0].reason == "UPSTREAM_MALFORMED_TOOL_CALL"
    assert "1e400" in (error.details() or "")


async def test_a_call_whose_arguments_hold_a_lone_surrogate_is_the_upstreams_not_the_callers(
    stub: Stub, upstream: FakeUpstream
) -> None:
    # The message said "; send valid Unicode text", advice to a caller on its own request, which held no such text.
    await load(stub, upstream)
    use(upstream, [Call(0, "call_1", "get_weather"), Args(0, '{"a":"\\ud800"}')])  # JSON's escape of a lone half
    _, error = await failed_stream(stub.Generate(chat(user("Weather?"))))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert rich_details(error)[0].reason == "UPSTREAM_MALFORMED_TOOL_CALL"
    message = error.details() or ""
    assert message.startswith("the backend ended tool call 0 broken: ")
    assert "unpaired UTF-16 surrogate escape" in message
    assert "send" not in message


async def test_the_http_door_keeps_the_logprob_of_a_token_that_is_part_of_a_character(
    doors: Doors, openai_upstream: FakeOpenAI
) -> None:
    await load_hosted(doors, openai_upstream)
    openai_upstream.script = SPLIT_TOKENS
    messages: Any = [{"role": "user", "content": "Hi"}]
    async with async_openai_client(doors) as client:
        chunks = await client.chat.completions.create(
            model="m", messages=messages, max_tokens=16, logprobs=True, stream=True
        )
        streamed = [choice async for chunk in chunks for choice in chunk.choices]
        whole = await client.chat.completions.create(model="m", messages=messages, max_tokens=16, logprobs=True)
    for choices in (streamed, whole.choices):
        tokens = [token for choice in choices if choice.logprobs for token in choice.logprobs.content or ()]
        assert [(bytes(token.bytes or ()), token.logprob) for token in tokens] == SPLIT_SCORES


async def test_the_logprob_of_part_of_a_character_that_ends_the_stream_is_kept(
    stub: Stub, openai_upstream: FakeOpenAI
) -> None:
    # A stream cut inside a character (max_tokens) dropped the tokens of its last part.
    await load(stub, openai_upstream)
    openai_upstream.script = Script(
        events=[
            {"content": "A", "logprobs": _scored(b"A", -1.0)},
            {"content": "", "logprobs": _scored(ENCODED[:2], -2.0)},
        ]
    )
    scored = [
        (token.bytes, token.logprob)
        async for frame in stub.Generate(prompt(max_tokens=16, logprobs=True))
        for token in frame.delta.logprobs
    ]
    assert scored == [(b"A", -1.0), (ENCODED[:2], -2.0)]
