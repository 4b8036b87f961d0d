"""The fake Anthropic upstream speaks Anthropic's wire protocol, as the real anthropic SDK parses it: stream events, the
stream helper, messages, scripted statuses, the key in either header, error events, cut, malformed or stalled streams,
and model listing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import anthropic
import httpx2
import pytest
from anthropic.types import RawMessageStreamEvent

from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.script import Script
from tests.fakes_support import (
    ANTHROPIC_MODEL,
    API_KEY,
    DISCONNECT_TIMEOUT,
    USER_MESSAGE,
    collect_into,
    open_anthropic_stream,
)


@pytest.fixture
async def anthropic_fake() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
async def anthropic_client(anthropic_fake: FakeAnthropic) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(api_key=API_KEY, base_url=anthropic_fake.base_url, max_retries=0) as client:
        yield client


def anthropic_texts(events: list[RawMessageStreamEvent]) -> list[str]:
    return [
        event.delta.text for event in events if event.type == "content_block_delta" and event.delta.type == "text_delta"
    ]


# Anthropic


async def test_anthropic_stream_events_text_usage_and_stop_reason(
    anthropic_fake: FakeAnthropic, anthropic_client: anthropic.AsyncAnthropic
) -> None:
    anthropic_fake.script = Script(chunks=["Hel", "lo"], prompt_tokens=9, completion_tokens=4)

    stream = await open_anthropic_stream(anthropic_client)
    events = [event async for event in stream]

    assert stream.response.headers["request-id"] == "req_fake_123"
    assert [event.type for event in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]  # the ping between them is consumed by the SDK
    assert anthropic_texts(events) == ["Hel", "lo"]
    start, delta = events[0], events[-2]
    assert start.type == "message_start"
    assert start.message.id.startswith("msg_")
    assert start.message.model == ANTHROPIC_MODEL
    assert start.message.usage.input_tokens == 9
    assert delta.type == "message_delta"
    assert (delta.delta.stop_reason, delta.delta.stop_sequence) == ("end_turn", None)
    assert delta.usage.output_tokens == 4

    [recorded] = anthropic_fake.requests
    assert (recorded.method, recorded.path) == ("POST", "/v1/messages")
    assert recorded.headers["anthropic-version"]
    assert recorded.body is not None
    assert (recorded.body["stream"], recorded.body["max_tokens"]) == (True, 64)
    assert recorded.body["messages"] == USER_MESSAGE


async def test_anthropic_stream_helper_accumulates_the_message(
    anthropic_fake: FakeAnthropic, anthropic_client: anthropic.AsyncAnthropic
) -> None:
    anthropic_fake.script = Script(chunks=["one", " two", "###"], finish_reason="stop_sequence", stop_sequence="###")

    async with anthropic_client.messages.stream(
        model=ANTHROPIC_MODEL, max_tokens=64, messages=[{"role": "user", "content": "Count"}]
    ) as stream:
        texts = [text async for text in stream.text_stream]
        message = await stream.get_final_message()

    assert texts == ["one", " two", "###"]
    assert message.content[0].type == "text"
    assert message.content[0].text == "one two###"
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "###")
    assert (message.usage.input_tokens, message.usage.output_tokens) == (11, 3)


async def test_anthropic_non_streamed_message(
    anthropic_fake: FakeAnthropic, anthropic_client: anthropic.AsyncAnthropic
) -> None:
    anthropic_fake.script = Script(chunks=["Hi", "!"], finish_reason="max_tokens")

    message = await anthropic_client.messages.create(
        model=ANTHROPIC_MODEL, max_tokens=2, messages=[{"role": "user", "content": "Say hello"}]
    )

    assert message.type == "message"
    assert message.content[0].type == "text"
    assert message.content[0].text == "Hi!"
    assert message.stop_reason == "max_tokens"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (11, 2)


@pytest.mark.parametrize(
    ("status", "error_class", "error_type"),
    [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (401, anthropic.AuthenticationError, "authentication_error"),
        (403, anthropic.PermissionDeniedError, "permission_error"),
        (404, anthropic.NotFoundError, "not_found_error"),
        (413, anthropic.ContentTooLargeError, "request_too_large"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
    ],
)
async def test_anthropic_scripted_status_raises_the_typed_error(
    anthropic_fake: FakeAnthropic,
    anthropic_client: anthropic.AsyncAnthropic,
    status: int,
    error_class: type[anthropic.APIStatusError],
    error_type: str,
) -> None:
    anthropic_fake.script = Script(status=status, headers={"retry-after": "3"})

    with pytest.raises(error_class) as raised:
        await open_anthropic_stream(anthropic_client)

    error = raised.value
    assert error.status_code == status
    assert error.body == {
        "type": "error",
        "error": {"type": error_type, "message": "scripted failure"},
        "request_id": "req_fake_123",
    }
    assert error.request_id == "req_fake_123"
    assert error.response.headers["retry-after"] == "3"


async def test_anthropic_api_key_is_checked_in_either_header(anthropic_fake: FakeAnthropic) -> None:
    anthropic_fake.required_api_key = "sk-right"
    models_url = f"{anthropic_fake.base_url}/v1/models"

    async with anthropic.AsyncAnthropic(api_key="sk-wrong", base_url=anthropic_fake.base_url, max_retries=0) as client:
        with pytest.raises(anthropic.AuthenticationError):
            await client.models.list()
    async with httpx2.AsyncClient() as http:
        accepted = await http.get(models_url, headers={"x-api-key": "sk-right"})
        refused = await http.get(models_url, headers={"x-api-key": "sk-wrong"})
        bearer = await http.get(models_url, headers={"authorization": "Bearer sk-right"})

    assert (accepted.status_code, refused.status_code, bearer.status_code) == (200, 401, 200)
    assert refused.json()["error"]["type"] == "authentication_error"
    assert refused.headers["request-id"] == "req_fake_123"


async def test_anthropic_error_event_raises_during_iteration(
    anthropic_fake: FakeAnthropic, anthropic_client: anthropic.AsyncAnthropic
) -> None:
    anthropic_fake.script = Script(error_event_after=2)
    events: list[RawMessageStreamEvent] = []

    stream = await open_anthropic_stream(anthropic_client)
    with pytest.raises(anthropic.APIStatusError) as raised:
        await collect_into(stream, events)

    assert anthropic_texts(events) == ["Hello", ","]
    assert raised.value.status_code == 200  # the HTTP status of the stream that carried the event
    assert raised.value.body == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


async def test_anthropic_cut_connection_raises_during_iteration(
    anthropic_fake: FakeAnthropic, anthropic_client: anthropic.AsyncAnthropic
) -> None:
    anthropic_fake.script = Script(cut_after=1)
    events: list[RawMessageStreamEvent] = []

    # The SDK's stream lets the transport error through unwrapped (httpx2.RemoteProtocolError).
    stream = await open_anthropic_stream(anthropic_client)
    with pytest.raises((anthropic.APIConnectionError, httpx2.TransportError)):
        await collect_into(stream, events)

    assert anthropic_texts(events) == ["Hello"]
    assert events[-1].type == "content_block_delta"
    assert anthropic_fake.disconnects == 0


async def test_anthropic_malformed_event_raises_a_json_error(
    anthropic_fake: FakeAnthropic, anthropic_client: anthropic.AsyncAnthropic
) -> None:
    anthropic_fake.script = Script(malformed_after=0)
    events: list[RawMessageStreamEvent] = []

    stream = await open_anthropic_stream(anthropic_client)
    with pytest.raises(json.JSONDecodeError):
        await collect_into(stream, events)

    assert [event.type for event in events] == ["message_start", "content_block_start"]


async def test_anthropic_leaving_a_stalled_stream_is_seen_as_a_disconnect(
    anthropic_fake: FakeAnthropic, anthropic_client: anthropic.AsyncAnthropic
) -> None:
    anthropic_fake.script = Script(stall_after=2)

    async with anthropic_client.messages.stream(
        model=ANTHROPIC_MODEL, max_tokens=64, messages=[{"role": "user", "content": "Say hello"}]
    ) as stream:
        text_stream = stream.text_stream
        assert [await anext(text_stream), await anext(text_stream)] == ["Hello", ","]
        assert not anthropic_fake.disconnected.is_set()

    await asyncio.wait_for(anthropic_fake.disconnected.wait(), DISCONNECT_TIMEOUT)
    assert anthropic_fake.disconnects == 1


async def test_anthropic_models_list(anthropic_fake: FakeAnthropic, anthropic_client: anthropic.AsyncAnthropic) -> None:
    models = [model async for model in anthropic_client.models.list()]

    assert [(model.id, model.display_name) for model in models] == [
        ("claude-sonnet-4-5", "Claude Sonnet 4.5"),
        ("claude-haiku-4-5", "Claude Haiku 4.5"),
    ]
    assert {model.type for model in models} == {"model"}
    assert anthropic_fake.requests[-1].path == "/v1/models"
