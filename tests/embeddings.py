"""Helpers for tests of Embed: the tiny model's dimensions, texts to embed, the tiny model loaded to embed, an Embed
call, its vectors, their cosine, and a refusal."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import TINY_MODEL
from warpcore.v1 import embeddings_pb2 as epb
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


TINY_DIMENSIONS = 64  # the tiny model's embedding length (tests/tiny_model.py)
TEXTS = ["the world", "people say hello", "a", "the world and the people of the world say hello again"]


async def load_tiny_embedder(
    stub: Stub, model_id: str = "tiny-embed", context_size: int | None = None, pooling: int = 0
) -> pb.Model:
    llama_cpp = pb.LlamaCppConfig(embedding=True, pooling=pooling)  # type: ignore[arg-type]
    response = await stub.LoadModel(
        pb.LoadModelRequest(
            backend=pb.BACKEND_TYPE_LLAMA_CPP,
            model=TINY_MODEL,
            model_id=model_id,
            model_config=pb.ModelConfig(context_size=context_size),
            backend_config=pb.BackendConfig(local=pb.LocalBackendConfig(llama_cpp=llama_cpp)),
        )
    )
    return response.model


async def embed(
    stub: Stub, inputs: Sequence[str], model_id: str = "tiny-embed", **options: object
) -> epb.EmbedResponse:
    request = epb.EmbedRequest(model_id=model_id, inputs=inputs, options=epb.EmbedOptions(**options))  # type: ignore[arg-type]
    return await stub.Embed(request)


def vectors(response: epb.EmbedResponse) -> list[list[float]]:
    return [list(embedding.values) for embedding in response.embeddings]


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


async def refusal(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call  # type: ignore[misc]
    return raised.value
