"""What the SDK makes of an answer, sync and asyncio, against the real server and the loopback fakes: a structured
answer that does not parse keeps the whole response, and the prompt's usage a stream's first frame carries."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Mapping
from typing import Any

import grpc
import pydantic
import pytest

from tests.conftest import serving
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import ANTHROPIC_KEY, OPENAI_KEY, load
from tests.sdk_support import blocking
from warpcore.client import (
    ApiConfig,
    AsyncClient,
    Client,
    FinishReason,
    ResponseParseError,
    TextDelta,
    UnavailableError,
    Usage,
    WarpcoreError,
)
from warpcore.server.rpc.server import WarpcoreServer
from warpcore.v1 import inference_pb2_grpc


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
        assert error.response.usage is not None
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
    assert final.usage is not None
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
    assert final.usage is not None
    assert final.usage.prompt_tokens == 9


async def test_a_generation_failing_mid_way_keeps_what_came_in_its_error(
    target: str, anthropic_upstream: FakeAnthropic
) -> None:
    """A tester's finding: the streamed form kept the text, but generate() raised an error without it."""
    anthropic_upstream.script = Script(chunks=["Hel", "lo", " there"], error_event_after=2, prompt_tokens=9)
    config = ApiConfig(api_key=ANTHROPIC_KEY, base_url=anthropic_upstream.base_url)

    def check(error: UnavailableError) -> None:
        assert error.response is not None
        assert (error.response.text, error.response.finish_reason) == ("Hello", FinishReason.ERROR)
        assert error.response.usage is not None
        assert error.response.usage.prompt_tokens == 9
        assert error.response.request_id == error.request_id != ""

    async with AsyncClient(target, timeout=30) as client:
        await client.load_model(anthropic_upstream.models[0], backend="anthropic", model_id="m", config=config)
        with pytest.raises(UnavailableError) as raised:
            await client.generate("m", prompt="hi")
        check(raised.value)

    @blocking
    def sync() -> None:
        with Client(target, timeout=30) as client, pytest.raises(UnavailableError) as raised:
            client.generate("m", prompt="hi")
        check(raised.value)

    await sync()


async def test_a_stream_failing_mid_way_raises_with_what_came_however_it_is_read(
    target: str, anthropic_upstream: FakeAnthropic
) -> None:
    """A tester's finding: a loop over the stream got the error without the answer so far, and get_final_response()
    called after it returned that answer as if it were whole."""
    anthropic_upstream.script = Script(chunks=["Hel", "lo", " there"], error_event_after=2, prompt_tokens=9)
    config = ApiConfig(api_key=ANTHROPIC_KEY, base_url=anthropic_upstream.base_url)
    async with AsyncClient(target, timeout=30) as client:
        await client.load_model(anthropic_upstream.models[0], backend="anthropic", model_id="m", config=config)
        stream = await client.generate("m", prompt="hi", stream=True)
        with pytest.raises(UnavailableError) as raised:
            async for _ in stream:
                pass
        with pytest.raises(UnavailableError) as again:
            await stream.get_final_response()

    @blocking
    def sync() -> tuple[UnavailableError, UnavailableError]:
        with Client(target, timeout=30) as client:
            stream = client.generate("m", prompt="hi", stream=True)
            with pytest.raises(UnavailableError) as raised:
                "".join(stream.text_stream)
            with pytest.raises(UnavailableError) as again:
                stream.get_final_response()
        return raised.value, again.value

    for first, second in (raised.value, again.value), await sync():
        assert second is first
        assert first.response is not None
        assert (first.response.text, first.response.finish_reason) == ("Hello", FinishReason.ERROR)


def _read_until_cut(target: str, begun: threading.Event) -> UnavailableError:
    """A blocking generation's error, once `begun` has been set as its first event came."""
    with Client(target, timeout=30) as client:
        stream = client.generate("m", prompt="hi", stream=True)
        next(stream)
        begun.set()
        with pytest.raises(UnavailableError) as raised:
            stream.get_final_response()
    return raised.value


async def test_a_generation_the_servers_shutdown_cuts_short_raises_with_its_text(
    server_env: Mapping[str, str], openai_upstream: FakeOpenAI
) -> None:
    """A tester's finding: the answer came back whole-looking, its finish_reason `cancelled` the only sign that the
    text was cut short (the CLI said so; the SDK did not)."""
    openai_upstream.script = Script(chunks=["tick"] * 1000, delay=0.01)  # far longer than the grace
    for asynchronous in (True, False):
        async with serving(server_env) as server, grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            await load(inference_pb2_grpc.InferenceServiceStub(channel), openai_upstream)
            target, begun = f"127.0.0.1:{server.port}", threading.Event()
            async with AsyncClient(target, timeout=30) as client:
                if asynchronous:
                    stream = await client.generate("m", prompt="hi", stream=True)
                    await anext(stream)
                    await server.stop(0.1)
                    with pytest.raises(UnavailableError) as raised:
                        await stream.get_final_response()
                    errors = [raised.value]
                else:
                    reading = blocking(_read_until_cut)(target, begun)
                    await asyncio.to_thread(begun.wait, 30)
                    await server.stop(0.1)
                    errors = [await reading]
        for error in errors:
            assert (error.reason, error.request_id != "") == ("SHUTTING_DOWN", True)
            assert str(error).startswith("UNAVAILABLE: the server stopped the generation before its end")
            assert error.response is not None
            assert error.response.finish_reason is FinishReason.CANCELLED
            assert error.response.text.startswith("tick")
            assert error.response.text.replace("tick", "") == ""
