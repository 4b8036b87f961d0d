"""Shared by the tests of which request fields the HTTP door takes (tests/test_http_fields_*.py,
tests/test_http_thinking.py): the chat each dialect sends, a schema, the doors with an OpenAI and a Claude model on the
fakes (`both`), an error body's message and the body an upstream last received."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI
from tests.http_door import anthropic_messages, load_hosted, openai_messages
from warpcore.server.doors import Doors

OPENAI_MESSAGES = openai_messages("Say hello")
ANTHROPIC_MESSAGES = anthropic_messages("Say hello")
SCHEMA: dict[str, Any] = {"type": "object", "properties": {"n": {"type": "integer"}}}


@pytest.fixture
async def both(doors: Doors, openai_upstream: FakeOpenAI, anthropic_upstream: FakeAnthropic) -> Doors:
    await load_hosted(doors, openai_upstream, "gpt")
    await load_hosted(doors, anthropic_upstream, "claude")
    return doors


def message_of(error: anthropic.APIStatusError) -> str:
    """The error body's message (the SDK's own `message` prefixes the status and the whole body)."""
    assert isinstance(error.body, dict)
    message: str = error.body["error"]["message"]
    return message


def last_body(upstream: FakeOpenAI | FakeAnthropic) -> dict[str, Any]:
    body = upstream.requests[-1].body
    assert body is not None
    return body
