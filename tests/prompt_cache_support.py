"""Shared by the prompt cache's tests (tests/test_prompt_cache.py, tests/test_prompt_in_place.py,
tests/test_http_prompt_cache.py): the system prompts and turns they send, the embedded Gemma (`gemma`), a load with a
cache cap, the cache's metrics, a stream's text with its log-probabilities, and no answer decoded ahead
(`nothing_decoded_ahead`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from warpcore.server.adapters.llama import prompt_reuse
from warpcore.server.rpc.server import WarpcoreServer
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


def system_text(rules: int) -> str:
    return " ".join(f"Rule {n}: answer briefly, politely and only about the village of Elm." for n in range(rules))


# Several prefill pieces on either model, each prompt a continuation of the one before.
SYSTEM = system_text(12)
# On Gemma, over 512 tokens: past its sliding window (whose cells a saved beginning leaves out) and into the numbers
# of KV cells where llama.cpp's flash attention kernel splits a lone sequence's cells between threads.
LONG_SYSTEM = system_text(40)
# Three of Gemma's sliding windows, as the bench's system prompt.
LONGER_SYSTEM = system_text(100)
TURNS = ("Who lives by the river?", "And what do they grow?", "When is the market held?")


@pytest.fixture
def gemma(gemma_path: tuple[Path, str], gemma_stub: Stub) -> tuple[Stub, str]:
    """A server's stub, and the embedded Gemma's name under its MODELS_PATH."""
    return gemma_stub, gemma_path[1]


async def load(stub: Stub, model: str, model_id: str, *, parallel: int, cache_tokens: int | None) -> None:
    local = pb.LocalBackendConfig(parallel=parallel, prompt_cache_tokens=cache_tokens)
    await stub.LoadModel(
        pb.LoadModelRequest(
            backend=pb.BACKEND_TYPE_LLAMA_CPP,
            model=model,
            model_id=model_id,
            model_config=pb.ModelConfig(context_size=2048),
            backend_config=pb.BackendConfig(local=local),
        )
    )


def lookups(server: WarpcoreServer, model_id: str, result: str) -> float:
    value = server.metrics.registry.get_sample_value(
        "warpcore_prompt_cache_lookups_total", {"model": model_id, "result": result}
    )
    return value or 0.0


def cached_tokens(server: WarpcoreServer, model_id: str) -> float:
    return server.metrics.registry.get_sample_value("warpcore_prompt_cache_tokens", {"model": model_id}) or 0.0


async def scored(stub: Stub, request: pb.GenerateRequest) -> tuple[str, list[tuple[str, float]], pb.GenerateResult]:
    """The text of a Generate stream, each token's log-probability, and its result frame."""
    text: list[str] = []
    scores: list[tuple[str, float]] = []
    result: list[pb.GenerateResult] = []
    async for frame in stub.Generate(request):
        if frame.HasField("delta"):
            text.append(frame.delta.text)
            scores.extend((scored.token, scored.logprob) for scored in frame.delta.logprobs)
        else:
            result.append(frame.result)
    assert len(result) == 1
    return "".join(text), scores, result[0]


@pytest.fixture
def nothing_decoded_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    """No answer decoded ahead of the next turn (test_prompt_in_place.py): each turn starts from the prompt before."""
    monkeypatch.setattr(prompt_reuse, "AHEAD_AFTER_SECONDS", 3600.0)
