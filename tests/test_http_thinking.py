"""A `thinking` budget the door cannot honour is refused in either dialect, naming the field, as the gRPC API refuses
it: adaptive thinking sets its own budget, and disabled thinking has none (a tester found both budgets dropped,
unsaid, on their way upstream)."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from tests.fakes.anthropic_api import FakeAnthropic
from tests.http_door import async_anthropic_client, async_openai_client
from tests.http_fields_support import ANTHROPIC_MESSAGES, OPENAI_MESSAGES, both, message_of
from warpcore.server.doors import Doors

__all__ = ["both"]  # the fixture, used by name

REFUSED = [
    ({"type": "adaptive", "budget_tokens": 2000}, "thinking.type", "adaptive thinking sets its own budget"),
    ({"type": "disabled", "budget_tokens": 2000}, "thinking.budget_tokens", "a budget goes with thinking of type"),
]


@pytest.mark.parametrize(("thinking", "field", "words"), REFUSED, ids=["adaptive", "disabled"])
@pytest.mark.parametrize("model", ["claude", "gpt"])
async def test_a_budget_that_thinking_of_its_type_cannot_take_is_refused(
    both: Doors, anthropic_upstream: FakeAnthropic, model: str, thinking: dict[str, Any], field: str, words: str
) -> None:
    sent = len(anthropic_upstream.requests)
    async with async_anthropic_client(both) as client:
        with pytest.raises(anthropic.BadRequestError) as messages:
            await client.messages.create(
                model=model, messages=ANTHROPIC_MESSAGES, max_tokens=4096, extra_body={"thinking": thinking}
            )
    async with async_openai_client(both) as client:
        with pytest.raises(openai.BadRequestError) as chat:
            await client.chat.completions.create(
                model=model, messages=OPENAI_MESSAGES, max_tokens=4096, extra_body={"thinking": thinking}
            )
    assert message_of(messages.value).startswith(f"{field}: ")
    assert words in message_of(messages.value)
    assert chat.value.param == field
    assert words in chat.value.message
    assert len(anthropic_upstream.requests) == sent


async def test_adaptive_thinking_without_a_budget_still_reaches_claude(
    both: Doors, anthropic_upstream: FakeAnthropic
) -> None:
    async with async_anthropic_client(both) as client:
        await client.messages.create(
            model="claude", messages=ANTHROPIC_MESSAGES, max_tokens=4096, thinking={"type": "adaptive"}
        )
    body = anthropic_upstream.requests[-1].body
    assert body is not None
    assert body["thinking"] == {"type": "adaptive"}
