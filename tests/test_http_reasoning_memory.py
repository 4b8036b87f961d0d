"""The HTTP door's reasoning memory (http/reasoning_memory.py): the signed thinking a Claude model gave with its tool
calls goes back upstream with the next turn of an OpenAI Chat Completions client that dropped it, and only then: the
same calls (ids, order and count), the same model, thinking asked for again. An outside tester found it put into an
Anthropic client's turn that had only its first call's id in common, with thinking off, unasked. The real SDKs
against the door and a scripted Anthropic upstream; what the upstream received is read from its wire format."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.script import Script
from tests.http_door import async_anthropic_client, async_openai_client, load_hosted
from tests.http_fields_support import both, last_body
from warpcore.server.doors import Doors

__all__ = ["both"]  # the fixture, used by name

THINKING: Any = {"type": "enabled", "budget_tokens": 1024}
SIGNED = [
    {"type": "thinking", "thinking": "First the time.", "signature": "S1"},
    {"type": "thinking", "thinking": "Then again.", "signature": "S2"},
]
CLOCK_SCHEMA = {"type": "object", "properties": {}}
OPENAI_TOOLS: Any = [{"type": "function", "function": {"name": "get_time", "parameters": CLOCK_SCHEMA}}]
ANTHROPIC_TOOLS: Any = [{"name": "get_time", "input_schema": CLOCK_SCHEMA}]
RESPONSES_TOOLS: Any = [{"type": "function", "name": "get_time", "parameters": CLOCK_SCHEMA, "strict": False}]
SUMMARY: Any = {"effort": "high", "summary": "auto"}  # what asks a Claude model to think on the Responses route
QUESTION = "What time is it, twice?"


def thought_and_called(upstream: FakeAnthropic) -> None:
    """The upstream's next answer: thinking, a call, more thinking, another call (interleaved thinking)."""
    events: list[dict[str, Any]] = []
    for index, (block, call_id) in enumerate(zip(SIGNED, ["toolu_a", "toolu_b"], strict=True)):
        at, start = 2 * index, {"type": "thinking", "thinking": "", "signature": ""}
        deltas = [
            {"type": "thinking_delta", "thinking": block["thinking"]},
            {"type": "signature_delta", "signature": block["signature"]},
        ]
        events.append({"type": "content_block_start", "index": at, "content_block": start})
        events += [{"type": "content_block_delta", "index": at, "delta": delta} for delta in deltas]
        call = {"type": "tool_use", "id": call_id, "name": "get_time", "input": {}}
        events += [
            {"type": "content_block_stop", "index": at},
            {"type": "content_block_start", "index": at + 1, "content_block": call},
            {"type": "content_block_stop", "index": at + 1},
        ]
    upstream.script = Script(events=events, finish_reason="tool_use")


async def openai_answer_with_calls(doors: Doors, upstream: FakeAnthropic, stream: bool = False) -> None:
    """An OpenAI client's request that Claude answers with thinking and calls, which the client gets, signed."""
    thought_and_called(upstream)
    options: dict[str, Any] = {"model": "claude", "max_tokens": 2000, "tools": OPENAI_TOOLS}
    options["messages"], options["extra_body"] = [{"role": "user", "content": QUESTION}], {"thinking": THINKING}
    async with async_openai_client(doors) as client:
        if stream:
            async with client.chat.completions.stream(**options) as streamed:
                message = (await streamed.get_final_completion()).choices[0].message
        else:
            message = (await client.chat.completions.create(**options)).choices[0].message
    assert [call.id for call in message.tool_calls or []] == ["toolu_a", "toolu_b"]
    blocks = message.model_dump(exclude_none=True)["thinking_blocks"]
    assert [{k: v for k, v in block.items() if k != "index"} for block in blocks] == SIGNED


