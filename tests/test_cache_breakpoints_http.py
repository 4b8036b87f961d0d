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


@pytest.mark.parametrize(("ttl", "control"), [(None, EPHEMERAL), ("5m", EPHEMERAL), ("1h", HOUR)])
async def test_door_keeps_a_breakpoint_within_a_turn_on_its_block(
    doors: Doors, anthropic_upstream: FakeAnthropic, ttl: str | None, control: dict[str, str]
) -> None:
    """A document with the question after it in the same turn, and nothing before it (no system prompt, no tools):
    the breakpoint stays on the document's block, as a gRPC part's does, rather than being lost."""
    await load_hosted(doors, anthropic_upstream)
    cache_control = {"type": "ephemeral", **({"ttl": ttl} if ttl else {})}
    content = document_and_question({"cache_control": cache_control})
    async with async_anthropic_client(doors) as client:
        await client.messages.create(model="m", max_tokens=20, messages=[{"role": "user", "content": content}])
    (sent,) = posts(anthropic_upstream)[-1]["messages"]
    assert sent["content"] == document_and_question({"cache_control": control})


def document_and_question(marker: dict[str, Any]) -> Any:
    """A document's text block marked by `marker`, then the question about it: the common way to cache a document."""
    return [{"type": "text", "text": "A document.", **marker}, {"type": "text", "text": " Its title?"}]


async def test_door_keeps_breakpoints_within_a_tool_result_on_their_blocks(
    doors: Doors, anthropic_upstream: FakeAnthropic
) -> None:
    await load_hosted(doors, anthropic_upstream)
    result: Any = {
        "type": "tool_result",
        "tool_use_id": "t1",
        "content": [{"type": "text", "text": "sun", "cache_control": HOUR}, {"type": "text", "text": "wind"}],
    }
    messages: Any = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "get_weather", "input": {}}]},
        {"role": "user", "content": [result, {"type": "text", "text": "Thanks."}]},
    ]
    tools: Any = [{"name": "get_weather", "input_schema": {"type": "object"}}]
    async with async_anthropic_client(doors) as client:
        await client.messages.create(model="m", max_tokens=20, tools=tools, messages=messages)
    sent, thanks = posts(anthropic_upstream)[-1]["messages"][2]["content"]
    sun = {"type": "text", "text": "sun", "cache_control": HOUR}
    assert (sent["content"], "cache_control" in sent) == ([sun, {"type": "text", "text": "wind"}], False)
    assert thanks == {"type": "text", "text": "Thanks."}


async def test_door_moves_a_breakpoint_the_domain_has_no_place_for_to_one_before_it(
    doors: Doors, anthropic_upstream: FakeAnthropic
) -> None:
    """A system block with more system text after it (the system prompt is one text, joined by blank lines): the
    breakpoint goes to the place before it, the last tool, never after the text that follows."""
    await load_hosted(doors, anthropic_upstream)
    system: Any = [{"type": "text", "text": "Rules.", "cache_control": EPHEMERAL}, {"type": "text", "text": "Today."}]
    tools: Any = [{"name": "get_time", "input_schema": {"type": "object"}}]
    async with async_anthropic_client(doors) as client:
        await client.messages.create(model="m", max_tokens=20, tools=tools, system=system, messages=[USER_TURN])
    body = posts(anthropic_upstream)[-1]
    assert body["system"] == "Rules.\n\nToday."
    assert body["tools"][0]["cache_control"] == EPHEMERAL


async def test_door_refuses_a_breakpoint_with_no_place_before_it(
    doors: Doors, anthropic_upstream: FakeAnthropic
) -> None:
    """The same system blocks without tools: nothing comes before them to take the breakpoint, which is refused
    naming it rather than dropped."""
    await load_hosted(doors, anthropic_upstream)
    system: Any = [{"type": "text", "text": "Rules.", "cache_control": EPHEMERAL}, {"type": "text", "text": "Today."}]
    before = len(posts(anthropic_upstream))
    async with async_anthropic_client(doors) as client:
        with pytest.raises(anthropic.BadRequestError) as refused:
            await client.messages.create(model="m", max_tokens=20, system=system, messages=[USER_TURN])
    assert refused.value.body["error"]["message"].startswith("system[0].cache_control: ")  # type: ignore[index]
    assert len(posts(anthropic_upstream)) == before


USER_TURN: Any = {"role": "user", "content": "Hello."}


@pytest.mark.parametrize(
    ("cache_control", "extra", "field"),
    [
        ({"type": "persistent"}, {}, "messages.0.content.0.cache_control.type"),
        ({"type": "ephemeral", "ttl": "2h"}, {}, "messages.0.content.0.cache_control.ttl"),
        (HOUR, {"system": [{"type": "text", "text": "s", "cache_control": EPHEMERAL}]}, "messages.0.content.0"),
        (
            EPHEMERAL,
            {
                "tools": [
                    {"name": f"t{n}", "input_schema": {"type": "object"}, "cache_control": EPHEMERAL} for n in range(3)
                ],
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
    gateways take on tools, parts and messages, reach an Anthropic model as cache_control, a part with more text
    after it on its own block."""
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
    assert hi["content"] == "Hi."
    document = {"type": "text", "text": "A document.", "cache_control": EPHEMERAL}
    assert question["content"] == [document, {"type": "text", "text": " Its title?"}]


@pytest.mark.parametrize(
    ("marker", "control"),
    [
        ({"cache_control": EPHEMERAL}, EPHEMERAL),
        ({"cache_control": {"type": "ephemeral", "ttl": "5m"}}, EPHEMERAL),
        ({"cache_control": HOUR}, HOUR),
        ({"prompt_cache_breakpoint": {**EXPLICIT, "ttl": "12h"}}, HOUR),
    ],
)
async def test_door_keeps_an_openai_parts_breakpoint_on_its_block(
    doors: Doors, anthropic_upstream: FakeAnthropic, marker: dict[str, Any], control: dict[str, str]
) -> None:
    """A document part with the question after it, in the only message: nothing comes before it, and the breakpoint
    reaches Anthropic on the document's block."""
    await load_hosted(doors, anthropic_upstream)
    content = document_and_question(marker)
    async with async_openai_client(doors) as client:
        await client.chat.completions.create(model="m", max_tokens=20, messages=[{"role": "user", "content": content}])
    (sent,) = posts(anthropic_upstream)[-1]["messages"]
    assert sent["content"] == document_and_question({"cache_control": control})


async def test_door_refuses_an_openai_breakpoint_with_no_place_before_it(
    doors: Doors, anthropic_upstream: FakeAnthropic
) -> None:
    """A system message's parts are one text: a breakpoint on a part with more after it, with nothing before the
    message to take it, is refused naming it."""
    await load_hosted(doors, anthropic_upstream)
    rules: Any = {"type": "text", "text": "Rules.", "cache_control": EPHEMERAL}
    system: Any = {"role": "system", "content": [rules, {"type": "text", "text": "Today."}]}
    async with async_openai_client(doors) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.chat.completions.create(
                model="m", max_tokens=20, messages=[system, {"role": "user", "content": "Hello."}]
            )
    assert refused.value.param == "messages[0].content[0].cache_control"


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
