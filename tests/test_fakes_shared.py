"""What the fake upstreams share: stopping a fake ends a stalled stream without counting a disconnect, and each fake
listens on a loopback port of its own."""

from __future__ import annotations

import time

import anthropic
import httpx2
import pytest
from anthropic.types import RawMessageStreamEvent

from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.fakes_support import API_KEY, DISCONNECT_TIMEOUT, collect_into, open_anthropic_stream

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
