"""Several text blocks (parts) in one turn reach the upstream as the blocks the client sent, in user, assistant and
tool turns, through either dialect to either provider; where one string is all a backend takes they are never run
together: a system message's are joined by a blank line, as all system text is, a local model's turn's by a newline."""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest

from tests.conftest import TINY_MODEL, collect
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.base import FakeUpstream
from tests.fakes.openai_api import FakeOpenAI
from tests.hosted import posts
from tests.http_door import async_anthropic_client, async_openai_client, load_hosted
from tests.local_tools import WEATHER
from warpcore.server.core.domain import BackendKind, LoadSpec
from warpcore.server.doors import Doors
from warpcore.v1 import content_pb2, inference_pb2_grpc, tools_pb2
from warpcore.v1 import inference_pb2 as pb

LINES: Any = [{"type": "text", "text": "Temp: 24C"}, {"type": "text", "text": "Humidity: 50%"}]
"""Two text blocks, as either dialect writes them: in both, each must reach the model apart."""
ANTHROPIC_TOOL: Any = {"name": WEATHER.name, "input_schema": WEATHER.parameters}
OPENAI_TOOL: Any = {"type": "function", "function": {"name": WEATHER.name, "parameters": WEATHER.parameters}}
ARGUMENTS = '{"city": "Paris"}'


async def _anthropic_ask(doors: Doors, messages: Any, **options: Any) -> None:
    async with async_anthropic_client(doors) as client:
        await client.messages.create(model="m", messages=messages, max_tokens=20, **options)


async def _openai_ask(doors: Doors, messages: Any, **options: Any) -> None:
    async with async_openai_client(doors) as client:
        await client.chat.completions.create(model="m", messages=messages, max_tokens=20, **options)


def _anthropic_loop(is_error: bool) -> Any:
    """A call of the weather tool answered by a result of two text blocks, in the Anthropic dialect."""
    call = {"type": "tool_use", "id": "toolu_1", "name": WEATHER.name, "input": {"city": "Paris"}}
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": LINES, "is_error": is_error}
    return [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [*LINES, call]},
        {"role": "user", "content": [result]},
    ]


@pytest.mark.parametrize("client", ["openai", "anthropic"])
async def test_a_user_turn_s_text_blocks_reach_the_upstream_as_blocks(
    doors: Doors, upstream: FakeUpstream, client: str
) -> None:
    await load_hosted(doors, upstream)
    question = [{"role": "user", "content": LINES}]
    await (_openai_ask if client == "openai" else _anthropic_ask)(doors, question)
    [sent] = posts(upstream)
    # Both APIs take the same shape of text block or part.
    assert sent["messages"] == [{"role": "user", "content": LINES}]


@pytest.mark.parametrize("is_error", [False, True])
async def test_an_anthropic_tool_loop_s_text_blocks_reach_the_upstream_as_sent(
    doors: Doors, upstream: FakeUpstream, is_error: bool
) -> None:
    await load_hosted(doors, upstream)
    await _anthropic_ask(doors, _anthropic_loop(is_error), tools=[ANTHROPIC_TOOL])
    assistant, result = posts(upstream)[-1]["messages"][1:]
    assert assistant["content"][:2] == LINES  # then the call
    if isinstance(upstream, FakeOpenAI):
        # The API has no error flag: the first text says it.
        failed = [{"type": "text", "text": "Error: Temp: 24C"}, {"type": "text", "text": "Humidity: 50%"}]
        assert result == {"role": "tool", "tool_call_id": "toolu_1", "content": failed if is_error else LINES}
    else:
        flag = {"is_error": True} if is_error else {}
        assert result["content"] == [{"type": "tool_result", "tool_use_id": "toolu_1", "content": LINES, **flag}]


async def test_an_openai_tool_message_s_text_parts_reach_an_anthropic_upstream_as_blocks(
    doors: Doors, anthropic_upstream: FakeAnthropic
) -> None:
    await load_hosted(doors, anthropic_upstream)
    call = {"id": "toolu_1", "type": "function", "function": {"name": WEATHER.name, "arguments": ARGUMENTS}}
    turns = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": LINES},
    ]
    await _openai_ask(doors, turns, tools=[OPENAI_TOOL])
    results = posts(anthropic_upstream)[-1]["messages"][2]
    assert results["content"] == [{"type": "tool_result", "tool_use_id": "toolu_1", "content": LINES}]


async def test_a_responses_function_output_s_text_parts_reach_an_anthropic_upstream_as_blocks(
    doors: Doors, anthropic_upstream: FakeAnthropic
) -> None:
    await load_hosted(doors, anthropic_upstream)
    parts = [{"type": "input_text", "text": line["text"]} for line in LINES]
    items: Any = [
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "function_call", "call_id": "toolu_1", "name": WEATHER.name, "arguments": ARGUMENTS},
        {"type": "function_call_output", "call_id": "toolu_1", "output": parts},
    ]
    tool: Any = {"type": "function", "name": WEATHER.name, "parameters": WEATHER.parameters}
    async with async_openai_client(doors) as client:
        await client.responses.create(model="m", input=items, tools=[tool], max_output_tokens=20)
    results = posts(anthropic_upstream)[-1]["messages"][2]
    assert results["content"] == [{"type": "tool_result", "tool_use_id": "toolu_1", "content": LINES}]


