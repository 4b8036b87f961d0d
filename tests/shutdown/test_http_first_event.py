"""An HTTP stream the shutdown cuts before its first event: nothing was sent, so the door answers with a status (503
and Retry-After), on which the SDKs retry on another replica, where it sent 200 and an error event they do not retry."""

from __future__ import annotations

import asyncio

import openai
import pytest

from tests.conftest import serving_doors
from tests.fakes.base import JsonObject
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.http_door import async_openai_client, load_hosted
from tests.pull import logged
from tests.shutdown import WAIT_SECONDS


@pytest.mark.parametrize("route", ["chat", "responses"])
async def test_a_stream_cut_by_the_shutdown_before_its_first_event_is_a_503(
    server_env: dict[str, str], openai_upstream: FakeOpenAI, route: str
) -> None:
    arrived = asyncio.Event()

    def silent(body: JsonObject) -> Script:  # the upstream takes the request and says nothing
        arrived.set()
        return Script(chunks=["never"], stall_after=0)

    openai_upstream.respond = silent
    async with serving_doors(server_env) as doors:
        await load_hosted(doors, openai_upstream)
        async with async_openai_client(doors) as client:

            async def ask() -> None:
                if route == "chat":
                    hi: openai.types.chat.ChatCompletionMessageParam = {"role": "user", "content": "hi"}
                    await client.chat.completions.create(model="m", messages=[hi], stream=True)
                else:
                    await client.responses.create(model="m", input="hi", stream=True)

            asking = asyncio.ensure_future(ask())
            await asyncio.wait_for(arrived.wait(), WAIT_SECONDS)
            # The log counts the hosted stream as a generation, not among the other calls (loads, pulls).
            with logged(
                "0 local generations end at their current decode step; 1 hosted generations and 0 other"
            ) as line:
                stopping = asyncio.ensure_future(doors.stop(120))
                doors.engine.streams.end_now()  # a second signal: the grace ends now
                with pytest.raises(openai.APIStatusError) as refused:
                    await asyncio.wait_for(asking, WAIT_SECONDS)
                await stopping
    assert line.is_set()
    assert refused.value.status_code == 503
    assert refused.value.response.headers["retry-after"] == "1"
    assert "shutting down" in refused.value.message
