"""Models that manage their own residency: a budget of loaded local models with least-recently-used eviction of idle
ones, the memory an eviction returns, and what the metrics say."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import os
import urllib.request
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TINY_MODEL, collect, greedy, rich_details
from tests.residency import WAIT_SECONDS, ModelEvents, idle, listed, load_request, server_and_stub
from warpcore.server.core.domain import Admission, BackendKind, LoadSpec
from warpcore.server.core.residency import ResidencyPolicy
from warpcore.server.rpc.server import WarpcoreServer
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


# The tiny model's KV cache takes 512 bytes a cell: the largest context makes its memory plain to see in RSS.
BIG_CONTEXT = 131072


@pytest.fixture
async def one_model_budget(
    server_env: Mapping[str, str],
) -> AsyncIterator[tuple[WarpcoreServer, Stub, ModelEvents]]:
    async for running in server_and_stub(server_env, ResidencyPolicy(max_models=1)):
        yield running


def rss_bytes() -> int:
    """This process's resident memory (the server runs in it), after handing the allocator's free pages back, so
    that what tests before this one freed does not count."""
    gc.collect()
    ctypes.CDLL(None).malloc_trim(0)
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def test_a_one_model_budget_evicts_the_idle_model_and_its_memory_returns(
    one_model_budget: tuple[WarpcoreServer, Stub, ModelEvents],
) -> None:
    server, stub, events = one_model_budget
    before = rss_bytes()
    big = (await stub.LoadModel(load_request("big", context_size=BIG_CONTEXT))).model
    await collect(stub.Generate(greedy("the", 3, model_id="big")))
    with_big = rss_bytes()
    kv_bytes = BIG_CONTEXT * 512
    assert big.residency.memory_bytes >= kv_bytes
    assert with_big - before > kv_bytes // 2, "the KV cache should show in resident memory"
    await stub.LoadModel(load_request("small", context_size=256))
    assert ("big", False) in events.seen  # unloaded to make room, before the load answered
    with_small = rss_bytes()
    assert with_big - with_small > kv_bytes // 2, (before, with_big, with_small)
    models = await listed(stub)
    assert models["big"].state == pb.MODEL_STATE_AVAILABLE
    assert models["small"].state == pb.MODEL_STATE_READY
    # The next Generate on the evicted model loads it again, and the now idle small one makes room.
    _, result = await collect(stub.Generate(greedy("the", 3, model_id="big")))
    assert result.usage.completion_tokens == 3
    assert events.loads("big") == 2
    models = await listed(stub)
    assert (models["big"].state, models["small"].state) == (pb.MODEL_STATE_READY, pb.MODEL_STATE_AVAILABLE)
    # Every load is timed, the reload that a Generate asked for too.
    loads = server.metrics.registry.get_sample_value("warpcore_model_load_seconds_count", {"backend": "llama_cpp"})
    assert loads == 3


def scrape(port: int) -> dict[tuple[str, str], float]:
    """/metrics as Prometheus reads it: (sample name, "label=value,..." in label order) -> value."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=WAIT_SECONDS).read().decode()
    families = text_string_to_metric_families(body)
    return {
        (s.name, ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))): s.value
        for family in families
        for s in family.samples
    }


async def test_the_metrics_say_which_models_are_loaded_and_why_each_left(
    one_model_budget: tuple[WarpcoreServer, Stub, ModelEvents],
) -> None:
    server, stub, events = one_model_budget
    http = server.metrics.serve("127.0.0.1", 0)
    try:

        async def metrics() -> dict[tuple[str, str], float]:
            return await asyncio.to_thread(scrape, http.server_port)

        def unloads(samples: dict[tuple[str, str], float]) -> dict[str, float]:
            reasons = ("idle", "room", "requested")
            return {reason: samples["warpcore_model_unloads_total", f"reason={reason}"] for reason in reasons}

        assert unloads(await metrics()) == {"idle": 0, "room": 0, "requested": 0}
        first = (await stub.LoadModel(load_request("first"))).model
        samples = await metrics()
        assert samples["warpcore_models_loaded", "backend=llama_cpp"] == 1
        assert samples["warpcore_models_loaded", "backend=openai"] == 0
        assert (
            samples["warpcore_model_memory_bytes", "backend=llama_cpp,model=first"] == first.residency.memory_bytes > 0
        )
        await stub.LoadModel(load_request("second"))  # the budget of one model evicts the first
        samples = await metrics()
        assert ("warpcore_model_memory_bytes", "backend=llama_cpp,model=first") not in samples
        assert ("warpcore_model_memory_bytes", "backend=llama_cpp,model=second") in samples
        assert unloads(samples) == {"idle": 0, "room": 1, "requested": 0}
        await stub.LoadModel(load_request("second", keep_alive=idle(0)))
        await events.wait_for("second", False)
        assert unloads(await metrics()) == {"idle": 1, "room": 1, "requested": 0}
        await stub.LoadModel(load_request("third"))
        await stub.UnloadModel(pb.UnloadModelRequest(model_id="third"))
        samples = await metrics()
        assert unloads(samples) == {"idle": 1, "room": 1, "requested": 1}
        assert samples["warpcore_models_loaded", "backend=llama_cpp"] == 0
    finally:
        http.shutdown()


async def test_a_model_with_a_running_stream_is_never_evicted(
    one_model_budget: tuple[WarpcoreServer, Stub, ModelEvents],
) -> None:
    server, stub, events = one_model_budget
    # One stream at a time, so that the stream after the endless one starts only once that one has let go.
    await server.engine.load(LoadSpec("busy", BackendKind.LLAMA_CPP, TINY_MODEL, None, None, Admission(1, 4)))
    endless = stub.Generate(greedy("the", 32768, model_id="busy"))
    assert isinstance(first := await endless.read(), pb.GenerateResponse)
    assert first.HasField("delta")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.LoadModel(load_request("other"))
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert rich_details(refused.value)[0].reason == "MODEL_BUDGET_FULL"
    assert ("busy", False) not in events.seen
    endless.cancel()
    # Once its streams have ended it is idle, and makes room.
    await collect(stub.Generate(greedy("the", 2, model_id="busy")))
    await stub.LoadModel(load_request("other"))
    assert ("busy", False) in events.seen
