"""The fake upstreams speak the vendors' wire protocols: the real OpenAI and Anthropic SDKs drive them directly."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterable, AsyncIterator
from typing import TypeVar

import anthropic
import httpx2
import openai
import pytest
from anthropic.types import RawMessageStreamEvent
from openai.types.chat import ChatCompletionChunk

from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script

T = TypeVar("T")

API_KEY = "sk-fake-test"
ANTHROPIC_MODEL = "claude-haiku-4-5"  # one the SDK does not warn about as deprecated
DISCONNECT_TIMEOUT = 5.0
USER_MESSAGE: list[dict[str, str]] = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
async def openai_fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
async def openai_client(openai_fake: FakeOpenAI) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(api_key=API_KEY, base_url=openai_fake.base_url, max_retries=0) as client:
        yield client


@pytest.fixture
async def anthropic_fake() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
async def anthropic_client(anthropic_fake: FakeAnthropic) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(api_key=API_KEY, base_url=anthropic_fake.base_url, max_retries=0) as client:
        yield client


async def open_openai_stream(client: openai.AsyncOpenAI) -> openai.AsyncStream[ChatCompletionChunk]:
    return await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello"}], stream=True
    )


async def open_anthropic_stream(client: anthropic.AsyncAnthropic) -> anthropic.AsyncStream[RawMessageStreamEvent]:
    return await client.messages.create(
        model=ANTHROPIC_MODEL,
        max_tokens=64,
        messages=[{"role": "user", "content": "Say hello"}],
        stream=True,
    )


async def collect_into(items: AsyncIterable[T], into: list[T]) -> None:
    """Appends what `items` yields to `into`, so that what came before a failure stays to be checked."""
    async for item in items:
        into.append(item)


def openai_texts(chunks: list[ChatCompletionChunk]) -> list[str]:
    return [chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices]


def anthropic_texts(events: list[RawMessageStreamEvent]) -> list[str]:
    return [
        event.delta.text for event in events if event.type == "content_block_delta" and event.delta.type == "text_delta"
    ]


# OpenAI


async def test_openai_stream_text_usage_and_finish_reason(
    openai_fake: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    openai_fake.script = Script(chunks=["Hel", "lo", " there"], finish_reason="length", completion_tokens=5)

    stream = await openai_client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Say hello"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]

    assert stream.response.headers["x-request-id"] == "req_fake_123"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert openai_texts(chunks) == ["", "Hel", "lo", " there", ""]
    assert all(chunk.model == "gpt-4o" and chunk.id == chunks[0].id for chunk in chunks)
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == "length"
    assert chunks[-1].choices == []
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (11, 5, 16)

    [recorded] = openai_fake.requests
    assert (recorded.method, recorded.path) == ("POST", "/v1/chat/completions")
    assert recorded.headers["authorization"] == f"Bearer {API_KEY}"
    assert recorded.body is not None
    assert recorded.body["stream"] is True
    assert recorded.body["stream_options"] == {"include_usage": True}
    assert recorded.body["messages"] == USER_MESSAGE


async def test_openai_stream_without_usage_option_sends_no_usage_chunk(
    openai_fake: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    chunks = [chunk async for chunk in await open_openai_stream(openai_client)]

    assert all(chunk.choices and chunk.usage is None for chunk in chunks)
    assert "".join(openai_texts(chunks)) == "Hello, world"
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_openai_delay_spaces_the_chunks(openai_fake: FakeOpenAI, openai_client: openai.AsyncOpenAI) -> None:
    openai_fake.script = Script(chunks=["a", "b", "c"], delay=0.05)
    started = time.monotonic()

    chunks = [chunk async for chunk in await open_openai_stream(openai_client)]

    assert time.monotonic() - started >= 0.1
    assert "".join(openai_texts(chunks)) == "abc"


async def test_openai_non_streamed_completion(openai_fake: FakeOpenAI, openai_client: openai.AsyncOpenAI) -> None:
    openai_fake.script = Script(chunks=["Hi", "!"], prompt_tokens=3)

    completion = await openai_client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello"}]
    )

    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini"
    assert completion.choices[0].message.content == "Hi!"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (3, 2)


@pytest.mark.parametrize(
    ("script", "error_class", "error_type", "error_code"),
    [
        pytest.param(
            Script(status=429, headers={"retry-after": "7"}),
            openai.RateLimitError,
            "requests",
            "rate_limit_exceeded",
            id="429",
        ),
        pytest.param(
            Script(status=400, error_code="context_length_exceeded"),
            openai.BadRequestError,
            "invalid_request_error",
            "context_length_exceeded",
            id="400",
        ),
        pytest.param(
            Script(status=404, error_code="model_not_found"),
            openai.NotFoundError,
            "invalid_request_error",
            "model_not_found",
            id="404",
        ),
        pytest.param(Script(status=500), openai.InternalServerError, "server_error", None, id="500"),
        pytest.param(
            Script(status=503, error_type="service_unavailable_error"),
            openai.InternalServerError,
            "service_unavailable_error",
            None,
            id="503",
        ),
    ],
)
async def test_openai_scripted_status_raises_the_typed_error(
    openai_fake: FakeOpenAI,
    openai_client: openai.AsyncOpenAI,
    script: Script,
    error_class: type[openai.APIStatusError],
    error_type: str,
    error_code: str | None,
) -> None:
    openai_fake.script = script

    with pytest.raises(error_class) as raised:
        await open_openai_stream(openai_client)

    error = raised.value
    assert error.status_code == script.status
    assert error.body == {"message": "scripted failure", "type": error_type, "param": None, "code": error_code}
    assert (error.type, error.code) == (error_type, error_code)
    assert error.request_id == "req_fake_123"
    for name, value in script.headers.items():
        assert error.response.headers[name] == value


async def test_openai_scripted_status_applies_to_model_listing(
    openai_fake: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    openai_fake.script = Script(status=429, headers={"retry-after": "7"})

    with pytest.raises(openai.RateLimitError) as raised:
        await openai_client.models.list()

    assert raised.value.response.headers["retry-after"] == "7"


async def test_openai_wrong_api_key_is_refused(openai_fake: FakeOpenAI, openai_client: openai.AsyncOpenAI) -> None:
    openai_fake.required_api_key = "sk-other"

    with pytest.raises(openai.AuthenticationError) as raised:
        await open_openai_stream(openai_client)

    assert raised.value.code == "invalid_api_key"
    openai_fake.required_api_key = API_KEY
    assert [chunk async for chunk in await open_openai_stream(openai_client)]


async def test_openai_models_list(openai_fake: FakeOpenAI, openai_client: openai.AsyncOpenAI) -> None:
    openai_fake.models = ["gpt-a", "gpt-b", "gpt-c"]

    models = [model async for model in openai_client.models.list()]

    assert [model.id for model in models] == ["gpt-a", "gpt-b", "gpt-c"]
    assert {model.owned_by for model in models} == {"fake"}
    assert openai_fake.requests[-1].path == "/v1/models"


async def test_openai_cut_connection_raises_during_iteration(
    openai_fake: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    openai_fake.script = Script(cut_after=2)
    chunks: list[ChatCompletionChunk] = []

    stream = await open_openai_stream(openai_client)
    with pytest.raises(openai.APIConnectionError) as raised:
        await collect_into(stream, chunks)

    assert isinstance(raised.value.__cause__, httpx2.RemoteProtocolError)
    assert openai_texts(chunks) == ["", "Hello", ","]
    assert openai_fake.disconnects == 0


async def test_openai_malformed_event_raises_a_json_error(
    openai_fake: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    openai_fake.script = Script(malformed_after=1)
    chunks: list[ChatCompletionChunk] = []

    stream = await open_openai_stream(openai_client)
    with pytest.raises(json.JSONDecodeError):
        await collect_into(stream, chunks)

    assert openai_texts(chunks) == ["", "Hello"]


async def test_openai_closing_a_stalled_stream_is_seen_as_a_disconnect(
    openai_fake: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    openai_fake.script = Script(stall_after=1)
    stream = await open_openai_stream(openai_client)
    received = [await anext(stream), await anext(stream)]
    assert openai_texts(received) == ["", "Hello"]
    assert not openai_fake.disconnected.is_set()

    await stream.close()

    await asyncio.wait_for(openai_fake.disconnected.wait(), DISCONNECT_TIMEOUT)
    assert openai_fake.disconnects == 1


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


# Shared mechanics


async def test_stopping_a_fake_ends_a_stalled_stream_without_counting_a_disconnect() -> None:
    fake = FakeAnthropic()
    await fake.start()
    fake.script = Script(stall_after=0)
    async with anthropic.AsyncAnthropic(api_key=API_KEY, base_url=fake.base_url, max_retries=0) as client:
        stream = await open_anthropic_stream(client)
        assert (await anext(stream)).type == "message_start"

        started = time.monotonic()
        await fake.stop()

        assert time.monotonic() - started < DISCONNECT_TIMEOUT
        rest: list[RawMessageStreamEvent] = []
        with pytest.raises((anthropic.APIConnectionError, httpx2.TransportError)):
            await collect_into(stream, rest)
        assert [event.type for event in rest] == ["content_block_start"]  # sent before the stall
    assert (fake.disconnects, fake.disconnected.is_set()) == (0, False)


async def test_fakes_listen_on_distinct_loopback_ports() -> None:
    async with FakeOpenAI() as first, FakeOpenAI() as second:
        assert first.port != second.port
        assert first.base_url == f"http://127.0.0.1:{first.port}/v1"
    with pytest.raises(RuntimeError):
        _ = first.base_url
