"""A backend's tool calls tell one story through every door: gRPC (the stream and the SDK's whole answer and stream)
and the HTTP door's Chat Completions, Responses and Messages, whole and streamed. An outside tester's finding: an
Anthropic-compatible upstream (LiteLLM's /v1/messages) cut by max_tokens began a tool_use block for each piece of one
call's arguments, all with one id; gRPC's result listed 1 call, Chat Completions 14, Messages 14 blocks with one id.
Two calls of one answer sharing an id are the upstream's failure, as other broken calls are; an answer cut short lists
its complete calls, and at the door the call the cut left unfinished too, as the vendors' APIs hand it back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import anthropic
import grpc
import openai
import pytest

from tests.conftest import failed_stream, rich_details
from tests.fakes.base import FakeUpstream
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import use
from tests.http_door import async_anthropic_client, async_openai_client, load_hosted
from tests.tool_wire import WEATHER, WEATHER_SCHEMA, Args, Call, Step, chat, stream, user
from warpcore.client import AsyncClient, UnavailableError
from warpcore.server.doors import Doors
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

MAX_TOKENS = 60
QUESTION = "Weather in Paris?"
OPENAI_TOOL: Any = {"type": "function", "function": {"name": WEATHER.name, "parameters": WEATHER_SCHEMA}}
ANTHROPIC_TOOL: Any = {"name": WEATHER.name, "input_schema": WEATHER_SCHEMA}
PIECES = ["{", " ", '"', "city", '"', ":", ' "', "Paris"]
"""The finding's answer: one call's arguments, a piece per call."""


@dataclass(frozen=True)
class Seen:
    """A call as a door's client got it: complete, or cut short with the arguments it got."""

    id: str
    name: str
    arguments: str
    complete: bool


def cut(upstream: FakeUpstream, steps: list[Step]) -> None:
    """`steps`, ended by the token limit, all of it spent."""
    use(upstream, steps, completion_tokens=MAX_TOKENS)
    upstream.script.finish_reason = "length" if isinstance(upstream, FakeOpenAI) else "max_tokens"


def two_calls(second_id: str, second_arguments: str) -> list[Step]:
    """A whole call "call_1" to Paris, then a call `second_id` with `second_arguments`."""
    first: list[Step] = [Call(0, "call_1", WEATHER.name), Args(0, '{"city": "Paris"}')]
    return [*first, Call(1, second_id, WEATHER.name), Args(1, second_arguments)]


