"""The prompt cache through the HTTP door: each dialect reports the prompt tokens a local model's cache served, and
takes warpcore's `no_prompt_cache` member, as gRPC's GenerationOptions has it, to keep a prompt out of it."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from tests.conftest import TINY_MODEL
from tests.http_door import async_anthropic_client, async_openai_client
from tests.prompt_cache_support import SYSTEM, cached_tokens, lookups
from warpcore.server.core.domain import BackendKind, LoadSpec
from warpcore.server.doors import Doors


@pytest.fixture
async def cached_door(doors: Doors) -> Doors:
    await doors.engine.load(LoadSpec("cached", BackendKind.LLAMA_CPP, TINY_MODEL, None, None))
    return doors


async def openai_cached(doors: Doors, text: str, **extra: Any) -> int:
    async with async_openai_client(doors) as client:
        answer = await client.chat.completions.create(
            model="cached", messages=[{"role": "user", "content": text}], max_tokens=2, **extra
        )
    assert answer.usage is not None
    assert answer.usage.prompt_tokens_details is not None
    return answer.usage.prompt_tokens_details.cached_tokens or 0


async def anthropic_cached(doors: Doors, text: str, **extra: Any) -> int:
    async with async_anthropic_client(doors) as client:
        answer = await client.messages.create(
            model="cached", messages=[{"role": "user", "content": text}], max_tokens=2, **extra
        )
    return answer.usage.cache_read_input_tokens or 0


@pytest.mark.parametrize("cached", [openai_cached, anthropic_cached])
async def test_a_prompt_kept_out_of_the_cache_neither_uses_nor_leaves_any(cached_door: Doors, cached: Any) -> None:
    private = {"extra_body": {"no_prompt_cache": True}}
    assert await cached(cached_door, SYSTEM, **private) == 0
    assert await cached(cached_door, SYSTEM, **private) == 0
    server = cached_door.grpc
    assert cached_tokens(server, "cached") == 0
    assert lookups(server, "cached", "hit") == lookups(server, "cached", "miss") == 0
    assert await cached(cached_door, SYSTEM) == 0  # kept now
    assert await cached(cached_door, SYSTEM) > 0  # and served
    assert await cached(cached_door, SYSTEM, **private) == 0


async def test_no_prompt_cache_must_be_true_or_false(cached_door: Doors) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        await openai_cached(cached_door, SYSTEM, extra_body={"no_prompt_cache": "yes"})
    assert refused.value.param == "no_prompt_cache"
    with pytest.raises(anthropic.BadRequestError) as also:
        await anthropic_cached(cached_door, SYSTEM, extra_body={"no_prompt_cache": 1})
    assert "no_prompt_cache" in str(also.value)
