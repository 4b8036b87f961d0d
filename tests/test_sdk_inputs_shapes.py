"""The Python SDK takes what it is given in the shapes other SDKs take (a str stop sequence, JSON formats parsed,
Anthropic betas as a generation option), and refuses a timeout no call could keep where it is given."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import TINY_MODEL
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import OPENAI_KEY
from tests.sdk_inputs_support import CLIENTS, UNREACHABLE, maybe
from tests.sdk_support import blocking
from warpcore.client import ApiConfig, AsyncClient, Client, FinishReason
from warpcore.client._protocol import generate_request
from warpcore.server.rpc.server import WarpcoreServer


@pytest.fixture
def target(server: WarpcoreServer) -> str:
    return f"127.0.0.1:{server.port}"


@CLIENTS
@pytest.mark.parametrize(
    ("seconds", "error", "message"),
    [
        (-1, ValueError, "timeout must be greater than 0 and at most 100000000 seconds, not -1"),
        (0, ValueError, "timeout must be greater than 0 and at most 100000000 seconds, not 0"),
        (float("nan"), ValueError, "timeout must be greater than 0 and at most 100000000 seconds, not nan"),
        (float("inf"), ValueError, "timeout must be greater than 0 and at most 100000000 seconds, not inf"),
        (1e10, ValueError, "timeout must be greater than 0 and at most 100000000 seconds, not 10000000000.0"),
        ("5", TypeError, "timeout is a number of seconds (or None for no deadline), not str"),
        (True, TypeError, "timeout is a number of seconds (or None for no deadline), not bool"),
    ],
)
async def test_a_timeout_no_call_could_keep_is_refused_where_it_is_given(
    make: Callable[..., Any], seconds: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        make(UNREACHABLE, timeout=seconds)
    client = make(UNREACHABLE)
    listing: Callable[..., Any] = client.list_models
    generate: Callable[..., Any] = client.generate
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        await maybe(listing(timeout=seconds))
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        await maybe(generate("m", prompt="x", stream=True, timeout=seconds))


async def test_good_timeouts_still_work(target: str) -> None:
    async with AsyncClient(target, timeout=30) as client:
        assert await client.list_models(timeout=5) == []

    @blocking
    def use() -> str:
        with Client(target, timeout=None) as client:
            return client.health(timeout=2.5)

    assert await use() == "SERVING"


@pytest.mark.parametrize(
    "response_format",
    [
        {"type": "object", "properties": {"n": {"type": "integer"}}},
        "json_object",
        {"type": "json_object"},
        {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}}},
    ],
    ids=["schema", "json_object", "openai json_object", "openai json_schema"],
)
async def test_json_formats_other_than_a_pydantic_model_are_parsed_as_json(
    target: str, openai_upstream: FakeOpenAI, response_format: Any
) -> None:
    openai_upstream.script = Script(chunks=['{"n": 4, ', '"why": ["2", "+2"]}'])
    config = ApiConfig(api_key=OPENAI_KEY, base_url=openai_upstream.base_url)
    async with AsyncClient(target, timeout=30) as client:
        await client.load_model("gpt-4o-mini", backend="openai", model_id="m", config=config)
        response = await client.generate("m", prompt="2+2?", response_format=response_format)

    @blocking
    def streamed() -> Any:
        with (
            Client(target, timeout=30) as client,
            client.generate("m", prompt="2+2?", response_format=response_format, stream=True) as stream,
        ):
            return stream.get_final_response().parsed

    assert response.parsed == {"n": 4, "why": ["2", "+2"]}
    assert await streamed() == response.parsed
    openai_upstream.script = Script(chunks=["plain text"])
    async with AsyncClient(target, timeout=30) as client:
        assert (await client.generate("m", prompt="2+2?", response_format={"type": "text"})).parsed is None
        assert (await client.generate("m", prompt="2+2?")).parsed is None


def test_anthropic_betas_are_a_generation_option() -> None:
    request, _ = generate_request("m", "hi", None, {"anthropic_betas": ["interleaved-thinking-2025-05-14"]})
    assert list(request.options.anthropic_betas) == ["interleaved-thinking-2025-05-14"]


async def test_a_str_stop_is_one_stop_sequence(target: str) -> None:
    async with AsyncClient(target, timeout=30) as client:
        await client.load_model(TINY_MODEL, model_id="tiny")
        reference = (await client.generate("tiny", prompt="the state", max_tokens=24, temperature=0)).text
        stop = " " + reference.split()[4]  # a word some way in: its characters come sooner
        stopped = await client.generate("tiny", prompt="the state", max_tokens=24, temperature=0, stop=stop)

    @blocking
    def sync_text() -> str:
        with Client(target, timeout=30) as client:
            return client.generate("tiny", prompt="the state", max_tokens=24, temperature=0, stop=stop).text

    expected = reference[: reference.index(stop)]
    assert expected.strip()
    assert (stopped.text, stopped.finish_reason, stopped.stop_sequence) == (
        expected,
        FinishReason.STOP_SEQUENCE,
        stop,
    )
    assert await sync_text() == stopped.text
