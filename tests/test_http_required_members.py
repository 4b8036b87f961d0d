"""The members the OpenAI dialects took without, or took whatever their value, though the API requires them (an outside
fuzzer's findings): a json_schema format's `schema`, which gRPC and the Anthropic dialect refused (an Anthropic
upstream was sent an empty schema); a handed-back thinking block's `type`; a tool's `type`; a content part's `type`,
in every dialect; each a 400 naming the member, before anything goes upstream."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI
from tests.http_door import async_anthropic_client, async_openai_client
from tests.http_fields_support import ANTHROPIC_MESSAGES, OPENAI_MESSAGES, both, last_body, message_of
from warpcore.server.doors import Doors

__all__ = ["both"]  # the fixture, used by name

NO_SCHEMA: dict[str, Any] = {"name": "r", "description": "what it is for"}
_ABSENT = object()


def sent(*upstreams: FakeOpenAI | FakeAnthropic) -> int:
    return sum(len(upstream.requests) for upstream in upstreams)


@pytest.mark.parametrize("model", ["gpt", "claude"])
async def test_a_json_schema_format_without_a_schema_is_refused_in_every_dialect(
    both: Doors, openai_upstream: FakeOpenAI, anthropic_upstream: FakeAnthropic, model: str
) -> None:
    before = sent(openai_upstream, anthropic_upstream)
    chat_format: Any = {"type": "json_schema", "json_schema": NO_SCHEMA}
    responses_format: Any = {"type": "json_schema", **NO_SCHEMA}
    async with async_openai_client(both) as client:
        with pytest.raises(openai.BadRequestError) as chat:
            await client.chat.completions.create(model=model, messages=OPENAI_MESSAGES, response_format=chat_format)
        with pytest.raises(openai.BadRequestError) as responses:
            await client.responses.create(model=model, input="hi", text={"format": responses_format})
    async with async_anthropic_client(both) as anthropic_client:
        with pytest.raises(anthropic.BadRequestError) as messages:
            await anthropic_client.messages.create(
                model=model,
                messages=ANTHROPIC_MESSAGES,
                max_tokens=16,
                extra_body={"output_config": {"format": {"type": "json_schema"}}},
            )
    assert chat.value.param == "response_format.json_schema.schema"
    assert responses.value.param == "text.format.schema"
    assert "needs a schema" in chat.value.message
    assert "needs a schema" in responses.value.message
    assert message_of(messages.value).startswith("output_config.format.schema: ")
    assert sent(openai_upstream, anthropic_upstream) == before


THINKING: dict[str, Any] = {"type": "enabled", "budget_tokens": 1024}


def handed_back(kind: object) -> list[Any]:
    block = {"thinking": "hmm", "signature": "sig"} | ({} if kind is _ABSENT else {"type": kind})
    return [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello", "thinking_blocks": [block]},
        {"role": "user", "content": "more"},
    ]


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ([1, 2], ": must be a string"),
        (5, ": must be a string"),
        (None, " is required"),
        (_ABSENT, " is required"),
        ("a\x00b", ": unknown type 'a\\x00b'; expected thinking or redacted_thinking"),
    ],
    ids=["array", "number", "null", "absent", "unknown"],
)
async def test_a_thinking_block_handed_back_needs_its_type(
    both: Doors, anthropic_upstream: FakeAnthropic, kind: object, words: str
) -> None:
    before = len(anthropic_upstream.requests)
    async with async_openai_client(both) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.chat.completions.create(
                model="claude", max_tokens=2048, messages=handed_back(kind), extra_body={"thinking": THINKING}
            )
    assert refused.value.param == "messages[1].thinking_blocks[0].type"
    assert isinstance(refused.value.body, dict)
    assert refused.value.body["message"] == f"messages[1].thinking_blocks[0].type{words}"
    assert len(anthropic_upstream.requests) == before


async def test_a_thinking_block_of_type_thinking_still_reaches_claude(
    both: Doors, anthropic_upstream: FakeAnthropic
) -> None:
    async with async_openai_client(both) as client:
        await client.chat.completions.create(
            model="claude", max_tokens=2048, messages=handed_back("thinking"), extra_body={"thinking": THINKING}
        )
    blocks = last_body(anthropic_upstream)["messages"][1]["content"]
    assert blocks[0] == {"type": "thinking", "thinking": "hmm", "signature": "sig"}


async def test_a_chat_tool_needs_its_type(both: Doors, openai_upstream: FakeOpenAI) -> None:
    before = len(openai_upstream.requests)
    untyped: Any = [{"function": {"name": "f"}}]
    async with async_openai_client(both) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.chat.completions.create(model="gpt", messages=OPENAI_MESSAGES, tools=untyped)
    assert refused.value.param == "tools[0].type"
    assert isinstance(refused.value.body, dict)
    assert refused.value.body["message"] == "tools[0].type is required"
    assert len(openai_upstream.requests) == before


@pytest.mark.parametrize("kind", [_ABSENT, None], ids=["absent", "null"])
async def test_a_content_part_or_block_needs_its_type_in_every_dialect(
    both: Doors, openai_upstream: FakeOpenAI, anthropic_upstream: FakeAnthropic, kind: object
) -> None:
    before = sent(openai_upstream, anthropic_upstream)
    part: Any = {"text": "hi"} | ({} if kind is _ABSENT else {"type": kind})
    turn: Any = [{"role": "user", "content": [part]}]
    called: Any = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [part]}]},
    ]
    tool: Any = {"name": "f", "input_schema": {"type": "object"}}
    async with async_openai_client(both) as client:
        with pytest.raises(openai.BadRequestError) as chat:
            await client.chat.completions.create(model="gpt", messages=turn)
        with pytest.raises(openai.BadRequestError) as responses:
            await client.responses.create(model="gpt", input=turn)
    async with async_anthropic_client(both) as anthropic_client:
        refusals = []
        for options in ({"messages": turn}, {"messages": ANTHROPIC_MESSAGES, "system": [part]}):
            with pytest.raises(anthropic.BadRequestError) as refused:
                await anthropic_client.messages.create(model="claude", max_tokens=16, **options)
            refusals.append(message_of(refused.value))
        with pytest.raises(anthropic.BadRequestError) as result:
            await anthropic_client.messages.create(model="claude", max_tokens=16, messages=called, tools=[tool])
        refusals.append(message_of(result.value))
    for refusal, path in ((chat, "messages[0].content[0].type"), (responses, "input[0].content[0].type")):
        assert refusal.value.param == path
        assert isinstance(refusal.value.body, dict)
        assert refusal.value.body["message"] == f"{path} is required"  # a sentence, as the domain's read
    # After the path and its colon, words said of it, as the API's "Field required" (a tester's finding: ": is ...")
    assert refusals == [
        "messages[0].content[0].type: required",
        "system[0].type: required",
        "messages[2].content[0].content[0].type: required",
    ]
    assert sent(openai_upstream, anthropic_upstream) == before


async def test_an_anthropic_block_of_another_role_is_named_with_its_article(both: Doors) -> None:
    turns: Any = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "x"}]},
        {"role": "user", "content": "more"},
    ]
    async with async_anthropic_client(both) as client:
        with pytest.raises(anthropic.BadRequestError) as refused:
            await client.messages.create(model="claude", max_tokens=16, messages=turns)
    assert message_of(refused.value) == (
        "messages[1].content[0].type: an assistant block of type 'tool_result' is not supported"
    )
