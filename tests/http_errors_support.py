"""Shared by the tests/test_http_errors_*.py modules: the messages they send and a refusal as each official SDK raises
it."""

from __future__ import annotations

import anthropic
import openai
import pytest

from tests.http_door import (
    anthropic_messages,
    async_anthropic_client,
    async_openai_client,
    openai_messages,
)
from warpcore.server.doors import Doors

OPENAI_MESSAGES = openai_messages("Say hello")
ANTHROPIC_MESSAGES = anthropic_messages("Say hello")


async def openai_failure(doors: Doors, **options: object) -> openai.APIStatusError:
    async with async_openai_client(doors) as client:
        with pytest.raises(openai.APIStatusError) as failure:
            await client.chat.completions.create(**{"model": "m", "messages": OPENAI_MESSAGES, **options})  # type: ignore[call-overload]
    return failure.value


async def anthropic_failure(doors: Doors, **options: object) -> anthropic.APIStatusError:
    async with async_anthropic_client(doors) as client:
        with pytest.raises(anthropic.APIStatusError) as failure:
            await client.messages.create(**{"model": "m", "messages": ANTHROPIC_MESSAGES, "max_tokens": 10, **options})  # type: ignore[call-overload]
    return failure.value
