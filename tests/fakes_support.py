"""Shared by the tests/test_fakes_*.py modules (the fake upstreams against the vendors' SDKs): the key, model and
message they send, the wait for a disconnect, an Anthropic stream opened, and a stream collected up to its failure."""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import TypeVar

import anthropic
from anthropic.types import RawMessageStreamEvent

T = TypeVar("T")

API_KEY = "sk-fake-test"
ANTHROPIC_MODEL = "claude-haiku-4-5"  # one the SDK does not warn about as deprecated
DISCONNECT_TIMEOUT = 5.0
USER_MESSAGE: list[dict[str, str]] = [{"role": "user", "content": "Say hello"}]


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
