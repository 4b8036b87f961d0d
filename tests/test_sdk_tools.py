"""The Python SDK's tools, structured output and reasoning, sync and asyncio, against the real server and the
loopback fakes: a tool loop from a typed function, a pydantic tool and response format, stream events (tools, choices
and formats shaped as the vendors' SDKs take them: tests/test_sdk_tool_shapes.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pydantic
import pytest

from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import ANTHROPIC_KEY, OPENAI_KEY
from tests.sdk_support import blocking, target
from tests.test_tools_hosted_reasoning import THINKING_EVENTS
from tests.tool_wire import Args, Call, script_steps
from warpcore.client import (
    ApiConfig,
    AsyncClient,
    Client,
    FinishReason,
    GenerateResult,
    Message,
    ReasoningBlock,
    ReasoningDelta,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallDelta,
)
from warpcore.client._messages import FUNCTION_TOOLS_NEED_PYDANTIC

__all__ = ["target"]  # the fixture, used by name


def get_weather(city: str, days: int = 1) -> str:
    """The weather in a city."""
    return f"{days} days of sun in {city}"


class Answer(pydantic.BaseModel):
    """A number and why."""

    n: int
    why: str


def test_tools_from_a_typed_function_and_a_pydantic_model() -> None:
    tool = Tool.from_function(get_weather)
    assert (tool.name, tool.description) == ("get_weather", "The weather in a city.")
    assert tool.parameters["required"] == ["city"]
    assert tool.parameters["properties"]["days"] == {"default": 1, "title": "Days", "type": "integer"}
    model_tool = Tool.from_model(Answer)
    assert (model_tool.name, model_tool.description) == ("Answer", "A number and why.")
    assert set(model_tool.parameters["properties"]) == {"n", "why"}


async def test_sync_tool_loop(target: str, openai_upstream: FakeOpenAI) -> None:
    wire, reason = script_steps(
        openai_upstream, [Call(0, "call_1", "get_weather"), Args(0, '{"city": "Bern", '), Args(0, '"days": 2}')]
    )
    openai_upstream.script = Script(events=wire, finish_reason=reason)

    @blocking
    def use() -> tuple[list[Any], str]:
        with Client(target, timeout=30) as client:
            config = ApiConfig(api_key=OPENAI_KEY, base_url=openai_upstream.base_url)
            client.load_model("gpt-4o-mini", backend="openai", model_id="m", config=config)
            messages: list[Message] = [Message("user", "Weather in Bern?")]
            with client.generate("m", messages=messages, tools=[get_weather], stream=True) as stream:
                events = list(stream)
                first = stream.get_final_response()
            assert first.finish_reason is FinishReason.TOOL_CALLS
            (call,) = first.tool_calls
            assert call == ToolCall("call_1", "get_weather", '{"city": "Bern", "days": 2}')
            messages += [first.message(), Message.tool_result(call, get_weather(**call.parsed_arguments()))]
            openai_upstream.script = Script(chunks=["Sunny, ", "two days."])
            return events, client.generate("m", messages=messages, tools=[get_weather]).text

    events, answer = await use()
    assert [type(event) for event in events] == [ToolCallDelta, ToolCallDelta, ToolCallDelta, GenerateResult]
    assert events[0] == ToolCallDelta(0, "call_1", "get_weather", "")
    assert answer == "Sunny, two days."
    body = openai_upstream.requests[-1].body
    assert body is not None
    assert body["messages"][1]["tool_calls"][0]["function"]["arguments"] == '{"city": "Bern", "days": 2}'
    assert body["messages"][2] == {"role": "tool", "tool_call_id": "call_1", "content": "2 days of sun in Bern"}
    assert body["tools"][0]["function"]["parameters"]["properties"]["city"] == {"title": "City", "type": "string"}


async def test_async_structured_output_is_parsed(target: str, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.script = Script(chunks=['{"n": 4, ', '"why": "2+2"}'])
    async with AsyncClient(target, timeout=30) as client:
        config = ApiConfig(api_key=OPENAI_KEY, base_url=openai_upstream.base_url)
        await client.load_model("gpt-4o-mini", backend="openai", model_id="m", config=config)
        response = await client.generate("m", prompt="2+2?", response_format=Answer)
    assert response.parsed == Answer(n=4, why="2+2")
    body = openai_upstream.requests[-1].body
    assert body is not None
    assert body["response_format"]["json_schema"]["name"] == "Answer"
    assert body["response_format"]["json_schema"]["schema"] == Answer.model_json_schema()


async def test_async_reasoning_events_and_blocks_handed_back(target: str, anthropic_upstream: FakeAnthropic) -> None:
    anthropic_upstream.script = Script(events=THINKING_EVENTS, finish_reason="tool_use")
    async with AsyncClient(target, timeout=30) as client:
        config = ApiConfig(api_key=ANTHROPIC_KEY, base_url=anthropic_upstream.base_url)
        await client.load_model(anthropic_upstream.models[0], backend="anthropic", model_id="m", config=config)
        options: dict[str, Any] = {"tools": [get_weather], "max_tokens": 4096, "reasoning_budget": 2048}
        stream = await client.generate("m", messages=[("user", "Weather?")], stream=True, **options)
        kinds = [type(event) async for event in stream]
        first = await stream.get_final_response()
        assert first.reasoning == (
            ReasoningBlock("Zürich is in Switzerland.", "EqQBCgIYAhIM+sig=="),
            ReasoningBlock(signature="ENCRYPTED/x==", redacted=True),
        )
        anthropic_upstream.script = Script(chunks=["Sunny."])
        messages = [Message("user", "Weather?"), first.message(), Message.tool_result(first.tool_calls[0], "sun")]
        await client.generate("m", messages=messages, **options)
    assert kinds.count(ReasoningDelta) == 4
    assert TextDelta in kinds
    body = anthropic_upstream.requests[-1].body
    assert body is not None
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert [block["type"] for block in body["messages"][1]["content"]] == [
        "thinking",
        "redacted_thinking",
        "text",
        "tool_use",
    ]
    assert body["messages"][1]["content"][0]["signature"] == "EqQBCgIYAhIM+sig=="
    assert json.dumps(body["messages"][2]["content"][0]) == json.dumps(
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sun"}
    )


async def test_sdk_verbosity(target: str, openai_upstream: FakeOpenAI) -> None:
    async with AsyncClient(target, timeout=30) as client:
        config = ApiConfig(api_key=OPENAI_KEY, base_url=openai_upstream.base_url)
        await client.load_model("gpt-4o-mini", backend="openai", model_id="m", config=config)
        await client.generate("m", prompt="Explain.", verbosity="medium")
        with pytest.raises(ValueError, match="verbosity is one of low, medium, high, not 'loud'"):
            await client.generate("m", prompt="Explain.", verbosity="loud")  # type: ignore[call-overload]
    body = openai_upstream.requests[-1].body
    assert body is not None
    assert body["verbosity"] == "medium"


def test_a_function_tool_without_pydantic_says_what_to_install() -> None:
    """A tester's finding: after `pip install ./client`, the README's tool loop failed with a bare "No module named
    'pydantic'" (the SDK does not depend on it)."""
    script = (
        "import sys; sys.modules['pydantic'] = None\n"  # as where pydantic is not installed
        "from warpcore.client import Tool\n"
        "def get_weather(city: str) -> str: ...\n"
        "try:\n    Tool.from_function(get_weather)\n"
        "except ImportError as error:\n    print(error.name, '|', error)\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    assert run.stdout.strip() == f"pydantic | {FUNCTION_TOOLS_NEED_PYDANTIC}"
    assert "pip install 'warpcore-client[tools]'" in FUNCTION_TOOLS_NEED_PYDANTIC
