"""What the SDK makes of an answer, sync and asyncio, against the real server and the loopback fakes: a structured
answer that does not parse keeps the whole response, and the prompt's usage a stream's first frame carries."""

from __future__ import annotations

import json
from typing import Any

import pydantic
import pytest

from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import OPENAI_KEY
from tests.test_sdk import blocking
from warpcore.client import (
    ApiConfig,
    AsyncClient,
    Client,
    FinishReason,
    ResponseParseError,
    TextDelta,
    Usage,
    WarpcoreError,
)
from warpcore.server.rpc.server import WarpcoreServer


class Answer(pydantic.BaseModel):
    n: int


@pytest.fixture
def target(server: WarpcoreServer) -> str:
    return f"127.0.0.1:{server.port}"


@pytest.mark.parametrize(
    ("response_format", "answer", "cause"),
    [
        ("json_object", "Sure! Here it is: 4", json.JSONDecodeError),
        (Answer, '{"n": "four"}', pydantic.ValidationError),
    ],
    ids=["json_object", "pydantic"],
)
async def test_an_answer_that_does_not_parse_raises_with_the_whole_response(
    target: str, openai_upstream: FakeOpenAI, response_format: Any, answer: str, cause: type[Exception]
) -> None:
    """The parser's own exception, raised bare, lost the text and usage that the call had returned."""
    openai_upstream.script = Script(chunks=[answer[:5], answer[5:]], prompt_tokens=9)
    config = ApiConfig(api_key=OPENAI_KEY, base_url=openai_upstream.base_url)

    def check(error: ResponseParseError) -> None:
        assert isinstance(error, WarpcoreError)
        assert isinstance(error, ValueError)
        assert isinstance(error.__cause__, cause)
        assert (error.response.text, error.response.finish_reason) == (answer, FinishReason.STOP)
        assert (error.response.usage.prompt_tokens, error.response.parsed) == (9, None)
        assert str(error).startswith("the answer does not parse as response_format asks: ")
        assert "\n" not in str(error)
        assert error.request_id == error.response.request_id != ""  # the call's, though no call failed

    async with AsyncClient(target, timeout=30) as client:
        await client.load_model("gpt-4o-mini", backend="openai", model_id="m", config=config)
        with pytest.raises(ResponseParseError) as raised:
            await client.generate("m", prompt="2+2?", response_format=response_format)
        check(raised.value)
        stream = await client.generate("m", prompt="2+2?", response_format=response_format, stream=True)
        with pytest.raises(ResponseParseError) as raised:
            await stream.get_final_response()
        check(raised.value)

    @blocking
    def sync() -> list[ResponseParseError]:
        errors = []
        with Client(target, timeout=30) as client:
            for streamed in (False, True):
                try:
                    if streamed:
                        client.generate(
                            "m", prompt="2+2?", response_format=response_format, stream=True
                        ).get_final_response()
                    else:
                        client.generate("m", prompt="2+2?", response_format=response_format)
                except ResponseParseError as error:
                    errors.append(error)
        return errors

    errors = await sync()
    assert len(errors) == 2
    for error in errors:
        check(error)


async def test_a_local_streams_prompt_usage_is_known_from_its_first_event(target: str, tiny: str) -> None:
    async with AsyncClient(target, timeout=30) as client:
        stream = await client.generate(tiny, prompt="the world", max_tokens=4, temperature=0, stream=True)
        assert stream.prompt_usage is None
        first = await anext(stream)
        assert isinstance(first, TextDelta)
        early = stream.prompt_usage
        final = await stream.get_final_response()
    assert early == Usage(final.usage.prompt_tokens, 0)
    assert early is not None
    assert early.prompt_tokens > 0

    @blocking
    def sync() -> tuple[Usage | None, Usage]:
        with (
            Client(target, timeout=30) as client,
            client.generate(tiny, prompt="the world", max_tokens=4, temperature=0, stream=True) as stream,
        ):
            next(stream)
            return stream.prompt_usage, stream.get_final_response().usage

    early_sync, usage = await sync()
    assert early_sync == Usage(usage.prompt_tokens, 0)


async def test_an_openai_stream_has_no_early_prompt_usage(target: str, openai_upstream: FakeOpenAI) -> None:
    """OpenAI's API counts the prompt only at the end; the final response's usage has it."""
    openai_upstream.script = Script(chunks=["a", "b"], prompt_tokens=9)
    config = ApiConfig(api_key=OPENAI_KEY, base_url=openai_upstream.base_url)
    async with AsyncClient(target, timeout=30) as client:
        await client.load_model("gpt-4o-mini", backend="openai", model_id="m", config=config)
        stream = await client.generate("m", prompt="hi", stream=True)
        final = await stream.get_final_response()
    assert stream.prompt_usage is None
    assert final.usage.prompt_tokens == 9