async def failures(doors: Doors) -> dict[str, str]:
    """The message of each door's failure, by door; a door that answered fails the test."""
    messages = {}
    async with grpc.aio.insecure_channel(f"127.0.0.1:{doors.grpc.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        frames, error = await failed_stream(stub.Generate(chat(user(QUESTION), options=_options())))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert rich_details(error)[0].reason == "UPSTREAM_MALFORMED_TOOL_CALL"
    ids = [frame.tool_call.id for frame in frames if frame.HasField("tool_call") and frame.tool_call.id]
    assert len(ids) == len(set(ids)), "a call's delta repeated an earlier call's id"
    assert not frames or frames[-1].result.finish_reason == pb.FINISH_REASON_ERROR  # none: failed before any delta
    messages["grpc stream"] = error.details() or ""
    async with AsyncClient(f"127.0.0.1:{doors.grpc.port}", timeout=30) as client:
        for streamed in (False, True):
            with pytest.raises(UnavailableError) as raised:
                await _sdk_answer(client, streamed)
            assert raised.value.reason == "UPSTREAM_MALFORMED_TOOL_CALL"
            messages[f"sdk {'stream' if streamed else 'whole'}"] = raised.value.message
    async with async_openai_client(doors) as client:
        with pytest.raises(openai.APIStatusError) as chat_whole:
            await client.chat.completions.create(**_chat())
        assert (chat_whole.value.status_code, chat_whole.value.code) == (503, "upstream_malformed_tool_call")
        messages["chat whole"] = chat_whole.value.message
        with pytest.raises(openai.APIError) as chat_streamed:
            async for _ in await client.chat.completions.create(**_chat(), stream=True):
                pass
        messages["chat stream"] = chat_streamed.value.message
        with pytest.raises(openai.APIStatusError) as responses_whole:
            await client.responses.create(**_responses())
        assert responses_whole.value.status_code == 503
        messages["responses whole"] = responses_whole.value.message
        status, messages["responses stream"] = await _responses_stream_failure(client)
        assert status in (200, 503)
    async with async_anthropic_client(doors) as client:
        with pytest.raises(anthropic.APIStatusError) as messages_whole:
            await client.messages.create(**_messages())
        assert messages_whole.value.status_code == 503
        messages["messages whole"] = messages_whole.value.message
        with pytest.raises(anthropic.APIStatusError) as messages_streamed:
            async with client.messages.stream(**_messages()) as events:
                await events.get_final_message()
        messages["messages stream"] = messages_streamed.value.message
    return messages


async def _responses_stream_failure(client: openai.AsyncOpenAI) -> tuple[int, str]:
    """The status and message of a Responses stream's failure: 200 and its error event's, or the door's when it
    failed before the stream began."""
    try:
        events = [event async for event in await client.responses.create(**_responses(), stream=True)]
    except openai.APIStatusError as failure:
        return failure.status_code, failure.message
    error_event, failed = events[-2:]
    assert (error_event.type, failed.type) == ("error", "response.failed")
    return 200, str(error_event.message)


async def answers(doors: Doors) -> dict[str, tuple[str, list[Seen]]]:
    """Each door's finish reason and calls, by door."""
    seen: dict[str, tuple[str, list[Seen]]] = {}
    async with grpc.aio.insecure_channel(f"127.0.0.1:{doors.grpc.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        streamed = await stream(stub.Generate(chat(user(QUESTION), options=_options())))
    assert streamed.result is not None
    finish = pb.FinishReason.Name(streamed.result.finish_reason)
    seen["grpc"] = (finish, [Seen(c.id, c.name, c.arguments, True) for c in streamed.result.tool_calls])
    async with AsyncClient(f"127.0.0.1:{doors.grpc.port}", timeout=30) as client:
        for streaming in (False, True):
            response = await _sdk_answer(client, streaming)
            calls = [Seen(c.id, c.name, c.arguments, True) for c in response.tool_calls]
            seen[f"sdk {'stream' if streaming else 'whole'}"] = (f"FINISH_REASON_{response.finish_reason.name}", calls)
    async with async_openai_client(doors) as client:
        completion = (await client.chat.completions.create(**_chat())).choices[0]
        seen["chat whole"] = (completion.finish_reason, _chat_calls(completion.message.tool_calls or []))
        seen["chat stream"] = await _chat_stream(client)
        response = await client.responses.create(**_responses())
        seen["responses whole"] = (response.status or "", _responses_calls(response.output))
        events = [event async for event in await client.responses.create(**_responses(), stream=True)]
        assert events[-1].type == "response.incomplete"  # the helper's get_final_response() raises for it
        response = events[-1].response
        seen["responses stream"] = (response.status or "", _responses_calls(response.output))
    async with async_anthropic_client(doors) as client:
        message = await client.messages.create(**_messages())
        seen["messages whole"] = (str(message.stop_reason), _messages_calls(message.content))
        async with client.messages.stream(**_messages()) as message_events:
            message = await message_events.get_final_message()
        seen["messages stream"] = (str(message.stop_reason), _messages_calls(message.content))
    return seen


def _options() -> pb.GenerationOptions:
    return pb.GenerationOptions(max_tokens=MAX_TOKENS, temperature=0)


async def _sdk_answer(client: AsyncClient, streamed: bool) -> Any:
    options: dict[str, Any] = {"messages": [("user", QUESTION)], "tools": [OPENAI_TOOL], "max_tokens": MAX_TOKENS}
    if not streamed:
        return await client.generate("m", **options)
    events = await client.generate("m", stream=True, **options)
    async for _ in events:
        pass
    return await events.get_final_response()


def _chat() -> dict[str, Any]:
    messages = [{"role": "user", "content": QUESTION}]
    return {"model": "m", "messages": messages, "tools": [OPENAI_TOOL], "max_tokens": MAX_TOKENS}


def _responses() -> dict[str, Any]:
    tool = {"type": "function", "name": WEATHER.name, "parameters": WEATHER_SCHEMA, "strict": False}
    return {"model": "m", "input": QUESTION, "tools": [tool], "max_output_tokens": MAX_TOKENS}


def _messages() -> dict[str, Any]:
    messages = [{"role": "user", "content": QUESTION}]
    return {"model": "m", "messages": messages, "tools": [ANTHROPIC_TOOL], "max_tokens": MAX_TOKENS}


async def _chat_stream(client: openai.AsyncOpenAI) -> tuple[str, list[Seen]]:
    """The finish reason and the calls of a chat stream, its deltas joined per index (the SDK's accumulator raises
    for a `length` finish)."""
    calls: dict[int, list[str]] = {}
    finish = ""
    async for chunk in await client.chat.completions.create(**_chat(), stream=True):
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or ():
                function = delta.function
                call = calls.setdefault(delta.index, [delta.id or "", function.name or "" if function else "", ""])
                call[2] += function.arguments or "" if function else ""
    return finish, [Seen(call_id, name, arguments, _parses(arguments)) for call_id, name, arguments in calls.values()]


def _chat_calls(calls: list[Any]) -> list[Seen]:
    return [Seen(c.id, c.function.name, c.function.arguments, _parses(c.function.arguments)) for c in calls]


def _responses_calls(items: list[Any]) -> list[Seen]:
    calls = [item for item in items if item.type == "function_call"]
    return [Seen(c.call_id, c.name, c.arguments, c.status == "completed") for c in calls]


def _messages_calls(blocks: list[Any]) -> list[Seen]:
    calls = [block for block in blocks if block.type == "tool_use"]
    return [Seen(c.id, c.name, json.dumps(c.input), True) for c in calls]


def _parses(arguments: str) -> bool:
    try:
        return isinstance(json.loads(arguments), dict)
    except ValueError:
        return False


@pytest.fixture
async def hosted(doors: Doors, upstream: FakeUpstream) -> Doors:
    await load_hosted(doors, upstream)
    return doors


async def test_the_findings_answer_of_one_call_begun_again_for_each_piece_fails_in_every_door(
    hosted: Doors, upstream: FakeUpstream
) -> None:
    steps: list[Step] = []
    for index, piece in enumerate(PIECES):
        steps += [Call(index, "toolu_same", WEATHER.name), Args(index, piece)]
    cut(upstream, steps)
    messages = await failures(hosted)
    for door, message in messages.items():
        assert "tool call 1" in message, door
        assert "'toolu_same'" in message, door
        assert "tool call 0" in message, door


async def test_two_complete_calls_sharing_an_id_fail_in_every_door(hosted: Doors, upstream: FakeUpstream) -> None:
    """An OpenAI stream can name one id at two indexes too."""
    use(upstream, two_calls("call_1", '{"city": "Rome"}'))
    messages = await failures(hosted)
    assert all("call 1 broken: it has the id 'call_1' of tool call 0" in text for text in messages.values()), messages


async def test_a_call_of_an_undeclared_tool_in_an_answer_cut_short_fails_in_every_door(
    hosted: Doors, upstream: FakeUpstream
) -> None:
    """gRPC's result left such a call out, while the door's answers listed it, cut short, to a client that never
    offered the tool."""
    cut(upstream, [Call(0, "call_1", "rm_rf"), Args(0, '{"path": "/')])
    messages = await failures(hosted)
    assert all("'rm_rf', which the request did not declare" in message for message in messages.values()), messages


async def test_an_answer_cut_short_lists_its_complete_calls_in_every_door_and_the_cut_one_at_the_door(
    hosted: Doors, upstream: FakeUpstream
) -> None:
    cut(upstream, two_calls("call_2", '{"city": "Rome", "da'))
    seen = await answers(hosted)
    whole = Seen("call_1", WEATHER.name, '{"city": "Paris"}', True)
    unfinished = Seen("call_2", WEATHER.name, '{"city": "Rome", "da', False)
    for door in ("grpc", "sdk whole", "sdk stream"):
        assert seen.pop(door) == ("FINISH_REASON_LENGTH", [whole]), door
    for door in ("chat whole", "chat stream"):
        assert seen.pop(door) == ("length", [whole, unfinished]), door
    for door in ("responses whole", "responses stream"):
        assert seen.pop(door) == ("incomplete", [whole, unfinished]), door
    partial = Seen("call_2", WEATHER.name, '{"city": "Rome"}', True)  # an input holds what parsed of it
    assert seen == {door: ("max_tokens", [whole, partial]) for door in ("messages whole", "messages stream")}


async def test_a_call_that_begins_with_a_repeated_id_and_half_a_character_fails_in_every_door(
    doors: Doors, openai_upstream: FakeOpenAI
) -> None:
    """The first half of a surrogate pair, kept back for the piece that would complete it, was still passed on once
    the call it belonged to had failed: a delta of a call no door had shown begin."""
    await load_hosted(doors, openai_upstream)
    first = {"index": 0, "id": "call_1", "type": "function", "function": {"name": WEATHER.name, "arguments": "{}"}}
    second = {**first, "index": 1, "function": {"name": WEATHER.name, "arguments": '{"city": "\ud83d'}}
    events = [{"tool_calls": [first]}, {"tool_calls": [second]}]
    openai_upstream.script = Script(events=events, finish_reason="tool_calls")
    messages = await failures(doors)
    assert all("'call_1' of tool call 0" in message for message in messages.values()), messages
