"""The main job: `warpcore-server` as a real process, serving the embedded Gemma 3 270M model."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from llama_cpp import Llama

from bench.harness import rss_bytes
from tests.conftest import collect, greedy
from tests.embeddings import cosine
from warpcore.server.embedded import EMBEDDED_EMBEDDING_MODEL_ID, EMBEDDED_MODEL_ID
from warpcore.v1 import embeddings_pb2 as epb
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


class ServerProcess:
    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port


@pytest.fixture(scope="module")
def gemma_models_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gemma-models")


@pytest.fixture
async def server_process(gemma_models_path: Path) -> AsyncIterator[ServerProcess]:
    env = {**os.environ, "MODELS_PATH": str(gemma_models_path)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "warpcore.server", "--port", "0", env=env, stderr=asyncio.subprocess.PIPE
    )
    assert process.stderr is not None
    try:
        async with asyncio.timeout(120):
            while line := (await process.stderr.readline()).decode():
                if match := re.search(r"serving on 127\.0\.0\.1:(\d+)", line):
                    break
        assert match, "the server exited before serving"
        yield ServerProcess(process, int(match.group(1)))
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def direct_greedy_completion(models_path: Path, prompt: str, max_tokens: int) -> str:
    """The same generation straight through llama-cpp-python, as the reference."""
    llama = Llama(model_path=str(next(models_path.rglob("*.gguf"))), n_ctx=4096, verbose=False)
    try:
        completion = llama.create_completion(prompt, max_tokens=max_tokens, temperature=0.0)
        return str(completion["choices"][0]["text"])  # type: ignore[index]
    finally:
        llama.close()


GEMMA_DIMENSIONS = 640
SENTENCES = ["The capital of France is Paris.", "Cats sleep most of the day.", "The capital of France is Paris."]


def direct_embeddings(models_path: Path, texts: list[str]) -> list[list[float]]:
    """The same texts through llama-cpp-python's own Llama.embed (mean pooling, normalized), as the reference."""
    llama = Llama(
        model_path=str(next(models_path.rglob("*.gguf"))), embedding=True, pooling_type=1, n_ctx=4096, verbose=False
    )
    try:
        return [[float(x) for x in vector] for vector in llama.embed(texts, normalize=True)]
    finally:
        llama.close()


async def check_embeddings(stub: Stub, models_path: Path) -> None:
    """The embedding model over the same file: vectors of Gemma's size, the same text the same vector, a batch as
    one by one, and what llama-cpp-python's own embed gives."""
    response = await stub.Embed(epb.EmbedRequest(model_id=EMBEDDED_EMBEDDING_MODEL_ID, inputs=SENTENCES))
    batch = [list(embedding.values) for embedding in response.embeddings]
    assert [len(vector) for vector in batch] == [GEMMA_DIMENSIONS] * 3
    assert cosine(batch[0], batch[0]) == pytest.approx(1.0, abs=1e-9)
    assert cosine(batch[0], batch[2]) == pytest.approx(1.0, abs=1e-6)
    assert cosine(batch[0], batch[1]) < 0.99
    for text, together in zip(SENTENCES, batch, strict=True):
        alone = await stub.Embed(epb.EmbedRequest(model_id=EMBEDDED_EMBEDDING_MODEL_ID, inputs=[text]))
        assert cosine(list(alone.embeddings[0].values), together) == pytest.approx(1.0, abs=1e-6)
    for direct, ours in zip(direct_embeddings(models_path, SENTENCES), batch, strict=True):
        assert cosine(direct, ours) == pytest.approx(1.0, abs=1e-5)


def file_bytes(models_path: Path) -> int:
    return next(models_path.rglob("*.gguf")).stat().st_size


async def test_the_embedding_model_reports_the_memory_a_full_batch_takes(
    server_process: ServerProcess, gemma_models_path: Path
) -> None:
    # Every token of an embedding context is an output whose logits llama.cpp makes over Gemma's 262,144-entry
    # vocabulary: a batch that fills the context takes about twice as much as the weights, and the residency
    # budget must see it before a client sends one.
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server_process.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        listed = {model.id: model for model in (await stub.ListModels(pb.ListModelsRequest())).models}
        embedder = listed[EMBEDDED_EMBEDDING_MODEL_ID]
        weights = file_bytes(gemma_models_path)
        await stub.Embed(epb.EmbedRequest(model_id=EMBEDDED_EMBEDDING_MODEL_ID, inputs=SENTENCES[:1]))
        before = rss_bytes([server_process.process.pid])
        texts = [" ".join(f"{topic} {index}" for index in range(60)) for topic in ("rivers", "towns", "roads")]
        response = await stub.Embed(epb.EmbedRequest(model_id=EMBEDDED_EMBEDDING_MODEL_ID, inputs=texts))
        assert response.prompt_tokens > embedder.context_size * 3 // 4  # nearly a full batch
        grown = rss_bytes([server_process.process.pid]) - before
        beyond_weights = embedder.residency.memory_bytes - weights
        assert beyond_weights / 2 < grown <= beyond_weights


async def test_server_streams_from_the_embedded_model_and_exits_cleanly(
    server_process: ServerProcess, gemma_models_path: Path
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server_process.port}") as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING

        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        models = (await stub.ListModels(pb.ListModelsRequest())).models
        assert [(m.id, m.state, m.backend) for m in models] == [
            (EMBEDDED_MODEL_ID, pb.MODEL_STATE_READY, pb.BACKEND_TYPE_LLAMA_CPP),
            (EMBEDDED_EMBEDDING_MODEL_ID, pb.MODEL_STATE_READY, pb.BACKEND_TYPE_LLAMA_CPP),
        ]
        await check_embeddings(stub, gemma_models_path)

        text, result = await collect(stub.Generate(greedy("The capital of France is", 12, model_id=EMBEDDED_MODEL_ID)))
        assert text == direct_greedy_completion(gemma_models_path, "The capital of France is", 12)
        assert result.finish_reason in (pb.FINISH_REASON_LENGTH, pb.FINISH_REASON_STOP)
        assert 0 < result.usage.completion_tokens <= 12

        chat = pb.GenerateRequest(
            model_id=EMBEDDED_MODEL_ID,
            messages=[pb.ChatMessage(role=pb.ROLE_USER, content="Name a color of the sky.")],
            options=pb.GenerationOptions(max_tokens=24, temperature=0, system="Answer in one word."),
        )
        answer, chat_result = await collect(stub.Generate(chat))
        assert answer.strip()
        assert chat_result.usage.prompt_tokens > 10  # the Gemma turn format wraps the message
        counted = await stub.CountTokens(pb.CountTokensRequest(request=chat))
        assert counted.count.prompt_tokens == chat_result.usage.prompt_tokens

    server_process.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(server_process.process.wait(), 30) == 0
