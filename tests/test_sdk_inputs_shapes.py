"""The Python SDK takes what it is given in the shapes other SDKs take (a str stop sequence, JSON formats parsed,
Anthropic betas as a generation option, a message mapping's content as a list of parts), and refuses a timeout no
call could keep where it is given."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import TINY_MODEL
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import OPENAI_KEY, posts
from tests.sdk_inputs_support import CLIENTS, UNREACHABLE, maybe
from tests.sdk_support import blocking
from warpcore.client import ApiConfig, AsyncClient, Client, FinishReason, Image, Message, OptionError
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
    # A client's own timeout is one of its options, refused as each of them is: a bad value an OptionError.
    refused, said = (OptionError, message.replace(" ", ": ", 1)) if error is ValueError else (error, message)
    with pytest.raises(refused, match=f"^{re.escape(said)}$"):
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


PNG = b"\x89PNG\r\n\x1a\n fake"  # a PNG's signature: the server checks it


async def test_a_mapping_content_of_text_and_image_parts_is_sent_as_a_message_s_parts(
    target: str, openai_upstream: FakeOpenAI
) -> None:
    """A tester's finding: content as a list of OpenAI's parts, [{"type": "text", "text": ...}], was a TypeError,
    where the README said mappings are taken as the vendors' SDKs take them."""
    parts = [
        {"type": "text", "text": "Compare:"},
        {"type": "image_url", "image_url": {"url": "data:image/gif;base64,R0lGODlh", "detail": "low"}},  # OpenAI's
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgogZmFrZQ=="}},
        {"type": "image", "source": {"type": "url", "url": "https://x.example/a.webp"}},  # Anthropic's
        # A data URL as RFC 2397 writes it: its scheme and `base64` in any case, parameters taken and left out.
        {"type": "image_url", "image_url": {"url": "Data:image/GIF;charset=binary;BASE64,R0lGODlh"}},
        {"type": "text", "text": "ok?"},
    ]
    system = {"role": "system", "content": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Or not."}]}
    images = (
        Image(b"GIF89a", "image/gif"),
        Image(PNG, "image/png"),
        Image.from_url("https://x.example/a.webp"),
        Image(b"GIF89a", "image/gif"),
    )
    as_messages = [Message("system", "Be brief.\n\nOr not."), Message("user", "Compare:", parts=(*images, "ok?"))]
    async with AsyncClient(target, timeout=30) as client:
        await client.load_model(
            "gpt-4o-mini", backend="openai", model_id="m", api_key=OPENAI_KEY, base_url=openai_upstream.base_url
        )
        await client.generate("m", messages=[system, {"role": "user", "content": parts}])
        await client.generate("m", messages=as_messages)
        sent, expected = posts(openai_upstream)
        assert sent["messages"] == expected["messages"]
        # Refused before anything is sent, naming the part and what to use instead.
        for content, error, words in [
            ([{"type": "file", "file": {}}], TypeError, "content[0] is a text or an image part, not of type 'file'"),
            ([{"type": "text", "text": "x", "cache_control": {}}], TypeError, "content[0] has cache_control"),
            (
                [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "%"}}],
                ValueError,
                "content[0].source.data is not base64",
            ),
            ({"text": "x"}, TypeError, "a message's content is a str or a list of parts, not dict"),
        ]:
            with pytest.raises(error, match=re.escape(words)):
                await client.generate("m", messages=[{"role": "user", "content": content}])
    assert len(posts(openai_upstream)) == 2
