"""Calls waiting for their model to load count as waiting in the gauges an inference-aware router reads, from the
moment they wait until they are admitted or leave: a replica loading a model for a burst is not an idle one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import grpc
import openai

from tests.conftest import TINY_MODEL, collect, failed_stream, greedy, serving, serving_doors
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import OPENAI_KEY
from tests.http_door import async_openai_client, openai_messages
from tests.residency import idle, load_request
from warpcore.server.core.domain import ApiSettings, BackendKind, LoadSpec
from warpcore.server.rpc.server import WarpcoreServer
from warpcore.v1 import inference_pb2_grpc

WAIT_SECONDS = 10  # a timeout only turns a hang into a failure

Gauges = tuple[float | None, float | None, float | None]
"""The server's waiting generations, and the model's waiting and running ones (None: no series for the model)."""


def gauges(server: WarpcoreServer, model_id: str) -> Gauges:
    sample = server.metrics.registry.get_sample_value
    return (
        sample("warpcore_num_requests_waiting"),
        sample("warpcore_model_num_requests_waiting", {"model": model_id}),
        sample("warpcore_model_num_requests_running", {"model": model_id}),
    )


async def gauges_until(server: WarpcoreServer, model_id: str, wanted: Gauges) -> Gauges:
    """The gauges, read as a router scrapes until they are `wanted` (each call reaches its wait as it is scheduled)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        now = gauges(server, model_id)
        if now == wanted or time.monotonic() > deadline:
            return now
        await asyncio.sleep(0.05)


async def streamed(client: openai.AsyncOpenAI, model_id: str) -> str:
    stream = await client.chat.completions.create(
        model=model_id, messages=openai_messages("the"), max_tokens=4, temperature=0, stream=True
    )
    return "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])


async def test_streamed_calls_waiting_for_a_lazy_local_models_load_count_as_waiting(
    server_env: Mapping[str, str],
) -> None:
    """An outside tester's finding: for a lazy model's whole load its three first calls were in no gauge but
    warpcore_active_streams, and a router saw the replica idle. Held here at the load's end, the model in memory."""
    loaded, release = asyncio.Event(), asyncio.Event()

    async def hold_load(model_id: str, is_loaded: bool) -> None:
        if (model_id, is_loaded) == ("lazyg", True):
            loaded.set()
            await release.wait()

    async with serving_doors(server_env) as doors:
        doors.engine.registry.listeners.append(hold_load)
        doors.engine.declare(LoadSpec("lazyg", BackendKind.LLAMA_CPP, TINY_MODEL, None, None, lazy=True))
        client = async_openai_client(doors)
        calls = [asyncio.ensure_future(streamed(client, "lazyg")) for _ in range(3)]
        await asyncio.wait_for(loaded.wait(), WAIT_SECONDS)
        assert await gauges_until(doors.grpc, "lazyg", (3, 3, 0)) == (3, 3, 0)
        release.set()
        assert all(await asyncio.gather(*calls))
        assert await gauges_until(doors.grpc, "lazyg", (0, 0, 0)) == (0, 0, 0)
        await client.close()


async def test_calls_waiting_for_a_model_unloaded_while_idle_to_come_back_count_as_waiting(
    server_env: Mapping[str, str],
) -> None:
    """A model unloaded for idleness is loaded again by the next call, once its unload has ended: its calls wait for
    both."""
    leaving, gone = asyncio.Event(), asyncio.Event()

    async def hold_release(model_id: str, is_loaded: bool) -> None:
        if (model_id, is_loaded) == ("a", False):
            leaving.set()
            await gone.wait()

    async with (
        serving(server_env) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        server.engine.registry.listeners.append(hold_release)
        await stub.LoadModel(load_request("a", keep_alive=idle(0)))
        await asyncio.wait_for(leaving.wait(), WAIT_SECONDS)  # unloaded for idleness, dormant, not yet gone
        calls = [asyncio.ensure_future(collect(stub.Generate(greedy("the", 4, model_id="a")))) for _ in range(2)]
        assert await gauges_until(server, "a", (2, 2, 0)) == (2, 2, 0)
        gone.set()
        assert all(text for text, _ in await asyncio.gather(*calls))
        assert await gauges_until(server, "a", (0, 0, 0)) == (0, 0, 0)


async def test_calls_waiting_for_a_hosted_load_leave_the_gauges_on_every_way_out(
    server: WarpcoreServer, openai_upstream: FakeOpenAI
) -> None:
    """The load of a lazy hosted model is held by its provider's model list: its calls are counted on the model's own
    series, which are there while they wait though the model is not loaded, and they leave the count as they are
    cancelled, pass their deadline or see the load fail; then a load that succeeds admits its call, running."""
    openai_upstream.listing_held = asyncio.Event()
    openai_upstream.script = Script(stall_after=0)  # an admitted stream stays open until its client goes
    settings = ApiSettings(api_key=OPENAI_KEY, base_url=openai_upstream.base_url)
    server.engine.declare(LoadSpec("slow", BackendKind.OPENAI, "gpt-later", settings, None, lazy=True))
    sample = server.metrics.registry.get_sample_value
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        cancelled = stub.Generate(greedy("hi", 4, model_id="slow"))
        failing = [asyncio.ensure_future(failed_stream(stub.Generate(greedy("hi", 4, model_id="slow")))) for _ in "ab"]
        assert await gauges_until(server, "slow", (3, 3, 0)) == (3, 3, 0)
        assert sample("warpcore_model_kv_cache_usage_perc", {"model": "slow"}) is None  # no KV cache here
        cancelled.cancel()
        assert await gauges_until(server, "slow", (2, 2, 0)) == (2, 2, 0)
        _, late = await failed_stream(stub.Generate(greedy("hi", 4, model_id="slow"), timeout=0.5))
        assert late.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert await gauges_until(server, "slow", (2, 2, 0)) == (2, 2, 0)
        openai_upstream.listing_held.set()  # the provider answers, without the model: the load fails
        for _, error in await asyncio.gather(*failing):
            assert error.code() == grpc.StatusCode.NOT_FOUND, error.details()
        assert gauges(server, "slow") == (0, None, None)  # not loaded, nothing waiting: no series
        openai_upstream.models.append("gpt-later")
        admitted = stub.Generate(greedy("hi", 4, model_id="slow"))
        assert await gauges_until(server, "slow", (0, 0, 1)) == (0, 0, 1)
        admitted.cancel()
        assert await gauges_until(server, "slow", (0, 0, 0)) == (0, 0, 0)
