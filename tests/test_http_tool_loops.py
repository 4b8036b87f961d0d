"""Tool loops and structured output through the HTTP door, across dialects: each official SDK, its stream
accumulator for the call and a whole answer after the result, against an upstream of the other provider and of its
own, and against a llama.cpp model whose grammar forces the call; what the client gets, and what the upstream
receives in its own wire format."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import jsonschema
import pydantic
import pytest

from tests.conftest import serving_doors
from tests.fakes.base import FakeUpstream
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import posts, use
from tests.http_door import async_anthropic_client, async_openai_client, load_hosted
from tests.key_leaks import REQUEST_KEY
from tests.local_tools import HERMES_TEMPLATE, WEATHER
from tests.tiny_model import write_tiny_model
from tests.tool_wire import Args, Call
from warpcore.server.core.domain import ApiSettings, BackendKind, LoadSpec
from warpcore.server.doors import Doors

QUESTION = "Weather in Zürich?"
ARGUMENTS = {"city": "Zürich", "days": 2}
RESULT = "18 °C, sunny"
CLIENTS = ["openai", "anthropic"]


@dataclass(frozen=True)
class Loop:
    """A tool loop as the client saw it: the call of the first answer, and the text of the second."""

    finish: str
    call_id: str
    name: str
    arguments: dict[str, Any]
    answer: str


async def openai_loop(doors: Doors, model: str, forced: bool) -> Loop:
    tool = {"type": "function", "function": {"name": WEATHER.name, "parameters": WEATHER.parameters}}
    question: Any = {"role": "user", "content": QUESTION}
    options: dict[str, Any] = {"model": model, "tools": [tool], "max_tokens": 300, "temperature": 0}
    async with async_openai_client(doors) as client:
        async with client.chat.completions.stream(
            messages=[question], tool_choice="required" if forced else "auto", parallel_tool_calls=False, **options
        ) as stream:
            first = (await stream.get_final_completion()).choices[0]
        assert first.message.tool_calls is not None
        [call] = first.message.tool_calls
        assert call.type == "function"
        assistant: Any = {"role": "assistant", "content": None, "tool_calls": [call.model_dump(exclude_none=True)]}
        result: Any = {"role": "tool", "tool_call_id": call.id, "content": RESULT}
        second = await client.chat.completions.create(
            messages=[question, assistant, result], tool_choice="none", **options
        )
    answer = second.choices[0].message
    assert not answer.tool_calls
    arguments = json.loads(call.function.arguments)
    return Loop(first.finish_reason, call.id, call.function.name, arguments, answer.content or "")


async def anthropic_loop(doors: Doors, model: str, forced: bool) -> Loop:
    tool = {"name": WEATHER.name, "input_schema": WEATHER.parameters}
    question: Any = {"role": "user", "content": QUESTION}
    options: dict[str, Any] = {"model": model, "tools": [tool], "max_tokens": 300, "extra_body": {"temperature": 0}}
    choice = {"type": "any" if forced else "auto", "disable_parallel_tool_use": True}
    async with async_anthropic_client(doors) as client:
        async with client.messages.stream(messages=[question], tool_choice=choice, **options) as stream:  # type: ignore[arg-type]
            first = await stream.get_final_message()
        [call] = [block for block in first.content if isinstance(block, anthropic.types.ToolUseBlock)]
        turn = [block.model_dump(exclude_none=True) for block in first.content]
        assistant: Any = {"role": "assistant", "content": turn}
        result: Any = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": RESULT}]}
        second = await client.messages.create(
            messages=[question, assistant, result], tool_choice={"type": "none"}, **options
        )
    assert not any(isinstance(block, anthropic.types.ToolUseBlock) for block in second.content)
    text = "".join(block.text for block in second.content if isinstance(block, anthropic.types.TextBlock))
    assert isinstance(call.input, dict)
    return Loop(str(first.stop_reason), call.id, call.name, call.input, text)


LOOPS = {"openai": openai_loop, "anthropic": anthropic_loop}
CALL_FINISH = {"openai": "tool_calls", "anthropic": "tool_use"}


def tool_turns_received(upstream: FakeUpstream, body: dict[str, Any]) -> list[tuple[str, Any]]:
    """The call and its result as the upstream received them after the question, read from its wire format:
    (kind, id, name or result, arguments) per turn."""
    if isinstance(upstream, FakeOpenAI):
        assistant, tool = body["messages"][1:]
        [call] = assistant["tool_calls"]
        function = call["function"]
        return [("call", (call["id"], function["name"], json.loads(function["arguments"]))), ("result", tool)]
    assistant, user = body["messages"][1:]
    [block] = [block for block in assistant["content"] if block["type"] == "tool_use"]
    [result] = user["content"]
    return [("call", (block["id"], block["name"], block["input"])), ("result", result)]


@pytest.fixture
async def hosted(doors: Doors, upstream: FakeUpstream) -> Doors:
    await load_hosted(doors, upstream)
    return doors


@pytest.mark.parametrize("client", CLIENTS)
async def test_a_tool_loop_through_the_door_to_either_provider(
    hosted: Doors, upstream: FakeUpstream, client: str
) -> None:
    use(upstream, [Call(0, "call_1", WEATHER.name), Args(0, json.dumps(ARGUMENTS, ensure_ascii=False))])
    calling, answering = upstream.script, Script(chunks=["It is ", "18 °C."])
    # The model's stand-in: the call for the question, the text once the result has come back.
    upstream.respond = lambda body: answering if len(body["messages"]) > 1 else calling

    seen = await LOOPS[client](hosted, "m", forced=False)

    assert seen == Loop(CALL_FINISH[client], "call_1", WEATHER.name, ARGUMENTS, "It is 18 °C.")
    first, second = posts(upstream)
    assert [tool["name"] if "name" in tool else tool["function"]["name"] for tool in first["tools"]] == [WEATHER.name]
    turns = tool_turns_received(upstream, second)
    assert turns[0] == ("call", ("call_1", WEATHER.name, ARGUMENTS))
    expected = (
        {"role": "tool", "tool_call_id": "call_1", "content": RESULT}
        if isinstance(upstream, FakeOpenAI)
        else {"type": "tool_result", "tool_use_id": "call_1", "content": RESULT}
    )
    assert turns[1] == ("result", expected)


class Weather(pydantic.BaseModel):
    city: str
    days: int


@pytest.mark.parametrize("client", CLIENTS)
async def test_structured_output_through_the_door_to_either_provider(
    hosted: Doors, upstream: FakeUpstream, client: str
) -> None:
    upstream.script = Script(chunks=['{"city": "Paris",', ' "days": 3}'])
    messages: Any = [{"role": "user", "content": "Weather in Paris, as JSON"}]
    if client == "openai":
        async with async_openai_client(hosted) as openai_client:
            answer = await openai_client.chat.completions.parse(model="m", messages=messages, response_format=Weather)
        parsed = answer.choices[0].message.parsed
    else:
        async with async_anthropic_client(hosted) as anthropic_client:
            message = await anthropic_client.messages.parse(
                model="m", messages=messages, max_tokens=64, output_format=Weather
            )
        parsed = message.parsed_output
    assert parsed == Weather(city="Paris", days=3)
    body = posts(upstream)[-1]
    schema = (
        body["response_format"]["json_schema"]["schema"]
        if isinstance(upstream, FakeOpenAI)
        else body["output_config"]["format"]["schema"]
    )
    assert set(schema["properties"]) == {"city", "days"}
    assert schema["properties"]["days"]["type"] == "integer"


@pytest.fixture
async def hermes_door(tmp_path: Path) -> AsyncIterator[Doors]:
    """A tiny model whose chat template lists tools and renders calls, as tool-calling templates do, in a models
    directory of its own."""
    write_tiny_model(tmp_path / "hermes.gguf", chat_template=HERMES_TEMPLATE)
    async with serving_doors({"MODELS_PATH": str(tmp_path)}) as doors:
        await doors.engine.load(LoadSpec("hermes", BackendKind.LLAMA_CPP, "hermes.gguf", None, None))
        yield doors


@pytest.mark.parametrize("client", CLIENTS)
async def test_a_forced_tool_loop_through_the_door_on_llama_cpp(hermes_door: Doors, client: str) -> None:
    seen = await LOOPS[client](hermes_door, "hermes", forced=True)
    assert seen.finish == CALL_FINISH[client]
    assert seen.name == WEATHER.name
    assert seen.call_id.startswith("call_")
    jsonschema.validate(seen.arguments, WEATHER.parameters)
    assert seen.answer


@pytest.mark.parametrize("argument_events", [[], [Args(0, "")]], ids=["no argument event", "an empty one"])
async def test_a_streamed_call_without_arguments_joins_to_an_object_the_client_can_send_back(
    hosted: Doors, upstream: FakeUpstream, argument_events: list[Args]
) -> None:
    """The chat stream's deltas joined to "" where the whole answer had "{}", and the door refused "" sent back."""
    use(upstream, [Call(0, "call_1", "get_time"), *argument_events])
    calling, answering = upstream.script, Script(chunks=["noon"])
    upstream.respond = lambda body: answering if len(body["messages"]) > 1 else calling
    tool = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
    question: Any = {"role": "user", "content": "What time is it?"}
    async with async_openai_client(hosted) as client:
        async with client.chat.completions.stream(model="m", messages=[question], tools=[tool]) as stream:  # type: ignore[list-item]
            [call] = (await stream.get_final_completion()).choices[0].message.tool_calls or []
        assert call.function.arguments == "{}"
        assistant: Any = {"role": "assistant", "content": None, "tool_calls": [call.model_dump(exclude_none=True)]}
        result: Any = {"role": "tool", "tool_call_id": call.id, "content": "noon"}
        turns = [question, assistant, result]
        second = await client.chat.completions.create(model="m", messages=turns, tools=[tool])  # type: ignore[list-item]
    assert second.choices[0].message.content == "noon"


