"""The gauges an inference-aware router scores replicas on (the Gateway API Inference Extension's model-server
protocol): queued and running requests and KV cache utilisation, for the server and per model, scraped from the
metrics endpoint while generations run."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import load_tiny, serving
from warpcore.server.core.domain import BackendKind, ModelInfo
from warpcore.server.core.limits import Activity, Limits, activity
from warpcore.server.core.occupancy import Occupancy
from warpcore.server.rpc.server import ServingOptions, WarpcoreServer
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

Samples = dict[tuple[str, str], float]
"""(metric name, model label or "") -> value."""
WAIT_SECONDS = 10


def scrape(port: int) -> Samples:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            samples[sample.name, sample.labels.get("model", "")] = sample.value
    return samples


async def scrape_until(port: int, condition: Callable[[Samples], bool]) -> Samples:
    """Scrape as a router would, until the gauges show `condition` (they follow the model's decode steps)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        samples = await asyncio.to_thread(scrape, port)
        if condition(samples) or time.monotonic() > deadline:
            return samples
        await asyncio.sleep(0.05)


@pytest.fixture
async def metrics_port(server: WarpcoreServer) -> AsyncIterator[int]:
    http = server.metrics.serve("127.0.0.1", 0)
    try:
        yield http.server_port
    finally:
        http.shutdown()


def endless(model_id: str) -> pb.GenerateRequest:
    return pb.GenerateRequest(
        model_id=model_id, prompt="the", options=pb.GenerationOptions(max_tokens=32768, temperature=0.0)
    )


async def test_queued_running_and_kv_usage_under_load(server: WarpcoreServer, metrics_port: int) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        await load_tiny(stub, "busy", context_size=4096, parallel=2)
        await load_tiny(stub, "idle")
        idle = scrape(metrics_port)
        assert idle["warpcore_num_requests_running", ""] == 0
        assert idle["warpcore_num_requests_waiting", ""] == 0
        assert idle["warpcore_kv_cache_usage_perc", ""] == 0
        calls = [stub.Generate(endless("busy")) for _ in range(2)]
        for call in calls:
            first = await call.read()
            assert isinstance(first, pb.GenerateResponse)
            assert first.HasField("delta")
        calls.append(stub.Generate(endless("busy")))  # beyond its two slots: queued
        loaded = await scrape_until(
            metrics_port,
            lambda s: s["warpcore_num_requests_waiting", ""] == 1 and s["warpcore_num_requests_running", ""] == 2,
        )
        assert loaded["warpcore_num_requests_running", ""] == 2
        assert loaded["warpcore_num_requests_waiting", ""] == 1
        assert (
            loaded["warpcore_model_num_requests_running", "busy"],
            loaded["warpcore_model_num_requests_waiting", "busy"],
        ) == (2, 1)
        assert (
            loaded["warpcore_model_num_requests_running", "idle"],
            loaded["warpcore_model_num_requests_waiting", "idle"],
        ) == (0, 0)
        busy_usage = loaded["warpcore_model_kv_cache_usage_perc", "busy"]
        assert 0 < busy_usage < 1
        assert loaded["warpcore_model_kv_cache_usage_perc", "idle"] == 0
        # The total weighs each model by its cells: the idle one's 4,096 empty cells beside the busy one's 8,192.
        assert loaded["warpcore_kv_cache_usage_perc", ""] < busy_usage
        for call in calls:
            call.cancel()
        drained = await scrape_until(metrics_port, lambda s: s["warpcore_num_requests_running", ""] == 0)
        assert drained["warpcore_num_requests_running", ""] == 0
        assert drained["warpcore_num_requests_waiting", ""] == 0
        assert drained["warpcore_kv_cache_usage_perc", ""] == 0


async def test_a_caller_that_gives_up_waiting_is_no_longer_counted_as_waiting(
    server: WarpcoreServer, metrics_port: int
) -> None:
    """Queued generations cancelled stayed counted until a slot freed: a router read a queue no caller was in."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        await load_tiny(stub, "busy", context_size=32768, parallel=2)  # slots that take a long time to fill
        running = [stub.Generate(endless("busy")) for _ in range(2)]
        for call in running:
            first = await call.read()
            assert isinstance(first, pb.GenerateResponse)
            assert first.HasField("delta")
        queued = [stub.Generate(endless("busy")) for _ in range(2)]
        waiting = await scrape_until(metrics_port, lambda s: s["warpcore_num_requests_waiting", ""] == 2)
        assert waiting["warpcore_model_num_requests_waiting", "busy"] == 2
        for call in queued:
            call.cancel()
        gone = await scrape_until(metrics_port, lambda s: s["warpcore_num_requests_waiting", ""] == 0)
        assert gone["warpcore_model_num_requests_waiting", "busy"] == 0
        assert gone["warpcore_model_num_requests_running", "busy"] == 2  # the slots are still taken
        assert all(not call.done() for call in running)
        models = await stub.ListModels(pb.ListModelsRequest())
        assert [model.residency.queue_depth for model in models.models if model.id == "busy"] == [0]
        for call in running:
            call.cancel()


async def test_list_models_queue_depth_counts_every_waiting_generation_as_the_waiting_gauge(
    server_env: dict[str, str],
) -> None:
    """Both the generation admitted and waiting for the one slot, and those waiting to be admitted beyond
    --max-streams-per-model: one number for a router, whichever of the two it reads."""
    async with (
        serving(server_env, ServingOptions(limits=Limits(max_streams_per_model=2))) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        await load_tiny(stub, "busy", context_size=32768, parallel=1)
        calls = [stub.Generate(endless("busy")) for _ in range(4)]  # 1 running, 1 admitted waiting, 2 not admitted
        registry = server.metrics.registry
        assert await queue_depth_until(stub, "busy", 3) == 3
        assert registry.get_sample_value("warpcore_model_num_requests_waiting", {"model": "busy"}) == 3
        assert registry.get_sample_value("warpcore_queue_depth", {"model": "busy"}) == 2  # the gate's alone
        for call in calls:
            call.cancel()


async def queue_depth_until(stub: Stub, model_id: str, wanted: int) -> int:
    """ListModels' queue_depth of the model, read until it is `wanted` (it follows the decode steps)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        models = (await stub.ListModels(pb.ListModelsRequest())).models
        (depth,) = [model.residency.queue_depth for model in models if model.id == model_id]
        if depth == wanted or time.monotonic() > deadline:
            return depth
        await asyncio.sleep(0.05)


async def test_a_stream_s_slot_is_free_in_every_signal_once_its_last_frame_is_read(
    server: WarpcoreServer, stub: Stub
) -> None:
    """A router (or a caller) that lists the models as a stream ends never sees its slot still busy."""
    await load_tiny(stub, "ending", parallel=2)
    registry = server.metrics.registry
    for max_tokens in (1, 2, 5, 9, 16) * 3:
        request = pb.GenerateRequest(
            model_id="ending", prompt="the", options=pb.GenerationOptions(max_tokens=max_tokens, temperature=0.0)
        )
        frames = [frame async for frame in stub.Generate(request)]
        assert frames[-1].HasField("result")
        (model,) = [model for model in (await stub.ListModels(pb.ListModelsRequest())).models if model.id == "ending"]
        assert (model.residency.slots_busy, model.residency.queue_depth) == (0, 0), max_tokens
        for gauge in ("warpcore_model_num_requests_running", "warpcore_model_num_requests_waiting"):
            assert registry.get_sample_value(gauge, {"model": "ending"}) == 0, (gauge, max_tokens)


async def test_a_generation_admitted_but_not_yet_with_the_model_counts_as_waiting() -> None:
    """Between its gate and the model's queue (its prompt being tokenized) a generation is in neither of the model's
    own counts; a router must still see it, or a burst would look like an idle replica."""
    limits, occupancy = Limits(), Occupancy()
    info = ModelInfo(parallel=2, occupancy=occupancy)
    gate = limits.gate("local", BackendKind.LLAMA_CPP, parallel=2)
    async with gate.slot(), gate.slot(), gate.slot():
        assert activity(limits, "local", info, BackendKind.LLAMA_CPP, None) == Activity(0, 3, 2)
        occupancy.running, occupancy.waiting = 2, 0  # two took a slot of the context; one is still tokenized
        assert activity(limits, "local", info, BackendKind.LLAMA_CPP, None) == Activity(2, 1, 2)
        occupancy.waiting = 1  # and now it waits in the model's own queue: counted once
        assert activity(limits, "local", info, BackendKind.LLAMA_CPP, None) == Activity(2, 1, 2)
    occupancy.running = occupancy.waiting = 0
    assert activity(limits, "local", info, BackendKind.LLAMA_CPP, None) == Activity(0, 0, 2)