async def test_a_grpc_tool_result_s_text_parts_reach_either_upstream(doors: Doors, upstream: FakeUpstream) -> None:
    """Parts of a ROLE_TOOL message, which the hosted backends left out, go with its content."""
    await load_hosted(doors, upstream)
    parts = [content_pb2.ContentPart(text=LINES[1]["text"])]
    result = await _grpc_tool_result(doors, upstream, content=LINES[0]["text"], parts=parts)
    if isinstance(upstream, FakeOpenAI):
        assert result == {"role": "tool", "tool_call_id": "toolu_1", "content": LINES}
    else:
        assert result["content"] == [{"type": "tool_result", "tool_use_id": "toolu_1", "content": LINES}]


async def test_a_grpc_failed_tool_result_in_parts_only_says_so_in_its_first_part(
    doors: Doors, openai_upstream: FakeOpenAI
) -> None:
    """The OpenAI API has no error flag: the words say it, where an empty content sent a lone "Error: " part."""
    await load_hosted(doors, openai_upstream)
    parts = [content_pb2.ContentPart(text=line["text"]) for line in LINES]
    result = await _grpc_tool_result(doors, openai_upstream, is_error=True, parts=parts)
    failed = [{"type": "text", "text": "Error: Temp: 24C"}, {"type": "text", "text": "Humidity: 50%"}]
    assert result == {"role": "tool", "tool_call_id": "toolu_1", "content": failed}


async def _grpc_tool_result(doors: Doors, upstream: FakeUpstream, **result: Any) -> Any:
    """A call of the weather tool answered over gRPC by a ROLE_TOOL message of `result`'s fields: the tool turn as
    the upstream received it."""
    call = tools_pb2.ToolCall(id="toolu_1", name=WEATHER.name, arguments=ARGUMENTS)
    turns = [
        pb.ChatMessage(role=pb.ROLE_USER, content="Weather in Paris?"),
        pb.ChatMessage(role=pb.ROLE_ASSISTANT, tool_calls=[call]),
        pb.ChatMessage(role=pb.ROLE_TOOL, tool_call_id="toolu_1", **result),
    ]
    tool = tools_pb2.Tool(name=WEATHER.name, parameters_json=json.dumps(WEATHER.parameters))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{doors.grpc.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        await collect(stub.Generate(pb.GenerateRequest(model_id="m", messages=turns, tools=[tool])))
    return posts(upstream)[-1]["messages"][2]


async def test_a_system_message_s_text_parts_are_joined_as_all_system_text_is(
    doors: Doors, anthropic_upstream: FakeAnthropic
) -> None:
    """By a blank line, as an Anthropic system array and the system turns are (proto GenerationOptions.system): the
    same blocks make the same system prompt through each dialect."""
    await load_hosted(doors, anthropic_upstream)
    await _openai_ask(doors, [{"role": "system", "content": LINES}, {"role": "user", "content": "Weather?"}])
    await _anthropic_ask(doors, [{"role": "user", "content": "Weather?"}], system=LINES)
    developer: Any = {"role": "developer", "content": [{"type": "input_text", "text": line["text"]} for line in LINES]}
    async with async_openai_client(doors) as client:
        await client.responses.create(model="m", input=[developer, {"role": "user", "content": "Weather?"}])
    assert [body["system"] for body in posts(anthropic_upstream)] == ["Temp: 24C\n\nHumidity: 50%"] * 3


async def test_a_local_model_s_prompt_has_each_text_block_on_a_line_of_its_own(doors: Doors) -> None:
    await doors.engine.load(LoadSpec("tiny", BackendKind.LLAMA_CPP, TINY_MODEL, None, None))
    async with async_anthropic_client(doors) as client:

        async def count(content: Any) -> int:
            counted = await client.messages.count_tokens(model="tiny", messages=[{"role": "user", "content": content}])
            return counted.input_tokens

        contents = (LINES, "Temp: 24C\nHumidity: 50%", "Temp: 24CHumidity: 50%")
        blocks, lines, run_together = [await count(content) for content in contents]
    assert blocks == lines != run_together
    # The tiny model's tokens are characters, so counts tell no separator of one character from another: the
    # prompt itself shows the newline.
    turn = pb.ChatMessage(
        role=pb.ROLE_USER, content=LINES[0]["text"], parts=[content_pb2.ContentPart(text=LINES[1]["text"])]
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{doors.grpc.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        asked = pb.GenerateRequest(model_id="tiny", messages=[turn])
        counted = (await stub.CountTokens(pb.CountTokensRequest(request=asked, include_tokens=True))).count
    assert counted.prompt_tokens == blocks
    assert "Temp: 24C\nHumidity: 50%" in b"".join(token.piece for token in counted.tokens).decode()