async def test_the_anthropic_tool_runner_goes_on_unthreaded_when_the_door_refuses_its_thread(
    hosted: Doors, upstream: FakeUpstream
) -> None:
    """The SDK's tool runner asks for a thread by default, and sends the turn again without it only on a refusal
    whose details say threading is unsupported: a bare 400 ended the runner at its first turn."""
    use(upstream, [Call(0, "call_1", "get_weather"), Args(0, '{"city": "Paris"}')])
    calling, answering = upstream.script, Script(chunks=["Sunny."])
    upstream.respond = lambda body: answering if len(body["messages"]) > 1 else calling
    cities: list[str] = []

    @anthropic.beta_async_tool
    async def get_weather(city: str) -> str:
        """The weather in a city.

        Args:
            city: the city's name
        """
        cities.append(city)
        return "sunny"

    async with async_anthropic_client(hosted) as client:
        messages: Any = [{"role": "user", "content": "Weather in Paris?"}]
        runner = client.beta.messages.tool_runner(model="m", max_tokens=64, messages=messages, tools=[get_weather])
        final = await runner.until_done()
    assert cities == ["Paris"]
    assert [block.text for block in final.content if block.type == "text"] == ["Sunny."]
    assert all("thread" not in body for body in posts(upstream))


@pytest.mark.parametrize("client", CLIENTS)
async def test_a_call_id_holding_the_key_reaches_the_client_redacted_and_the_loop_goes_on(
    doors: Doors, upstream: FakeUpstream, client: str
) -> None:
    """A tester's finding: an upstream's call id made of the server's key reached the door's client as it was (the
    chat stream's `id`, Anthropic's `content_block_start`); the id the client sends back is the one it was shown."""
    backend = BackendKind.OPENAI if isinstance(upstream, FakeOpenAI) else BackendKind.ANTHROPIC
    settings = ApiSettings(api_key=REQUEST_KEY.value, base_url=upstream.base_url)
    await doors.engine.load(LoadSpec("m", backend, upstream.models[0], settings, None))
    use(upstream, [Call(0, f"call_{REQUEST_KEY.value}", WEATHER.name), Args(0, json.dumps(ARGUMENTS))])
    calling, answering = upstream.script, Script(chunks=["It is 18 °C."])
    upstream.respond = lambda body: answering if len(body["messages"]) > 1 else calling

    seen = await LOOPS[client](doors, "m", forced=False)

    assert seen == Loop(CALL_FINISH[client], "call_[redacted]", WEATHER.name, ARGUMENTS, "It is 18 °C.")
    call, result = tool_turns_received(upstream, posts(upstream)[-1])
    assert call == ("call", ("call_[redacted]", WEATHER.name, ARGUMENTS))
    assert "call_[redacted]" in json.dumps(result)
