"""The door's POST /v1/embeddings (OpenAI) and POST /v1/messages/count_tokens (Anthropic) with the official SDKs:
the vectors and counts of the gRPC Embed and CountTokens, from llama.cpp (the tiny model) and the hosted fakes."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anthropic
import grpc
import httpx2
import openai
import pytest
from anthropic.types import MessageParam

from tests.conftest import TINY_MODEL, serving_doors
from tests.embeddings import TEXTS, embed, load_tiny_embedder, vectors
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI, fake_embedding
from tests.http_door import (
    anthropic_client,
    anthropic_messages,
    async_anthropic_client,
    async_openai_client,
    base_url,
    load_hosted,
    openai_client,
)
from tests.test_http_door_sdks import tiny_door  # noqa: F401 - the fixture
from tests.tool_wire import WEATHER, WEATHER_SCHEMA
from warpcore.server.doors import Doors
from warpcore.server.rpc.server import ServingOptions
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc, tools_pb2

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

TOOL: dict[str, Any] = {"name": "get_weather", "description": "The weather in a city", "input_schema": WEATHER_SCHEMA}
TURNS: list[MessageParam] = [
    *anthropic_messages("the world says hello"),
    {"role": "assistant", "content": "hello people"},
    *anthropic_messages("and again"),
]

NONSENSE: Any = {"role": "user", "content": [{"type": "nonsense"}]}
"""A turn with a block of no known type."""


@pytest.fixture
async def door_stub(doors: Doors) -> AsyncIterator[Stub]:
    """A gRPC stub on the same engine as the HTTP door."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{doors.grpc.port}") as channel:
        yield inference_pb2_grpc.InferenceServiceStub(channel)


def float32(vector: Sequence[float]) -> list[float]:
    """The vector rounded to float32, as gRPC and the base64 encoding carry it."""
    return list(struct.unpack(f"<{len(vector)}f", struct.pack(f"<{len(vector)}f", *vector)))


async def test_openai_sdk_embeddings_equal_the_grpc_vectors(doors: Doors, door_stub: Stub) -> None:
    await load_tiny_embedder(door_stub)
    expected = await embed(door_stub, TEXTS)
    alone = vectors(await embed(door_stub, TEXTS[:1]))

    def sync_calls() -> tuple[Any, Any]:
        with openai_client(doors) as client:
            default = client.embeddings.create(model="tiny-embed", input=TEXTS)
            floats = client.embeddings.create(model="tiny-embed", input=TEXTS, encoding_format="float", user="u")
        return default, floats

    default, floats = await asyncio.to_thread(sync_calls)
    async with async_openai_client(doors) as client:
        async_default = await client.embeddings.create(model="tiny-embed", input=TEXTS)
        one = await client.embeddings.create(model="tiny-embed", input=TEXTS[0], encoding_format="float")
    # The base64 answer is float32, as gRPC's: the same values exactly; floats are the engine's doubles.
    assert [item.embedding for item in default.data] == vectors(expected)
    assert [item.embedding for item in async_default.data] == vectors(expected)
    assert [float32(item.embedding) for item in floats.data] == vectors(expected)
    assert [float32(item.embedding) for item in one.data] == alone
    assert floats.data[0].embedding != vectors(expected)[0]  # not rounded: a float answer keeps its precision
    for response in (default, floats, async_default):
        assert [item.index for item in response.data] == list(range(len(TEXTS)))
        assert {item.object for item in response.data} == {"embedding"}
        assert (response.object, response.model) == ("list", "tiny-embed")
        assert response.usage.prompt_tokens == response.usage.total_tokens == expected.prompt_tokens
    assert one.usage.prompt_tokens < expected.prompt_tokens


async def test_the_sdk_asks_for_base64_by_default_and_gets_little_endian_float32(doors: Doors, door_stub: Stub) -> None:
    await load_tiny_embedder(door_stub)
    expected = vectors(await embed(door_stub, TEXTS[:2]))
    async with async_openai_client(doors) as client:
        raw = await client.embeddings.with_raw_response.create(model="tiny-embed", input=TEXTS[:2])
    assert json.loads(raw.http_request.content)["encoding_format"] == "base64"
    answered = json.loads(raw.content)["data"]
    assert all(isinstance(item["embedding"], str) for item in answered)
    assert [item.embedding for item in raw.parse().data] == expected


