"""Helpers for tests of the HTTP door: the official SDKs' clients pointed at it, and models loaded on its engine."""

from __future__ import annotations

import anthropic
import openai
from anthropic.types import MessageParam
from openai.types.chat import ChatCompletionMessageParam

from tests.fakes.base import FakeUpstream
from tests.fakes.openai_api import FakeOpenAI
from tests.hosted import key_of
from warpcore.server.core.domain import ApiSettings, BackendKind, LoadSpec
from warpcore.server.doors import Doors

TOKEN_UNUSED = "unused"
"""What the SDKs send as their key when the door asks for no token (both refuse to start without one)."""


def base_url(doors: Doors) -> str:
    assert doors.http is not None
    return f"http://127.0.0.1:{doors.http.port}"


def openai_client(doors: Doors, key: str = TOKEN_UNUSED) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url(doors)}/v1", api_key=key, max_retries=0)


def async_openai_client(doors: Doors, key: str = TOKEN_UNUSED) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{base_url(doors)}/v1", api_key=key, max_retries=0)


def anthropic_client(doors: Doors, key: str = TOKEN_UNUSED) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=base_url(doors), api_key=key, max_retries=0)


def async_anthropic_client(doors: Doors, key: str = TOKEN_UNUSED) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=base_url(doors), api_key=key, max_retries=0)


async def load_hosted(doors: Doors, upstream: FakeUpstream, model_id: str = "m") -> None:
    """The upstream's first model, loaded as `model_id` with its key and base URL."""
    backend = BackendKind.OPENAI if isinstance(upstream, FakeOpenAI) else BackendKind.ANTHROPIC
    settings = ApiSettings(api_key=key_of(upstream), base_url=upstream.base_url)
    await doors.engine.load(LoadSpec(model_id, backend, upstream.models[0], settings, None))


def openai_messages(text: str = "Say hello") -> list[ChatCompletionMessageParam]:
    return [{"role": "user", "content": text}]


def anthropic_messages(text: str = "Say hello") -> list[MessageParam]:
    return [{"role": "user", "content": text}]


def text_of(message: anthropic.types.Message) -> str:
    """The text blocks of an Anthropic message, joined."""
    return "".join(block.text for block in message.content if isinstance(block, anthropic.types.TextBlock))
