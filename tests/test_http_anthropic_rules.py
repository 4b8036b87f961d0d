"""What Anthropic's API refuses, the door's Messages route refuses too, whatever the backend: code that works against
warpcore then works against the API. Tool results after a turn's other blocks, empty content, a text block empty or
only whitespace (in a message, the system prompt or a tool result), whitespace-only stop sequences, a prefill ending in
whitespace, a temperature above the API's 1, and the shapes of the ignored `service_tier` and `metadata` are each a
400 `invalid_request_error` whose message begins with the field's path; its range refusals and tool choice read in its
own words. The real anthropic SDK against a model on the fake OpenAI upstream."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from tests.conftest import TINY_MODEL
from tests.fakes.openai_api import FakeOpenAI
from tests.http_door import (
    anthropic_messages,
    async_anthropic_client,
    async_openai_client,
    load_hosted,
    openai_messages,
)
from tests.http_fields_support import last_body, message_of
from warpcore.server.core.domain import BackendKind, LoadSpec
from warpcore.server.doors import Doors

HI = {"role": "user", "content": "hi"}
TOOLS = [{"name": "f", "input_schema": {"type": "object"}}]
CALLED = {"role": "assistant", "content": [{"type": "tool_use", "id": "c1", "name": "f", "input": {}}]}
RESULT = {"type": "tool_result", "tool_use_id": "c1", "content": "42"}
HERE = {"type": "text", "text": "here:"}
BLANK = {"type": "text", "text": ""}
SPACES = {"type": "text", "text": " \n"}


def results(*blocks: object) -> dict[str, object]:
    """A conversation whose last user turn is a tool result holding `blocks`."""
    result = {**RESULT, "content": list(blocks)}
    return {"messages": [HI, CALLED, {"role": "user", "content": [result]}], "tools": TOOLS}


@pytest.fixture
async def gpt(doors: Doors, openai_upstream: FakeOpenAI) -> Doors:
    await load_hosted(doors, openai_upstream, "gpt")
    return doors


async def create(doors: Doors, **options: Any) -> anthropic.types.Message:
    async with async_anthropic_client(doors) as client:
        message: anthropic.types.Message = await client.messages.create(
            **{"model": "gpt", "messages": [HI], "max_tokens": 10, **options}
        )
        return message


@pytest.mark.parametrize(
    ("options", "begins"),
    [
        # The API wants a turn's tool results first; after its text they were moved before it, unsaid.
        (
            {"messages": [HI, CALLED, {"role": "user", "content": [HERE, RESULT]}], "tools": TOOLS},
            "messages[2].content[1]: ",
        ),
        ({"messages": [{"role": "user", "content": ""}]}, "messages[0].content: "),
        ({"messages": [{"role": "user", "content": []}]}, "messages[0].content: "),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]}, "messages[0].content[0].text: "),
        (
            {"messages": [{"role": "user", "content": [HERE, {"type": "text", "text": " \n"}]}]},
            "messages[0].content[1].text: ",
        ),
        ({"messages": [HI, {"role": "assistant", "content": []}, HI]}, "messages[1].content: "),
        ({"messages": [HI, {"role": "assistant", "content": ""}, HI]}, "messages[1].content: "),
        # Its text blocks are refused empty or only whitespace wherever they are: "text content blocks must be
        # non-empty", "... must contain non-whitespace text".
        ({"system": [BLANK]}, "system[0].text: must not be empty"),
        ({"system": [HERE, SPACES]}, "system[1].text: must hold text other than whitespace"),
        (results(BLANK), "messages[2].content[0].content[0].text: must not be empty"),
        (results(HERE, SPACES), "messages[2].content[0].content[1].text: must hold text other than whitespace"),
        # Its temperature goes from 0 to 1, where OpenAI's (and gRPC's) go to 2.
        ({"extra_body": {"temperature": 1.5}}, "temperature: must be between 0 and 1"),
        ({"extra_body": {"temperature": 1.0001}}, "temperature: must be between 0 and 1"),
        ({"extra_body": {"temperature": -0.5}}, "temperature: must be between 0 and 1"),
        ({"stop_sequences": ["  "]}, "stop_sequences: "),
        ({"stop_sequences": ["END", "\n"]}, "stop_sequences: "),
        ({"service_tier": "bogus"}, "service_tier: "),
        ({"service_tier": 1}, "service_tier: "),
        ({"metadata": {"foo": "bar"}}, "metadata.foo: "),
        ({"metadata": {"user_id": 123}}, "metadata.user_id: "),
        ({"metadata": {"user_id": "u" * 257}}, "metadata.user_id: "),
        ({"metadata": "u1"}, "metadata: "),
    ],
)
async def test_what_the_api_refuses_is_a_400_naming_it_before_anything_is_sent(
    gpt: Doors, openai_upstream: FakeOpenAI, options: dict[str, object], begins: str
) -> None:
    sent = len(openai_upstream.requests)
    with pytest.raises(anthropic.BadRequestError) as refused:
        await create(gpt, **options)
    assert isinstance(refused.value.body, dict)
    assert refused.value.body["error"]["type"] == "invalid_request_error"
    assert message_of(refused.value).startswith(begins), message_of(refused.value)
    assert len(openai_upstream.requests) == sent


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"max_tokens": 0}, "max_tokens: must be between 1 and "),
        # This SDK's create() takes neither: sent as extra_body, as its clients send them.
        ({"extra_body": {"temperature": 3}}, "temperature: must be between 0 and 1"),
        ({"extra_body": {"top_k": 0}}, "top_k: must be between 1 and "),
        # OpenAI's name of the forced choice, required, is not said to an Anthropic client.
        ({"tool_choice": {"type": "any"}}, "tool_choice: forcing a tool call needs tools"),
        (
            {"messages": [{"role": "user", "content": [{"type": "search_result", "source": "s", "title": "t"}]}]},
            "messages[0].content[0].type: a user block of type 'search_result' is not supported",
        ),
    ],
)
async def test_refusals_read_in_the_apis_words(gpt: Doors, options: dict[str, object], says: str) -> None:
    with pytest.raises(anthropic.BadRequestError) as refused:
        await create(gpt, **options)
    assert message_of(refused.value).startswith(says), message_of(refused.value)


async def test_what_the_api_takes_goes_on_and_the_ignored_fields_stay_behind(
    gpt: Doors, openai_upstream: FakeOpenAI
) -> None:
    await create(
        gpt,
        messages=[HI, CALLED, {"role": "user", "content": [RESULT, HERE]}],
        tools=TOOLS,
        stop_sequences=[" END"],
        service_tier="standard_only",
        metadata={"user_id": "u" * 256},
    )
    body = last_body(openai_upstream)
    assert [message["role"] for message in body["messages"]] == ["user", "assistant", "tool", "user"]
    assert body["stop"] == [" END"]
    assert not {"service_tier", "metadata", "user", "safety_identifier"} & set(body)
    await create(gpt, service_tier="auto", metadata={"user_id": None})
    assert not {"service_tier", "metadata", "user"} & set(last_body(openai_upstream))


@pytest.mark.parametrize("temperature", [0, 0.5, 1])
async def test_a_temperature_the_api_takes_goes_on(gpt: Doors, openai_upstream: FakeOpenAI, temperature: float) -> None:
    await create(gpt, extra_body={"temperature": temperature})
    assert last_body(openai_upstream)["temperature"] == temperature


async def test_the_openai_dialect_keeps_its_temperatures_up_to_2(gpt: Doors, openai_upstream: FakeOpenAI) -> None:
    async with async_openai_client(gpt) as client:
        await client.chat.completions.create(model="gpt", messages=openai_messages(), max_tokens=10, temperature=1.5)
    assert last_body(openai_upstream)["temperature"] == 1.5


@pytest.mark.parametrize("content", ["", [], [HERE]])
async def test_a_tool_result_may_be_empty_as_the_api_allows(
    gpt: Doors, openai_upstream: FakeOpenAI, content: object
) -> None:
    """Empty content says the tool gave nothing back; only a text block in it must hold text."""
    await create(gpt, messages=[HI, CALLED, {"role": "user", "content": [{**RESULT, "content": content}]}], tools=TOOLS)
    assert [message["role"] for message in last_body(openai_upstream)["messages"]] == ["user", "assistant", "tool"]


@pytest.mark.parametrize(
    ("options", "begins"),
    [
        ({"extra_body": {"temperature": 1.5}}, "temperature: must be between 0 and 1"),
        ({"system": [BLANK]}, "system[0].text: must not be empty"),
        (results(SPACES), "messages[2].content[0].content[0].text: must hold text other than whitespace"),
    ],
)
async def test_count_tokens_refuses_them_as_messages_does(doors: Doors, options: dict[str, Any], begins: str) -> None:
    """Clients send count_tokens what they send messages.create: the same body, the same refusals."""
    await doors.engine.load(LoadSpec("tiny", BackendKind.LLAMA_CPP, TINY_MODEL, None, None))
    async with async_anthropic_client(doors) as client:
        counted = await client.messages.count_tokens(
            model="tiny", messages=anthropic_messages(), extra_body={"temperature": 1}
        )
        assert counted.input_tokens > 0
        with pytest.raises(anthropic.BadRequestError) as refused:
            await client.messages.count_tokens(**{"model": "tiny", "messages": anthropic_messages(), **options})
    assert message_of(refused.value).startswith(begins), message_of(refused.value)


@pytest.mark.parametrize(
    ("prefill", "refused"),
    [
        ("Sure", None),
        ([{"type": "text", "text": "Sure"}], None),
        ("", None),  # the one message the API lets be empty
        ([], None),
        ("Sure ", "messages[1].content: "),
        ([{"type": "text", "text": "Sure\n"}], "messages[1].content[0].text: "),
    ],
)
async def test_a_last_assistant_message_is_continued_unless_it_ends_in_whitespace(
    doors: Doors, prefill: object, refused: str | None
) -> None:
    """The API's prefill, which a local model continues: "final assistant content cannot end with trailing
    whitespace"."""
    await doors.engine.load(LoadSpec("tiny", BackendKind.LLAMA_CPP, TINY_MODEL, None, None))
    options = {"model": "tiny", "messages": [HI, {"role": "assistant", "content": prefill}], "max_tokens": 3}
    if refused is None:
        assert (await create(doors, **options)).stop_reason == "max_tokens"
        return
    with pytest.raises(anthropic.BadRequestError) as failure:
        await create(doors, **options)
    assert message_of(failure.value).startswith(refused), message_of(failure.value)