async def test_hosted_openai_embeddings_through_the_door(doors: Doors, openai_upstream: FakeOpenAI) -> None:
    await load_hosted(doors, openai_upstream)
    texts = ["one text", "another text here"]
    async with async_openai_client(doors) as client:
        default = await client.embeddings.create(model="m", input=texts, dimensions=12)
        floats = await client.embeddings.create(model="m", input=texts, dimensions=12, encoding_format="float")
    for response in (default, floats):
        assert [item.embedding for item in response.data] == [
            pytest.approx(fake_embedding(text, 12), abs=1e-6) for text in texts
        ]
        assert response.usage.prompt_tokens == 5
    sent = openai_upstream.requests[-1]
    assert (sent.method, sent.path) == ("POST", "/v1/embeddings")
    assert sent.body is not None
    assert (sent.body["input"], sent.body["dimensions"]) == (texts, 12)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": [1, 2, 3]}, "input"),
        ({"input": [[1, 2], [3]]}, "input"),
        ({"input": None}, "input"),
        ({"input": []}, "input"),
        ({"input": ["a", ""]}, "input[1]"),
        ({"input": "a", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "a", "dimensions": 0}, "dimensions"),
        ({"input": "a", "dimensions": "12"}, "dimensions"),
        ({"input": "a", "model": None}, "model"),
    ],
)
async def test_bad_embeddings_requests_are_400_naming_the_field(
    doors: Doors, door_stub: Stub, body: dict[str, Any], param: str
) -> None:
    await load_tiny_embedder(door_stub)
    async with httpx2.AsyncClient(base_url=base_url(doors)) as http:
        response = await http.post("/v1/embeddings", json={"model": "tiny-embed", **body})
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert response.headers["x-request-id"].startswith("req_")


async def test_models_that_cannot_embed_are_refused_in_openai_shape(
    tiny_door: Doors,  # noqa: F811 - the fixture
    anthropic_upstream: FakeAnthropic,
) -> None:
    await load_hosted(tiny_door, anthropic_upstream, "claude")
    async with async_openai_client(tiny_door) as client:
        with pytest.raises(openai.BadRequestError) as generation_model:
            await client.embeddings.create(model="tiny", input="hello")
        with pytest.raises(openai.BadRequestError) as anthropic_model:
            await client.embeddings.create(model="claude", input="hello")
        with pytest.raises(openai.NotFoundError) as unknown:
            await client.embeddings.create(model="nobody", input="hello")
    assert generation_model.value.code == "model_not_loaded_for_embeddings"
    assert "embedding" in generation_model.value.message
    assert anthropic_model.value.code == "embeddings_unsupported"
    assert generation_model.value.param == anthropic_model.value.param == "model"  # the member the client sent
    assert "openai" in anthropic_model.value.message
    assert unknown.value.code == "model_not_found"
    assert not [request for request in anthropic_upstream.requests if request.method == "POST"]


async def grpc_count(stub: Stub, tools: bool) -> int:
    request = pb.GenerateRequest(
        model_id="tiny",
        messages=[
            pb.ChatMessage(role=pb.ROLE_USER, content="the world says hello"),
            pb.ChatMessage(role=pb.ROLE_ASSISTANT, content="hello people"),
            pb.ChatMessage(role=pb.ROLE_USER, content="and again"),
        ],
        options=pb.GenerationOptions(max_tokens=3, system="Be brief."),
        tools=[WEATHER] if tools else [],
        tool_choice=tools_pb2.ToolChoice(mode=tools_pb2.TOOL_CHOICE_MODE_REQUIRED) if tools else None,
    )
    response = await stub.CountTokens(pb.CountTokensRequest(request=request))
    return response.count.prompt_tokens


