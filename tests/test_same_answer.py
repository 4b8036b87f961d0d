"""Same request, same answer: greedy text on a local model depends on nothing but the request itself."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import collect, greedy, serving
from tests.test_logprobs import scored_stream
from warpcore.server.embedded import install_embedded_model
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

PROMPT = "Once upon a time"
TOKENS = 32


@pytest.fixture(scope="module")
def gemma_path(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("gemma")
    return root, install_embedded_model(root)


@pytest.fixture
async def gemma_stub(gemma_path: tuple[Path, str]) -> AsyncIterator[Stub]:
    root, _ = gemma_path
    async with (
        serving({"MODELS_PATH": str(root), "LLAMA_THREADS": "2"}) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        yield inference_pb2_grpc.InferenceServiceStub(channel)


async def load_gemma(stub: Stub, name: str, model_id: str, parallel: int) -> None:
    local = pb.LocalBackendConfig(parallel=parallel)
    await stub.LoadModel(
        pb.LoadModelRequest(
            backend=pb.BACKEND_TYPE_LLAMA_CPP,
            model=name,
            model_id=model_id,
            model_config=pb.ModelConfig(context_size=512),
            backend_config=pb.BackendConfig(local=local),
        )
    )


async def text_of(stub: Stub, request: pb.GenerateRequest) -> str:
    text, result = await collect(stub.Generate(request))
    assert result.finish_reason == pb.FINISH_REASON_LENGTH
    return text


async def test_greedy_text_does_not_depend_on_the_request_before_it(
    gemma_stub: Stub, gemma_path: tuple[Path, str]
) -> None:
    # The request before shares no prefix but the BOS token; reusing it made llama.cpp evaluate the rest of the
    # prompt in other pieces, which changes the logits, and with them the greedy text.
    await load_gemma(gemma_stub, gemma_path[1], "serial", parallel=1)
    await text_of(gemma_stub, greedy("Zebra crossing", 1, "serial"))
    after_another = await text_of(gemma_stub, greedy(PROMPT, TOKENS, "serial"))
    again = await text_of(gemma_stub, greedy(PROMPT, TOKENS, "serial"))
    assert after_another == again


async def test_greedy_text_is_the_same_alone_queued_and_whatever_the_parallel_setting(
    gemma_stub: Stub, gemma_path: tuple[Path, str]
) -> None:
    await load_gemma(gemma_stub, gemma_path[1], "serial", parallel=1)
    await load_gemma(gemma_stub, gemma_path[1], "batched", parallel=4)
    alone = await text_of(gemma_stub, greedy(PROMPT, TOKENS, "serial"))
    queued = await asyncio.gather(*(text_of(gemma_stub, greedy(PROMPT, TOKENS, "serial")) for _ in range(8)))
    batched = await text_of(gemma_stub, greedy(PROMPT, TOKENS, "batched"))
    assert queued == [alone] * 8
    assert batched == alone


async def test_a_long_prompt_scores_the_same_alone_and_beside_another(
    gemma_stub: Stub, gemma_path: tuple[Path, str]
) -> None:
    # Over 512 KV cells, where llama.cpp's CPU flash attention treats a lone sequence unlike several together; the
    # log-probabilities show a difference in the last bits long before the text does.
    long_prompt = " ".join(f"Line {n}: the lighthouse keeper counts ships." for n in range(60))
    other = " ".join(f"Entry {n}: the baker sells rye bread." for n in range(50))
    local = pb.LocalBackendConfig(parallel=2)
    await gemma_stub.LoadModel(
        pb.LoadModelRequest(
            backend=pb.BACKEND_TYPE_LLAMA_CPP,
            model=gemma_path[1],
            model_id="pair",
            model_config=pb.ModelConfig(context_size=1024),
            backend_config=pb.BackendConfig(local=local),
        )
    )
    request = greedy(long_prompt, 8, "pair", logprobs=True, top_logprobs=3)
    alone_text, alone_scores, alone = await scored_stream(gemma_stub.Generate(request))
    assert alone.usage.prompt_tokens > 512
    # A neighbour that generates all the while the long prompt is decoded and answered.
    neighbour = gemma_stub.Generate(greedy(other, 400, "pair"))
    await anext(aiter(neighbour))
    beside_text, beside_scores, _ = await scored_stream(gemma_stub.Generate(request))
    neighbour.cancel()
    assert (beside_text, beside_scores) == (alone_text, alone_scores)
