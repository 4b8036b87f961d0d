"""The fake OpenAI upstream speaks OpenAI's wire protocol, as the real openai SDK parses it: streams, usage, delays,
completions, scripted statuses, the key, model listing, and cut, malformed or stalled streams."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletionChunk

from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.fakes_support import API_KEY, DISCONNECT_TIMEOUT, USER_MESSAGE, collect_into


@pytest.fixture
async def openai_fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
async def openai_client(openai_fake: FakeOpenAI) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(api_key=API_KEY, base_url=openai_fake.base_url, max_retries=0) as client:
        yield client


async def open_openai_stream(client: openai.AsyncOpenAI) -> openai.AsyncStream[ChatCompletionChunk]:
    return await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello"}], stream=True
    )


def openai_texts(chunks: list[ChatCompletionChunk]) -> list[str]:
    return [chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices]


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
