"""An HTTP stream the shutdown cuts once it is running: it ends with the error saying why, after the usage of what was
generated, where the dialect has a place for it (the chat route's usage chunk, asked for; a failed response's usage),
and the backend told it (a hosted OpenAI stream cut before its end has none: no usage chunk then, as OpenAI's API
sends none in a stream cut short)."""

from __future__ import annotations

import asyncio
from typing import Any

import openai

from tests.conftest import serving_doors
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.http_door import async_openai_client, load_hosted, openai_messages
from tests.shutdown import WAIT_SECONDS
from tests.test_http_model_list import STREAM_CONTEXT, tiny
from warpcore.server.doors import Doors

ROOMY = tiny("tiny", STREAM_CONTEXT)
"""Room for a stream to run until the shutdown cuts it."""


async def cut_stream(doors: Doors, stream: Any) -> list[Any]:
    """The events of a running `stream`, the first read before the grace ends at once; the SDK's error, if it raises
    one, last."""
    events = [await anext(aiter(stream))]
    stopping = asyncio.ensure_future(doors.stop(120))
    doors.engine.streams.end_now()  # a second signal: the grace ends now
    try:
        async for event in stream:
            events.append(event)
    except openai.APIError as error:
        events.append(error)
    await asyncio.wait_for(stopping, WAIT_SECONDS)
    return events


async def test_a_chat_stream_cut_by_the_shutdown_gives_its_usage_before_the_error(server_env: dict[str, str]) -> None:
    """A tester's finding: the stream ended with the error alone, where the server knew the usage (its access log
    said prompt_tokens=13 completion_tokens=217)."""
    async with serving_doors(server_env) as doors:
        await doors.engine.load(ROOMY)
        async with async_openai_client(doors) as client:
            stream = await client.chat.completions.create(
                model="tiny",
                messages=openai_messages("the world says"),
                max_tokens=32000,
                stream=True,
                stream_options={"include_usage": True},
            )
            *chunks, usage, error = await cut_stream(doors, stream)
    assert isinstance(error, openai.APIError)
    assert "shutting down" in error.message
    assert usage.choices == []
    assert usage.usage.prompt_tokens > 1
    assert usage.usage.completion_tokens >= len([chunk for chunk in chunks if chunk.choices[0].delta.content]) > 0


async def test_a_hosted_chat_stream_cut_before_its_upstream_told_the_usage_has_no_usage_chunk(
    server_env: dict[str, str], openai_upstream: FakeOpenAI
) -> None:
    """A tester's finding: the stream ended with a usage chunk whose `usage` was null, which OpenAI's API never sends:
    code that reads the usage from the chunk with empty `choices` failed on it. The SDK's accumulated completion has
    no usage, as when the API's stream is cut short."""
    openai_upstream.script = Script(chunks=["a", "b"], stall_after=1)  # the upstream tells its usage at the end
    async with serving_doors(server_env) as doors:
        await load_hosted(doors, openai_upstream)
        async with async_openai_client(doors) as client:
            stream = await client.chat.completions.create(
                model="m",
                messages=openai_messages(),
                stream=True,
                stream_options={"include_usage": True},
            )
            *chunks, error = await cut_stream(doors, stream)
    assert isinstance(error, openai.APIError)
    assert "shutting down" in error.message
    assert all(chunk.choices and chunk.usage is None for chunk in chunks)  # none is a usage chunk
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == "a"


async def test_a_response_stream_cut_by_the_shutdown_fails_with_its_usage(server_env: dict[str, str]) -> None:
    async with serving_doors(server_env) as doors:
        await doors.engine.load(ROOMY)
        async with async_openai_client(doors) as client:
            stream = await client.responses.create(
                model="tiny", input="the world says", max_output_tokens=32000, stream=True
            )
            *_, error, failed = await cut_stream(doors, stream)
    assert error.type == "error"
    assert "shutting down" in error.message
    assert failed.type == "response.failed"
    assert failed.response.usage is not None
    assert failed.response.usage.input_tokens > 1
    assert failed.response.usage.output_tokens > 0
    assert (
        failed.response.usage.total_tokens == failed.response.usage.input_tokens + failed.response.usage.output_tokens
    )
