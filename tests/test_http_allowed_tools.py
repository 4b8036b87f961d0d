"""OpenAI's `allowed_tools` tool choice through both OpenAI routes: a hosted backend, of either vendor, is sent only the
allowed tools with the choice's mode; a name no tool has, an empty list or a tool of another type is a 400 naming the
member where the request holds it."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

import openai
import pytest

from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI
from tests.http_door import async_openai_client, load_hosted, openai_messages
from warpcore.server.doors import Doors

MESSAGES = openai_messages("What is the weather?")
PARAMETERS: dict[str, Any] = {"type": "object", "properties": {"city": {"type": "string"}}}
NAMES = ("get_weather", "search", "send_mail")
CHAT_TOOLS: Any = [{"type": "function", "function": {"name": name, "parameters": PARAMETERS}} for name in NAMES]
RESPONSES_TOOLS: Any = [{"type": "function", "name": name, "parameters": PARAMETERS} for name in NAMES]


def chat_choice(mode: str, *names: str) -> Any:
    tools = [{"type": "function", "function": {"name": name}} for name in names]
    return {"type": "allowed_tools", "allowed_tools": {"mode": mode, "tools": tools}}


def responses_choice(mode: str, *names: str) -> Any:
    return {"type": "allowed_tools", "mode": mode, "tools": [{"type": "function", "name": name} for name in names]}


@pytest.fixture
async def both(doors: Doors, openai_upstream: FakeOpenAI, anthropic_upstream: FakeAnthropic) -> Doors:
    await load_hosted(doors, openai_upstream, "gpt")
    await load_hosted(doors, anthropic_upstream, "claude")
    return doors


def sent(upstream: FakeOpenAI | FakeAnthropic) -> tuple[list[str], Any]:
    """The names of the tools the last upstream request carried, and its tool_choice."""
    body = upstream.requests[-1].body
    assert body is not None
    names = [tool["function"]["name"] if "function" in tool else tool["name"] for tool in body["tools"]]
    return names, body["tool_choice"]


async def test_a_hosted_backend_is_sent_only_the_allowed_tools_with_the_mode(
    both: Doors, openai_upstream: FakeOpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    async with async_openai_client(both) as client:
        choice = chat_choice("required", "send_mail", "get_weather")
        await client.chat.completions.create(model="gpt", messages=MESSAGES, tools=CHAT_TOOLS, tool_choice=choice)
        assert sent(openai_upstream) == (["get_weather", "send_mail"], "required")
        await client.chat.completions.create(model="claude", messages=MESSAGES, tools=CHAT_TOOLS, tool_choice=choice)
        assert sent(anthropic_upstream) == (["get_weather", "send_mail"], {"type": "any"})
        await client.responses.create(
            model="gpt",
            input="What is the weather?",
            tools=RESPONSES_TOOLS,
            tool_choice=responses_choice("auto", "search"),
        )
        assert sent(openai_upstream) == (["search"], "auto")
        await client.chat.completions.create(model="gpt", messages=MESSAGES, tools=CHAT_TOOLS, tool_choice="auto")
        assert sent(openai_upstream) == (list(NAMES), "auto")  # without allowed_tools, every tool


@pytest.mark.parametrize(
    ("route", "choice", "param"),
    [
        ("chat", chat_choice("auto", "get_weather", "nope"), "tool_choice.allowed_tools.tools[1].function.name"),
        ("chat", chat_choice("auto", "search", "search"), "tool_choice.allowed_tools.tools[1].function.name"),
        ("chat", chat_choice("auto"), "tool_choice.allowed_tools.tools"),
        ("chat", chat_choice("none", "search"), "tool_choice.allowed_tools.mode"),
        (
            "chat",
            {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [{"type": "custom", "name": "x"}]}},
            "tool_choice.allowed_tools.tools[0].type",
        ),
        ("responses", responses_choice("required", "nope"), "tool_choice.tools[0].name"),
        ("responses", {"type": "allowed_tools", "mode": "auto", "tools": []}, "tool_choice.tools"),
        ("responses", {"type": "allowed_tools", "mode": "auto", "allowed": ["search"]}, "tool_choice.allowed"),
    ],
)
async def test_a_bad_allowed_tools_choice_is_a_400_naming_its_member(
    both: Doors, openai_upstream: FakeOpenAI, route: str, choice: Any, param: str
) -> None:
    before = len(openai_upstream.requests)
    async with async_openai_client(both) as client:
        call: Coroutine[Any, Any, object]
        if route == "chat":
            call = client.chat.completions.create(model="gpt", messages=MESSAGES, tools=CHAT_TOOLS, tool_choice=choice)
        else:
            call = client.responses.create(model="gpt", input="hi", tools=RESPONSES_TOOLS, tool_choice=choice)
        with pytest.raises(openai.BadRequestError) as refused:
            await call
    assert refused.value.param == param, refused.value.message
    assert len(openai_upstream.requests) == before