async def openai_next_turn(
    doors: Doors, upstream: FakeAnthropic, call_ids: list[str], model: str = "claude", **extra: Any
) -> list[dict[str, Any]]:
    """The blocks of the assistant turn the upstream received, when an OpenAI client hands back calls `call_ids`
    without their thinking, with their results."""
    upstream.script = Script(chunks=["It is noon."])
    calls = [
        {"id": call_id, "type": "function", "function": {"name": "get_time", "arguments": "{}"}} for call_id in call_ids
    ]
    messages: Any = [
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": None, "tool_calls": calls},
        *({"role": "tool", "tool_call_id": call_id, "content": "12:00"} for call_id in call_ids),
    ]
    async with async_openai_client(doors) as client:
        await client.chat.completions.create(
            model=model, max_tokens=2000, tools=OPENAI_TOOLS, messages=messages, extra_body=extra
        )
    blocks: list[dict[str, Any]] = last_body(upstream)["messages"][1]["content"]
    return blocks


def thinking_of(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [block for block in blocks if block["type"] == "thinking"]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_an_openai_client_that_drops_the_thinking_of_its_calls_gets_it_back_upstream(
    both: Doors, anthropic_upstream: FakeAnthropic, stream: bool
) -> None:
    await openai_answer_with_calls(both, anthropic_upstream, stream)
    blocks = await openai_next_turn(both, anthropic_upstream, ["toolu_a", "toolu_b"], thinking=THINKING)
    assert thinking_of(blocks) == SIGNED
    assert [block["id"] for block in blocks if block["type"] == "tool_use"] == ["toolu_a", "toolu_b"]


async def anthropic_next_turn(
    doors: Doors, upstream: FakeAnthropic, call_ids: list[str], thinking: Any
) -> list[dict[str, Any]]:
    """The blocks of the assistant turn the upstream received, when an Anthropic client hands back text and calls
    `call_ids` (the tester's turn), with no thinking, and their results."""
    upstream.script = Script(chunks=["ok"])
    turn: list[Any] = [{"type": "text", "text": "A"}]
    turn += [{"type": "tool_use", "id": call_ids[0], "name": "get_time", "input": {}}, {"type": "text", "text": "B"}]
    turn += [{"type": "tool_use", "id": call_ids[1], "name": "get_time", "input": {}}]
    results: Any = [{"type": "tool_result", "tool_use_id": call_id, "content": "12:00"} for call_id in call_ids]
    messages: Any = [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": turn},
        {"role": "user", "content": results},
    ]
    extra = {} if thinking is None else {"thinking": thinking}
    async with async_anthropic_client(doors) as client:
        await client.messages.create(model="claude", max_tokens=2000, tools=ANTHROPIC_TOOLS, messages=messages, **extra)
    blocks: list[dict[str, Any]] = last_body(upstream)["messages"][1]["content"]
    return blocks


@pytest.mark.parametrize(
    ("call_ids", "thinking"),
    [(["toolu_a", "toolu_zz"], None), (["toolu_a", "toolu_b"], THINKING)],
    ids=["first-id-thinking-off", "same-ids-thinking-on"],
)
async def test_an_anthropic_clients_turn_goes_as_the_client_sent_it(
    both: Doors, anthropic_upstream: FakeAnthropic, call_ids: list[str], thinking: Any
) -> None:
    """The tester's case: an Anthropic client's turn shares its first call's id with an answer remembered, and thinking
    is off; and the very calls of that answer with thinking on. Its client hands back the thinking it means to (here
    none): the upstream gets the turn it would get had nothing been remembered."""
    unremembered = await anthropic_next_turn(both, anthropic_upstream, call_ids, thinking)
    assert thinking_of(unremembered) == []
    await openai_answer_with_calls(both, anthropic_upstream)
    assert await anthropic_next_turn(both, anthropic_upstream, call_ids, thinking) == unremembered


async def test_a_responses_clients_calls_get_no_remembered_thinking(
    both: Doors, anthropic_upstream: FakeAnthropic
) -> None:
    """A Responses client hands its reasoning back in `reasoning` items (encrypted_content holds the signature): a
    turn it sends without them stays without them."""
    await openai_answer_with_calls(both, anthropic_upstream)
    anthropic_upstream.script = Script(chunks=["ok"])
    calls: Any = [
        {"type": "function_call", "call_id": call_id, "name": "get_time", "arguments": "{}"}
        for call_id in ("toolu_a", "toolu_b")
    ]
    outputs: Any = [{"type": "function_call_output", "call_id": c["call_id"], "output": "12:00"} for c in calls]
    async with async_openai_client(both) as client:
        await client.responses.create(
            model="claude",
            input=[{"role": "user", "content": QUESTION}, *calls, *outputs],
            tools=RESPONSES_TOOLS,
            reasoning=SUMMARY,
            max_output_tokens=2000,
        )
    assert thinking_of(last_body(anthropic_upstream)["messages"][1]["content"]) == []


@pytest.mark.parametrize("route", ["messages", "responses"])
async def test_the_thinking_other_routes_hand_out_is_not_remembered(
    both: Doors, anthropic_upstream: FakeAnthropic, route: str
) -> None:
    """Their clients get it in a field of their API, to hand back as they see fit."""
    thought_and_called(anthropic_upstream)
    question: Any = [{"role": "user", "content": QUESTION}]
    if route == "messages":
        async with async_anthropic_client(both) as anthropic_client:
            message = await anthropic_client.messages.create(
                model="claude", max_tokens=2000, tools=ANTHROPIC_TOOLS, messages=question, thinking=THINKING
            )
        calls = [block.id for block in message.content if block.type == "tool_use"]
    else:
        async with async_openai_client(both) as openai_client:
            response = await openai_client.responses.create(
                model="claude", max_output_tokens=2000, input=question, tools=RESPONSES_TOOLS, reasoning=SUMMARY
            )
        calls = [item.call_id for item in response.output if item.type == "function_call"]
    assert calls == ["toolu_a", "toolu_b"]
    blocks = await openai_next_turn(both, anthropic_upstream, ["toolu_a", "toolu_b"], thinking=THINKING)
    assert thinking_of(blocks) == []


@pytest.mark.parametrize(
    "call_ids",
    [["toolu_a", "toolu_zz"], ["toolu_a"], ["toolu_b", "toolu_a"], ["toolu_a", "toolu_b", "toolu_c"]],
    ids=["another-second", "fewer", "reordered", "more"],
)
async def test_only_the_very_calls_of_the_answer_get_its_thinking_back(
    both: Doors, anthropic_upstream: FakeAnthropic, call_ids: list[str]
) -> None:
    await openai_answer_with_calls(both, anthropic_upstream)
    assert thinking_of(await openai_next_turn(both, anthropic_upstream, call_ids, thinking=THINKING)) == []


async def test_the_thinking_goes_back_to_the_model_that_gave_it_only(
    both: Doors, anthropic_upstream: FakeAnthropic
) -> None:
    await load_hosted(both, anthropic_upstream, "claude-again")  # the same upstream model under another id
    await openai_answer_with_calls(both, anthropic_upstream)
    calls = ["toolu_a", "toolu_b"]
    blocks = await openai_next_turn(both, anthropic_upstream, calls, model="claude-again", thinking=THINKING)
    assert thinking_of(blocks) == []


@pytest.mark.parametrize(
    "extra", [{}, {"thinking": {"type": "disabled"}}, {"reasoning_effort": "none"}], ids=["unset", "disabled", "none"]
)
async def test_a_turn_that_asks_no_thinking_gets_none_back(
    both: Doors, anthropic_upstream: FakeAnthropic, extra: dict[str, Any]
) -> None:
    await openai_answer_with_calls(both, anthropic_upstream)
    assert thinking_of(await openai_next_turn(both, anthropic_upstream, ["toolu_a", "toolu_b"], **extra)) == []
