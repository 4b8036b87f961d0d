"""The budget of loaded local models kept against busy ones before a load, by the model's last known size or its
estimate: a load that cannot fit beside the busy models is refused without unloading the idle ones, and the refusal
names the limit it meets."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import TINY_MODEL, failed_stream, greedy, rich_details
from tests.residency import listed, load_request, server_and_stub
from tests.test_model_lifecycle import endless_stream, refusal
from warpcore.server.adapters.llama.adapter import LlamaCppAdapter
from warpcore.server.core.domain import LocalSettings
from warpcore.server.core.residency import ResidencyPolicy
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

# The tiny model holds 512 bytes a KV cell, and a context of cells again for its prompt cache: 8 MiB at this context.
BUDGET_CONTEXT = 8192
MEMORY_BUDGET = 12 * 2**20  # one such model fits, two do not


async def test_the_memory_budget_refuses_a_load_beside_a_busy_model_by_known_size_or_estimate(
    server_env: Mapping[str, str],
) -> None:
    async for server, stub, events in server_and_stub(server_env, ResidencyPolicy(max_bytes=MEMORY_BUDGET)):
        await stub.LoadModel(load_request("known", context_size=BUDGET_CONTEXT))
        await stub.LoadModel(load_request("busy", context_size=BUDGET_CONTEXT))  # evicts the idle one
        assert (await listed(stub))["known"].state == pb.MODEL_STATE_AVAILABLE
        stream = await endless_stream(stub, "busy")
        full = (grpc.StatusCode.RESOURCE_EXHAUSTED, "MODEL_BUDGET_FULL")
        # Its last known size: a Generate on the evicted model cannot load it again beside the busy one.
        _, error = await failed_stream(stub.Generate(greedy("the", 2, model_id="known")))
        assert (error.code(), rich_details(error)[0].reason) == full
        # Never loaded: refused on its estimate, before any load.
        assert await refusal(stub.LoadModel(load_request("new", context_size=BUDGET_CONTEXT))) == full
        assert (events.loads("known"), events.loads("new")) == (1, 0)
        sample = server.metrics.registry.get_sample_value
        assert sample("warpcore_models_loaded", {"backend": "llama_cpp"}) == 1
        # Once the stream ends the busy model is idle, and makes room.
        stream.cancel()
        await stub.LoadModel(load_request("new", context_size=BUDGET_CONTEXT))
        models = await listed(stub)
        assert (models["new"].state, models["busy"].state) == (pb.MODEL_STATE_READY, pb.MODEL_STATE_AVAILABLE)
        assert models["new"].residency.memory_bytes <= MEMORY_BUDGET


async def test_a_file_llama_cpp_cannot_read_is_refused_alike_under_a_memory_budget(
    server_env: Mapping[str, str], models_path: Path
) -> None:
    broken = models_path / "unreadable.gguf"
    broken.write_bytes(b"GGUF but not really" * 10)
    try:
        async for _, stub, _ in server_and_stub(server_env, ResidencyPolicy(max_bytes=MEMORY_BUDGET)):
            request = pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP, model="unreadable.gguf")
            assert await refusal(stub.LoadModel(request)) == (
                grpc.StatusCode.FAILED_PRECONDITION,
                "MODEL_LOAD_FAILED",
            )
    finally:
        broken.unlink()


@pytest.mark.parametrize(
    ("context_size", "settings"),
    [
        (None, LocalSettings()),
        (BUDGET_CONTEXT, LocalSettings(parallel=2)),
        (512, LocalSettings(prompt_cache_tokens=0)),
        (256, LocalSettings(embedding=True)),
    ],
)
async def test_the_estimate_before_a_load_is_near_the_size_the_load_reports(
    server_env: Mapping[str, str], context_size: int | None, settings: LocalSettings
) -> None:
    adapter = LlamaCppAdapter(settings, server_env)
    try:
        estimate = await adapter.estimate_memory(TINY_MODEL, context_size)
        loaded = (await adapter.load(TINY_MODEL, context_size)).memory_bytes
    finally:
        await adapter.close()
    assert loaded <= estimate <= loaded * 1.05  # the file's size stands for the weights, with its metadata


async def test_a_load_that_cannot_fit_beside_a_busy_model_unloads_no_idle_one(server_env: Mapping[str, str]) -> None:
    """Unloading the idle model would not make room while the busy one runs: the refusal comes first, and the idle
    model stays loaded, its prompt cache warm."""
    async for server, stub, events in server_and_stub(server_env, ResidencyPolicy(max_bytes=MEMORY_BUDGET)):
        await stub.LoadModel(load_request("idle", context_size=BUDGET_CONTEXT // 4))
        await stub.LoadModel(load_request("busy", context_size=BUDGET_CONTEXT // 4))
        stream = await endless_stream(stub, "busy")
        # Fits the budget alone, not beside the busy model.
        request = load_request("large", context_size=BUDGET_CONTEXT * 5 // 4)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.LoadModel(request)
        assert (refused.value.code(), rich_details(refused.value)[0].reason) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "MODEL_BUDGET_FULL",
        )
        assert f"of {MEMORY_BUDGET} bytes estimated in use" in (refused.value.details() or "")
        assert ("idle", False) not in events.seen
        sample = server.metrics.registry.get_sample_value
        assert sample("warpcore_model_unloads_total", {"reason": "room"}) == 0
        assert (await listed(stub))["idle"].state == pb.MODEL_STATE_READY
        # Once the busy model is idle too, unloading both makes room.
        stream.cancel()
        await stub.LoadModel(request)
        assert {("idle", False), ("busy", False)} <= set(events.seen)


async def test_a_budget_of_models_refuses_in_models_not_bytes(server_env: Mapping[str, str]) -> None:
    async for _, stub, _ in server_and_stub(server_env, ResidencyPolicy(max_models=1)):
        await stub.LoadModel(load_request("busy"))
        stream = await endless_stream(stub, "busy")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.LoadModel(load_request("other"))
        stream.cancel()
        message = refused.value.details() or ""
        assert "(1 of 1 models loaded)" in message
        assert "bytes" not in message