async def test_anthropic_count_tokens_equals_grpc_and_the_prompt_usage_of_messages(
    tiny_door: Doors,  # noqa: F811 - the fixture
    door_stub: Stub,
) -> None:
    counts: dict[bool, int] = {}
    for tools in (False, True):
        # A call required, and enforced by grammar: the tools' words in the prompt count as the generation's do.
        options: Mapping[str, Any] = {"tools": [TOOL], "tool_choice": {"type": "any"}} if tools else {}
        with anthropic_client(tiny_door) as client:
            counted = await asyncio.to_thread(
                client.messages.count_tokens, model="tiny", messages=TURNS, system="Be brief.", **options
            )
        async with async_anthropic_client(tiny_door) as async_client:
            counted_async = await async_client.messages.count_tokens(
                model="tiny", messages=TURNS, system="Be brief.", **options
            )
            message = await async_client.messages.create(
                model="tiny", messages=TURNS, system="Be brief.", max_tokens=3, **options
            )
            # Anthropic's API refuses max_tokens here; the door ignores it, as clients send what they send create.
            counted_with_max_tokens = await async_client.messages.count_tokens(
                model="tiny", messages=TURNS, system="Be brief.", extra_body={"max_tokens": 3}, **options
            )
        counts[tools] = counted.input_tokens
        assert counted.input_tokens == counted_async.input_tokens == message.usage.input_tokens
        assert counted_with_max_tokens.input_tokens == counted.input_tokens
        assert counted.input_tokens == await grpc_count(door_stub, tools)
    assert counts[True] > counts[False] > 1  # the tools are part of the prompt


async def test_anthropic_count_tokens_sends_upstream_what_messages_sends(
    doors: Doors, anthropic_upstream: FakeAnthropic
) -> None:
    await load_hosted(doors, anthropic_upstream)
    anthropic_upstream.script.prompt_tokens = 23
    options: dict[str, Any] = {
        "model": "m",
        "messages": TURNS,
        "system": "Be brief.",
        "tools": [TOOL],
        "thinking": {"type": "enabled", "budget_tokens": 2048},
    }
    async with async_anthropic_client(doors) as client:
        # max_tokens, which the door ignores there, is not passed on: Anthropic's API refuses it.
        counted = await client.messages.count_tokens(**options, extra_body={"max_tokens": 4096})
        await client.messages.create(max_tokens=4096, **options)
    assert counted.input_tokens == 23
    count_body, messages_body = (
        next(request.body for request in anthropic_upstream.requests if request.path == path)
        for path in ("/v1/messages/count_tokens", "/v1/messages")
    )
    assert count_body is not None
    assert messages_body is not None
    assert "max_tokens" not in count_body
    for field in ("model", "messages", "system", "tools", "thinking"):
        assert count_body[field] == messages_body[field]


async def test_count_tokens_refusals_in_anthropic_shape(
    tiny_door: Doors,  # noqa: F811 - the fixture
    door_stub: Stub,
    openai_upstream: FakeOpenAI,
) -> None:
    await load_hosted(tiny_door, openai_upstream, "gpt")
    await load_tiny_embedder(door_stub)
    async with async_anthropic_client(tiny_door) as client:
        with pytest.raises(anthropic.BadRequestError) as openai_model:
            await client.messages.count_tokens(model="gpt", messages=TURNS)
        with pytest.raises(anthropic.BadRequestError) as embedding_model:
            await client.messages.count_tokens(model="tiny-embed", messages=TURNS)
        with pytest.raises(anthropic.BadRequestError) as no_messages:
            await client.messages.count_tokens(model="tiny", messages=[])
        with pytest.raises(anthropic.BadRequestError) as bad_block:
            await client.messages.count_tokens(model="tiny", messages=[NONSENSE])
        with pytest.raises(anthropic.NotFoundError):
            await client.messages.count_tokens(model="nobody", messages=TURNS)
    for raised in (openai_model, embedding_model, no_messages, bad_block):
        body = raised.value.body
        assert isinstance(body, dict)
        assert body["type"] == "error"
        assert body["error"]["type"] == "invalid_request_error"
    assert "count" in openai_model.value.message.lower()
    for wrong_model in (openai_model, embedding_model):  # the message begins with the field at fault, as the API's do
        assert isinstance(wrong_model.value.body, dict)
        assert wrong_model.value.body["error"]["message"].startswith("model: ")
    assert "messages[0].content[0].type" in bad_block.value.message
    assert not [request for request in openai_upstream.requests if request.method == "POST"]


