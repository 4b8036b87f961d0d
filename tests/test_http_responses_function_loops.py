"""OpenAI's Responses API on the HTTP door, through the real openai SDK (sync and async, `create` and the `stream`
helper's accumulator): function loops on llama.cpp and through a fake Anthropic upstream, and reasoning items carrying
Anthropic's thinking there and back."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from openai.types.responses import Response, ResponseFunctionToolCall

from tests.conftest import serving_doors
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.script import Script
from tests.hosted import posts, use
from tests.http_door import async_openai_client, load_hosted
from tests.http_responses_support import FUNCTION, without_ids
from tests.local_tools import HERMES_TEMPLATE, WEATHER
from tests.test_tools_hosted_reasoning import THINKING_EVENTS
from tests.tiny_model import write_tiny_model
from tests.tool_wire import Args, Call
from warpcore.server.core.domain import BackendKind, LoadSpec
from warpcore.server.doors import Doors


@pytest.fixture
async def hermes_door(tmp_path: Path) -> AsyncIterator[Doors]:
    """A tiny model whose chat template renders tools and calls, whose grammar forces a call when one is required."""
    write_tiny_model(tmp_path / "hermes.gguf", chat_template=HERMES_TEMPLATE)
    async with serving_doors({"MODELS_PATH": str(tmp_path)}) as doors:
        await doors.engine.load(LoadSpec("hermes", BackendKind.LLAMA_CPP, "hermes.gguf", None, None))
        yield doors


async def function_loop(doors: Doors, model: str, choice: Any) -> tuple[ResponseFunctionToolCall, str, Response]:
    """Ask, stream the call (checking its argument deltas add up), send its output back, and return the call, the
    deltas and the answer."""
    question: Any = {"role": "user", "content": "Weather in Zürich?"}
    options: dict[str, Any] = {"model": model, "tools": [FUNCTION], "max_output_tokens": 200, "temperature": 0}
    async with async_openai_client(doors) as client:
        async with client.responses.stream(input=[question], tool_choice=choice, **options) as stream:
            deltas = "".join(
                [event.delta async for event in stream if event.type == "response.function_call_arguments.delta"]
            )
            first = await stream.get_final_response()
        [call] = [item for item in first.output if isinstance(item, ResponseFunctionToolCall)]
        handed_back = [item.model_dump(exclude_none=True) for item in first.output]
        result: Any = {"type": "function_call_output", "call_id": call.call_id, "output": "18 °C, sunny"}
        second = await client.responses.create(  # type: ignore[call-overload]
            input=[question, *handed_back, result], tool_choice="none", **options
        )
    assert first.status == "completed"
    assert (call.status, call.name) == ("completed", WEATHER.name)
    assert not any(isinstance(item, ResponseFunctionToolCall) for item in second.output)
    return call, deltas, second


@pytest.mark.parametrize("choice", ["required", {"type": "function", "name": WEATHER.name}])
async def test_a_forced_function_loop_on_llama_cpp(hermes_door: Doors, choice: Any) -> None:
    call, deltas, answer = await function_loop(hermes_door, "hermes", choice)
    jsonschema.validate(json.loads(call.arguments), WEATHER.parameters)
    assert json.loads(deltas) == json.loads(call.arguments)
    assert call.call_id.startswith("call_")
    assert answer.output_text


async def test_a_function_loop_through_an_anthropic_upstream(doors: Doors) -> None:
    async with FakeAnthropic(models=["claude-test"]) as upstream:
        await load_hosted(doors, upstream)
        arguments = {"city": "Zürich", "days": 2}
        text = json.dumps(arguments, ensure_ascii=False)
        use(upstream, [Call(0, "toolu_1", WEATHER.name), Args(0, text[:9]), Args(0, text[9:])])
        calling, answering = upstream.script, Script(chunks=["It is ", "18 °C."])
        upstream.respond = lambda body: answering if len(body["messages"]) > 1 else calling

        call, deltas, answer = await function_loop(doors, "m", "auto")

        first, second = posts(upstream)
    assert (call.call_id, json.loads(call.arguments), json.loads(deltas)) == ("toolu_1", arguments, arguments)
    assert answer.output_text == "It is 18 °C."
    assert [tool["name"] for tool in first["tools"]] == [WEATHER.name]
    question, assistant, user = second["messages"]
    assert question == {"role": "user", "content": "Weather in Zürich?"}
    [tool_use] = [block for block in assistant["content"] if block["type"] == "tool_use"]
    assert (tool_use["id"], tool_use["name"], tool_use["input"]) == ("toolu_1", WEATHER.name, arguments)
    assert user["content"] == [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 °C, sunny"}]
    assert second["tool_choice"]["type"] == "none"


async def test_reasoning_items_carry_anthropic_thinking_there_and_back(doors: Doors) -> None:
    async with FakeAnthropic(models=["claude-test"]) as upstream:
        await load_hosted(doors, upstream)
        upstream.script = Script(events=THINKING_EVENTS, finish_reason="tool_use")
        question: Any = {"role": "user", "content": "Weather in Zürich?"}
        options: dict[str, Any] = {"model": "m", "tools": [FUNCTION], "max_output_tokens": 4096}
        async with async_openai_client(doors) as client:
            whole = await client.responses.create(input=[question], reasoning={"effort": "low"}, **options)
            async with client.responses.stream(input=[question], reasoning={"effort": "low"}, **options) as stream:
                summary = "".join(
                    [event.delta async for event in stream if event.type == "response.reasoning_summary_text.delta"]
                )
                streamed = await stream.get_final_response()
            upstream.script = Script(chunks=["Sunny."])
            result: Any = {"type": "function_call_output", "call_id": "toolu_1", "output": "18 °C"}
            handed_back = [item.model_dump(exclude_none=True) for item in whole.output]
            await client.responses.create(input=[question, *handed_back, result], **options)
        turn = posts(upstream)[-1]["messages"][1]
    assert without_ids(whole) == without_ids(streamed)
    assert [item.type for item in whole.output] == ["reasoning", "reasoning", "message", "function_call"]
    thinking, redacted = whole.output[:2]
    assert thinking.type == redacted.type == "reasoning"
    assert [part.text for part in thinking.summary] == [summary] == ["Zürich is in Switzerland."]
    assert (thinking.encrypted_content, redacted.encrypted_content, redacted.summary) == (
        "EqQBCgIYAhIM+sig==",
        "ENCRYPTED/x==",
        [],
    )
    assert whole.output_text == "Checking."
    assert turn["role"] == "assistant"
    assert turn["content"] == [
        {"type": "thinking", "thinking": "Zürich is in Switzerland.", "signature": "EqQBCgIYAhIM+sig=="},
        {"type": "redacted_thinking", "data": "ENCRYPTED/x=="},
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_1", "name": WEATHER.name, "input": {"city": "Zürich"}},
    ]


async def test_a_reasoning_summary_asked_for_asks_a_claude_model_to_think(doors: Doors) -> None:
    """A tester's finding: no Responses request could make Claude think; `reasoning.effort` reached it as an effort
    alone, and Claude thinks only when asked."""
    async with FakeAnthropic(models=["claude-test"]) as upstream:
        await load_hosted(doors, upstream)
        upstream.script = Script(chunks=["Sunny."])
        async with async_openai_client(doors) as client:
            asked: list[Any] = [
                {"effort": "high", "summary": "auto"},
                {"summary": "detailed"},
                {"effort": "low"},
                {"effort": "none", "summary": "auto"},
            ]
            for reasoning in asked:
                await client.responses.create(model="m", input="Weather?", reasoning=reasoning)
        sent = [(body.get("thinking"), body.get("output_config")) for body in posts(upstream)]
    assert sent == [
        ({"type": "adaptive"}, {"effort": "high"}),
        ({"type": "adaptive"}, None),
        (None, {"effort": "low"}),
        (None, None),
    ]
