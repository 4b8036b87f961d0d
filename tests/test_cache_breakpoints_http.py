"""Cache breakpoints through the HTTP door: each cache_control of an Anthropic client placed, moved or refused naming
it, and an OpenAI client's breakpoints taken to Anthropic, sent to no OpenAI model, or refused."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from tests.cache_breakpoints_support import EPHEMERAL, HOUR
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI
from tests.hosted import posts
from tests.http_door import async_anthropic_client, async_openai_client, load_hosted
from warpcore.server.doors import Doors


async def test_door_places_each_cache_control_of_an_anthropic_client(
    doors: Doors, anthropic_upstream: FakeAnthropic
) -> None:
    await load_hosted(doors, anthropic_upstream)
    tools: Any = [
        {"name": "get_weather", "input_schema": {"type": "object"}, "cache_control": HOUR},
        {"name": "get_time", "input_schema": {"type": "object"}},
    ]
    system: Any = [{"type": "text", "text": "Rules.", "cache_control": EPHEMERAL}]
    messages: Any = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "get_weather", "input": {}}]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "sunny", "cache_control": EPHEMERAL},
                {"type": "text", "text": "Thanks."},
            ],
        },
    ]
    async with async_anthropic_client(doors) as client:
        await client.messages.create(model="m", max_tokens=20, tools=tools, system=system, messages=messages)
        precise = posts(anthropic_upstream)[-1]
        # Automatic caching: the top-level cache_control ends the last message.
        automatic_control: Any = EPHEMERAL
        await client.messages.create(model="m", max_tokens=20, messages=messages[:1], cache_control=automatic_control)
        automatic = posts(anthropic_upstream)[-1]

    assert [tool.get("cache_control") for tool in precise["tools"]] == [HOUR, None]
    assert precise["system"] == [{"type": "text", "text": "Rules.", "cache_control": EPHEMERAL}]
    result, thanks = precise["messages"][2]["content"]
    assert (result["cache_control"], "cache_control" in thanks) == (EPHEMERAL, False)
    assert automatic["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather?", "cache_control": EPHEMERAL}]}
    ]


async def test_door_moves_a_breakpoint_the_domain_has_no_place_for_to_one_before_it(
    doors: Doors, anthropic_upstream: FakeAnthropic
) -> None:
    """A document block with the question after it in the same turn: the door places no breakpoint within a turn's
    text, so the breakpoint goes to the place before the turn (here the end of the system prompt), never after the
    question."""
    await load_hosted(doors, anthropic_upstream)
    document: Any = {"type": "text", "text": "A document.", "cache_control": EPHEMERAL}
    messages: Any = [{"role": "user", "content": [document, {"type": "text", "text": " Its title?"}]}]
    tools: Any = [{"name": "get_time", "input_schema": {"type": "object"}}]
    async with async_anthropic_client(doors) as client:
        await client.messages.create(model="m", max_tokens=20, system="Rules.", messages=messages)
        with_system = posts(anthropic_upstream)[-1]
        await client.messages.create(model="m", max_tokens=20, tools=tools, messages=messages)
        with_tools = posts(anthropic_upstream)[-1]

    for body in (with_system, with_tools):
        blocks = [{"type": "text", "text": "A document."}, {"type": "text", "text": " Its title?"}]
        assert body["messages"] == [{"role": "user", "content": blocks}]
    assert with_system["system"] == [{"type": "text", "text": "Rules.", "cache_control": EPHEMERAL}]
    assert with_tools["tools"][0]["cache_control"] == EPHEMERAL


@pytest.mark.parametrize(
    ("cache_control", "extra", "field"),
    [
        ({"type": "persistent"}, {}, "messages.0.content.0.cache_control.type"),
        ({"type": "ephemeral", "ttl": "2h"}, {}, "messages.0.content.0.cache_control.ttl"),
        (HOUR, {"system": [{"type": "text", "text": "s", "cache_control": EPHEMERAL}]}, "messages.0.content.0"),
        (
            EPHEMERAL,
            {
                "system": [{"type": "text", "text": f"s{n}", "cache_control": EPHEMERAL} for n in range(3)],
                "cache_control": EPHEMERAL,
            },
            "cache_control: a request holds at most 4",
        ),
    ],
)
async def test_door_refuses_cache_control_it_cannot_honour_naming_it(
    doors: Doors, anthropic_upstream: FakeAnthropic, cache_control: Any, extra: dict[str, Any], field: str
) -> None:
    await load_hosted(doors, anthropic_upstream)
    content: Any = [{"type": "text", "text": "a", "cache_control": cache_control}]
    async with async_anthropic_client(doors) as client:
        with pytest.raises(anthropic.BadRequestError) as refused:
            await client.messages.create(
                model="m", max_tokens=20, messages=[{"role": "user", "content": content}], **extra
            )
    assert field in str(refused.value).replace("[", ".").replace("]", "")


async def test_door_reads_a_tool_results_own_blocks_before_it(doors: Doors, anthropic_upstream: FakeAnthropic) -> None:
    """The last text block of a tool result ends the result; its breakpoint counts before the result's own, so a long
    one inside and a short one on the result are in order."""
    await load_hosted(doors, anthropic_upstream)
    result: Any = {
        "type": "tool_result",
        "tool_use_id": "t1",
        "content": [{"type": "text", "text": "sun", "cache_control": HOUR}],
        "cache_control": EPHEMERAL,
    }
    messages: Any = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "get_weather", "input": {}}]},
        {"role": "user", "content": [result]},
    ]
    tools: Any = [{"name": "get_weather", "input_schema": {"type": "object"}}]
    async with async_anthropic_client(doors) as client:
        await client.messages.create(model="m", max_tokens=20, tools=tools, messages=messages)
    (sent,) = posts(anthropic_upstream)[-1]["messages"][2]["content"]
    assert (sent["content"], sent["cache_control"]) == ("sun", EPHEMERAL)


EXPLICIT = {"mode": "explicit"}


async def test_door_takes_an_openai_clients_breakpoints_to_anthropic(
    doors: Doors, anthropic_upstream: FakeAnthropic
) -> None:
    """OpenAI's prompt_cache_breakpoint on a part, and the Anthropic-style cache_control that OpenAI-compatible
    gateways take on tools, parts and messages, reach an Anthropic model as cache_control; a part with more text
    after it gives its breakpoint to the message before."""
    await load_hosted(doors, anthropic_upstream)
    tools: Any = [{"type": "function", "function": {"name": "get_time"}, "cache_control": HOUR}]
    messages: Any = [
        {"role": "system", "content": [{"type": "text", "text": "Rules.", "cache_control": EPHEMERAL}]},
        {"role": "user", "content": "Hello.", "cache_control": EPHEMERAL},
        {"role": "assistant", "content": "Hi."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "A document.", "prompt_cache_breakpoint": EXPLICIT},
                {"type": "text", "text": " Its title?"},
            ],
        },
    ]
    async with async_openai_client(doors) as client:
        await client.chat.completions.create(model="m", max_tokens=20, tools=tools, messages=messages)
    body = posts(anthropic_upstream)[-1]
    assert body["tools"][0]["cache_control"] == HOUR
    assert body["system"] == [{"type": "text", "text": "Rules.", "cache_control": EPHEMERAL}]
    hello, hi, question = body["messages"]
    assert hello["content"] == [{"type": "text", "text": "Hello.", "cache_control": EPHEMERAL}]
    assert hi["content"] == [{"type": "text", "text": "Hi.", "cache_control": EPHEMERAL}]  # the document's, moved
    assert question["content"] == [{"type": "text", "text": "A document."}, {"type": "text", "text": " Its title?"}]


async def test_door_sends_an_openai_model_no_breakpoint(doors: Doors, openai_upstream: FakeOpenAI) -> None:
    await load_hosted(doors, openai_upstream)
    marked_part: Any = {"type": "text", "text": "Hello.", "prompt_cache_breakpoint": EXPLICIT}
    async with async_openai_client(doors) as client:
        for content in ("Hello.", [marked_part]):
            await client.chat.completions.create(
                model="m", max_tokens=20, messages=[{"role": "user", "content": content}]
            )
    plain, marked = posts(openai_upstream)[-2:]
    assert marked == plain


@pytest.mark.parametrize(
    ("part", "field"),
    [
        ({"prompt_cache_breakpoint": {"mode": "implicit"}}, "messages.0.content.0.prompt_cache_breakpoint.mode"),
        ({"prompt_cache_breakpoint": {**EXPLICIT, "ttl": "1h"}}, "messages.0.content.0.prompt_cache_breakpoint.ttl"),
        ({"prompt_cache_breakpoint": EXPLICIT, "cache_control": EPHEMERAL}, "messages.0.content.0.prompt_cache"),
    ],
)
async def test_door_refuses_an_openai_breakpoint_it_cannot_read(
    doors: Doors, openai_upstream: FakeOpenAI, part: dict[str, Any], field: str
) -> None:
    await load_hosted(doors, openai_upstream)
    content: Any = [{"type": "text", "text": "a", **part}]
    async with async_openai_client(doors) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.chat.completions.create(
                model="m", max_tokens=20, messages=[{"role": "user", "content": content}]
            )
    assert field in str(refused.value).replace("[", ".").replace("]", "")


@pytest.mark.parametrize(("lifetime", "control"), [("30m", EPHEMERAL), ("12h", HOUR)])
async def test_door_gives_anthropic_the_longest_lifetime_within_openais(
    doors: Doors, anthropic_upstream: FakeAnthropic, lifetime: str, control: dict[str, str]
) -> None:
    await load_hosted(doors, anthropic_upstream)
    part: Any = {"type": "text", "text": "a", "prompt_cache_breakpoint": {**EXPLICIT, "ttl": lifetime}}
    async with async_openai_client(doors) as client:
        await client.chat.completions.create(model="m", max_tokens=20, messages=[{"role": "user", "content": [part]}])
    (sent,) = posts(anthropic_upstream)[-1]["messages"]
    assert sent["content"] == [{"type": "text", "text": "a", "cache_control": control}]
