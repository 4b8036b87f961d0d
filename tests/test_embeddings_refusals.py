"""Embed end to end: what Embed refuses: an input longer than the context, bad fields, a model of the other kind,
pooling without embedding, and vectors that would not fit in one response."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from tests.conftest import TINY_MODEL, collect, greedy, load_tiny, rich_details, serving
from tests.embeddings import TINY_DIMENSIONS, embed, load_tiny_embedder, refusal, vectors
from tests.fakes.openai_api import EMBEDDING_DIMENSIONS, FakeOpenAI
from tests.hosted import load
from warpcore.server.core.bounds import MAX_REQUEST_ID
from warpcore.server.core.embeddings import response_bytes
from warpcore.server.rpc.server import ServingOptions
from warpcore.v1 import embeddings_pb2 as epb
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


async def test_an_input_longer_than_the_context_is_refused_unless_truncated(stub: Stub) -> None:
    await load_tiny_embedder(stub, context_size=16)
    long_text = " ".join(["the world"] * 40)
    error = await refusal(embed(stub, ["hello", long_text]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    info, fields = rich_details(error)
    assert (info.reason, fields) == ("CONTEXT_LENGTH_EXCEEDED", ["inputs[1]"])

    truncated = await embed(stub, ["hello", long_text], truncate=True)
    assert len(truncated.embeddings) == 2
    assert len(truncated.embeddings[1].values) == TINY_DIMENSIONS
    short = await embed(stub, ["hello"])
    assert truncated.prompt_tokens == short.prompt_tokens + 16


@pytest.mark.parametrize(
    ("inputs", "options", "field"),
    [
        ([], {}, "inputs"),
        (["ok", ""], {}, "inputs[1]"),
        (["x"] * 2049, {}, "inputs"),
        (["ok"], {"dimensions": 0}, "options.dimensions"),
        (["ok"], {"dimensions": 32}, "options.dimensions"),  # the tiny model's vectors have 64
    ],
)
async def test_bad_requests_name_the_field(stub: Stub, inputs: list[str], options: dict[str, Any], field: str) -> None:
    await load_tiny_embedder(stub)
    error = await refusal(embed(stub, inputs, **options))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rich_details(error)[1] == [field]


async def test_a_generation_model_refuses_to_embed_and_an_embedding_model_to_generate(stub: Stub) -> None:
    await load_tiny(stub, model_id="tiny")
    await load_tiny_embedder(stub)
    error = await refusal(embed(stub, ["hello"], model_id="tiny"))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert rich_details(error)[0].reason == "MODEL_NOT_LOADED_FOR_EMBEDDINGS"
    assert rich_details(error)[1] == ["model_id"]  # the model named is what cannot embed
    assert "embedding" in (error.details() or "")

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await collect(stub.Generate(greedy("the world", 4, model_id="tiny-embed")))
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert rich_details(raised.value)[0].reason == "MODEL_LOADED_FOR_EMBEDDINGS"
    assert rich_details(raised.value)[1] == ["model_id"]

    missing = await refusal(embed(stub, ["hello"], model_id="nobody"))
    assert missing.code() == grpc.StatusCode.NOT_FOUND


async def test_pooling_without_embedding_is_refused(stub: Stub) -> None:
    llama_cpp = pb.LlamaCppConfig(pooling=epb.POOLING_CLS)
    request = pb.LoadModelRequest(
        backend=pb.BACKEND_TYPE_LLAMA_CPP,
        model=TINY_MODEL,
        backend_config=pb.BackendConfig(local=pb.LocalBackendConfig(llama_cpp=llama_cpp)),
    )
    error = await refusal(stub.LoadModel(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rich_details(error)[1] == ["backend_config.local.llama_cpp.pooling"]


async def test_vectors_that_would_not_fit_in_one_response_are_refused_naming_how_many_fit(
    server_env: dict[str, str], openai_upstream: FakeOpenAI
) -> None:
    """Inputs whose vectors exceed the server's max message size are INVALID_ARGUMENT, never a transport failure
    logged as OK: before any work where the vectors' length is known (a local model, or dimensions asked for), once
    measured where not (an API's own length); as many as the refusal names fit."""
    limit = 20_000
    async with (
        serving(server_env, ServingOptions(max_message_bytes=limit)) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        await load_tiny_embedder(stub)
        openai_upstream.models.append("text-embedding-3-small")
        await load(stub, openai_upstream, model="text-embedding-3-small")
        cases: list[tuple[str, dict[str, int], int, bool]] = [
            ("tiny-embed", {}, TINY_DIMENSIONS, False),
            ("m", {"dimensions": TINY_DIMENSIONS}, TINY_DIMENSIONS, False),
            ("m", {}, EMBEDDING_DIMENSIONS, True),
        ]
        for model_id, options, dimensions, measured in cases:
            too_many = limit // (4 * dimensions) + 1  # their values alone do not fit
            sent = len(openai_upstream.requests)
            refused = await refusal(embed(stub, ["x"] * too_many, model_id=model_id, **options))
            assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.details()
            info, fields = rich_details(refused)
            assert (info.reason, fields) == ("RESPONSE_TOO_LARGE", ["inputs"])
            assert len(openai_upstream.requests) == sent + measured  # refused before any work where it can be
            named = re.search(r"at most (\d+) inputs", refused.details() or "")
            assert named is not None, refused.details()
            most = int(named.group(1))
            assert len(vectors(await embed(stub, ["x"] * most, model_id=model_id, **options))) == most
            sent = len(openai_upstream.requests)
            # Known length: one more than the most named is refused before any work, never once done. Unknown:
            # the values fit, but not with the response's framing, which only the vectors tell.
            over = too_many - 1 if measured else most + 1
            refused = await refusal(embed(stub, ["x"] * over, model_id=model_id, **options))
            assert rich_details(refused)[0].reason == "RESPONSE_TOO_LARGE"
            assert len(openai_upstream.requests) == sent + measured


@pytest.mark.parametrize("dimensions", [1, 64, 640, 4096, 65_536])
@pytest.mark.parametrize("count", [1, 7])
def test_the_response_size_named_before_any_work_is_the_most_a_response_takes(dimensions: int, count: int) -> None:
    """check_response_room's bound holds for any vectors, token count and request id a response may carry."""
    response = epb.EmbedResponse(
        embeddings=[epb.Embedding(values=[-1.5e38] * dimensions) for _ in range(count)],
        prompt_tokens=2**32 - 1,
        upstream_request_id="r" * MAX_REQUEST_ID,
    )
    assert response.ByteSize() <= response_bytes(count, dimensions)


@pytest.mark.parametrize(
    ("name", "local"), [("parallel", {"parallel": 2}), ("prompt_cache_tokens", {"prompt_cache_tokens": 0})]
)
async def test_settings_of_text_generation_are_refused_for_an_embedding_model(
    stub: Stub, name: str, local: dict[str, int]
) -> None:
    """A tester's finding: parallel was taken and ignored, where pooling without embedding is refused."""
    llama_cpp = pb.LlamaCppConfig(embedding=True)
    request = pb.LoadModelRequest(
        backend=pb.BACKEND_TYPE_LLAMA_CPP,
        model=TINY_MODEL,
        model_id="tiny-embed",
        backend_config=pb.BackendConfig(local=pb.LocalBackendConfig(llama_cpp=llama_cpp, **local)),  # type: ignore[arg-type]
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.LoadModel(request)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"{name} applies only to a model loaded for text generation" in (raised.value.details() or "")