async def test_both_routes_ask_for_the_token(server_env: Mapping[str, str]) -> None:
    token = "door-token-0123456789"
    async with serving_doors(server_env, ServingOptions(token=token)) as doors:
        async with async_openai_client(doors) as client, async_anthropic_client(doors) as anthropic_sdk:
            with pytest.raises(openai.AuthenticationError):
                await client.embeddings.create(model="tiny-embed", input="hello")
            with pytest.raises(anthropic.AuthenticationError):
                await anthropic_sdk.messages.count_tokens(model="tiny", messages=TURNS)
        async with async_anthropic_client(doors, token) as anthropic_sdk:
            with pytest.raises(anthropic.NotFoundError):  # past the token: no such model
                await anthropic_sdk.messages.count_tokens(model="tiny", messages=TURNS)


async def test_access_log_and_metrics_name_both_routes(
    tiny_door: Doors,  # noqa: F811 - the fixture
    door_stub: Stub,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="warpcore.access")
    await load_tiny_embedder(door_stub)
    async with async_openai_client(tiny_door) as client, async_anthropic_client(tiny_door) as anthropic_sdk:
        await client.embeddings.create(model="tiny-embed", input="hello")
        await anthropic_sdk.messages.count_tokens(model="tiny", messages=TURNS)
        with pytest.raises(openai.BadRequestError):
            await client.embeddings.create(model="tiny", input="hello")
    lines = [record for record in caplog.records if getattr(record, "protocol", "") == "http"]
    assert [(line.method, line.code, line.model) for line in lines] == [  # type: ignore[attr-defined]
        ("/v1/embeddings", "OK", "tiny-embed"),
        ("/v1/messages/count_tokens", "OK", "tiny"),
        ("/v1/embeddings", "FAILED_PRECONDITION", "tiny"),
    ]
    for method, code in [("/v1/embeddings", "OK"), ("/v1/messages/count_tokens", "OK")]:
        labels = {"method": method, "code": code, "protocol": "http"}
        assert tiny_door.engine.metrics.registry.get_sample_value("warpcore_requests_total", labels) == 1.0


async def test_embeddings_name_the_model_by_its_one_id_whatever_spelling_called_it(
    doors: Doors, door_stub: Stub
) -> None:
    await load_tiny_embedder(door_stub, model_id=TINY_MODEL)
    async with async_openai_client(doors) as client:
        response = await client.embeddings.create(model="./hf/warpcore/tiny//tiny.gguf", input=TEXTS[:1])
    assert response.model == TINY_MODEL


async def test_an_input_is_named_as_the_request_names_it(doors: Doors, door_stub: Stub) -> None:
    await load_tiny_embedder(door_stub)
    async with async_openai_client(doors) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.embeddings.create(model="tiny-embed", input=["ok", ""])
    error: Any = refused.value.body
    assert (error["param"], error["message"]) == ("input[1]", "input[1] is empty; every input needs text")


async def test_an_input_longer_than_the_context_gets_advice_that_works_on_each_door(
    doors: Doors, door_stub: Stub
) -> None:
    """gRPC can ask for the input to be truncated; the OpenAI embeddings API has no such field, so the door, which
    refuses an unknown one, cannot advise it."""
    await load_tiny_embedder(door_stub, context_size=16)
    long_text = " ".join(["the world"] * 40)
    async with async_openai_client(doors) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.embeddings.create(model="tiny-embed", input=["hello", long_text])
        with pytest.raises(openai.BadRequestError) as truncating:
            await client.embeddings.create(model="tiny-embed", input=long_text, extra_body={"truncate": True})
    error: Any = refused.value.body
    assert (error["param"], error["code"]) == ("input[1]", "context_length_exceeded")
    assert error["message"].endswith("context; shorten it or load the model with a larger context_size")
    assert truncating.value.code == "unknown_field"
    with pytest.raises(grpc.aio.AioRpcError) as over_grpc:
        await embed(door_stub, ["hello", long_text])
    assert "shorten it, set options.truncate, or load" in str(over_grpc.value.details())
    assert len((await embed(door_stub, [long_text], truncate=True)).embeddings) == 1
