"""How far a text's vector from the embedded Gemma embedding model moves with the texts embedded beside it: short
texts (one or two tokens, the most sensitive: a pooled mean of few rows) alone and in batches of several neighbour
mixes, through gRPC Embed and the HTTP door's /v1/embeddings, stay within the cosine bound embeddings.proto and the
README state."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.embeddings import cosine
from tests.http_door import async_openai_client
from warpcore.server.doors import Doors
from warpcore.server.embedded import EMBEDDED_EMBEDDING_MODEL_ID, embedded_load_specs
from warpcore.v1 import embeddings_pb2 as epb
from warpcore.v1 import inference_pb2_grpc

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

ROOT = Path(__file__).resolve().parents[1]
SHORT = ["x", "ok", "7", "hi", "cat", "Paris", "hello world", "😀"]
SENTENCES = ["The capital of France", "A cat on a mat", "Grüße aus Köln — ünïcödé 😀", "rivers " * 40]
NEIGHBOURS = [  # what goes beside the short texts: sentences before or after, one-token texts, a long text
    SENTENCES[:3],
    ["y"],
    ["a", "b", "The capital of France", "c"],
    [SENTENCES[3], "z"],
]


def documented_bound() -> float:
    """The least cosine the proto promises between one text's vectors from two calls; the README says the same."""
    proto = " ".join((ROOT / "proto" / "warpcore" / "v1" / "embeddings.proto").read_text().replace("//", "").split())
    readme = " ".join((ROOT / "README.md").read_text().split())
    promised = re.findall(r"cosine similarity above (0\.\d+)", proto)
    assert len(promised) == 1
    assert f"cosine above {promised[0]}" in readme
    return float(promised[0])


@pytest.fixture(scope="module")
def gemma_models_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gemma-models")


@pytest.fixture
def server_env(gemma_models_path: Path) -> dict[str, str]:
    """A MODELS_PATH of this module's own: the embedded model assembled in the session's would be listed by the tests
    of what a MODELS_PATH holds."""
    return {"MODELS_PATH": str(gemma_models_path)}


@pytest.fixture
async def gemma_embedder(doors: Doors, server_env: dict[str, str]) -> AsyncIterator[Stub]:
    specs = embedded_load_specs(Path(server_env["MODELS_PATH"]))
    (spec,) = [spec for spec in specs if spec.model_id == EMBEDDED_EMBEDDING_MODEL_ID]
    await doors.engine.load(spec)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{doors.grpc.port}") as channel:
        yield inference_pb2_grpc.InferenceServiceStub(channel)


async def grpc_vectors(stub: Stub, inputs: list[str]) -> list[list[float]]:
    response = await stub.Embed(epb.EmbedRequest(model_id=EMBEDDED_EMBEDDING_MODEL_ID, inputs=inputs))
    return [list(embedding.values) for embedding in response.embeddings]


async def test_a_short_texts_vector_in_any_batch_stays_within_the_documented_bound(
    doors: Doors, gemma_embedder: Stub
) -> None:
    bound = documented_bound()
    alone = {text: (await grpc_vectors(gemma_embedder, [text]))[0] for text in SHORT}
    assert (await grpc_vectors(gemma_embedder, ["x"]))[0] == alone["x"]  # one text per call: its own vector, exactly
    worst = 1.0
    for index, neighbours in enumerate(NEIGHBOURS):  # the short texts after their neighbours, or before
        batch = [*neighbours, *SHORT] if index % 2 == 0 else [*SHORT[::-1], *neighbours]
        for text, vector in zip(batch, await grpc_vectors(gemma_embedder, batch), strict=True):
            if text in alone:
                worst = min(worst, cosine(alone[text], vector))
    async with async_openai_client(doors) as client:
        for batch in ([*SENTENCES[:3], *SHORT], ["y", *SHORT]):
            response = await client.embeddings.create(model=EMBEDDED_EMBEDDING_MODEL_ID, input=batch)
            for item in response.data:
                if batch[item.index] in alone:
                    worst = min(worst, cosine(alone[batch[item.index]], item.embedding))
    assert worst > bound
    assert worst < 1.0  # the batches did move the vectors: this checks the bound, not an exact equality
