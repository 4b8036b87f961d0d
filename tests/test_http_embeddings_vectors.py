"""The door's POST /v1/embeddings (OpenAI) with the official SDK: the vectors of the gRPC Embed, from llama.cpp (the
tiny model) and the hosted fakes, base64 by default, bad requests and models that cannot embed refused, the model named
by its one id, and inputs named and advised as each door takes them."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import grpc
import httpx2
import openai
import pytest

from tests.conftest import TINY_MODEL
from tests.embeddings import TEXTS, embed, load_tiny_embedder, vectors
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI, fake_embedding
from tests.http_door import async_openai_client, base_url, load_hosted, openai_client
from tests.http_embeddings_support import door_stub
from tests.test_http_door_sdks import tiny_door  # noqa: F401 - the fixture
from warpcore.server.core.errors import EXCEEDS_CONTEXT_SIZE, MAXIMUM_CONTEXT_LENGTH
from warpcore.server.doors import Doors

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

__all__ = ["door_stub"]  # the fixture, used by name


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
    assert error["message"].startswith("input[1] is too long: ")
    assert all(phrase in error["message"] for phrase in (MAXIMUM_CONTEXT_LENGTH, EXCEEDS_CONTEXT_SIZE))  # routers read
    assert error["message"].endswith("16 tokens; shorten it or load the model with a larger context_size")
    assert truncating.value.code == "unknown_field"
    with pytest.raises(grpc.aio.AioRpcError) as over_grpc:
        await embed(door_stub, ["hello", long_text])
    assert "shorten it, set options.truncate, or load" in str(over_grpc.value.details())
    assert len((await embed(door_stub, [long_text], truncate=True)).embeddings) == 1
