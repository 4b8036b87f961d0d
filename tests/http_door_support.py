"""Shared by the tests/test_http_door_*.py modules: the chat they send in each dialect."""

from __future__ import annotations

from tests.http_door import anthropic_messages, openai_messages

OPENAI_MESSAGES = openai_messages("hello")
ANTHROPIC_MESSAGES = anthropic_messages("hello")
