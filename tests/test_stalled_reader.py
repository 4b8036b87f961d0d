"""A local generation whose caller stops reading waits for it, its slot kept, and goes on the same once it reads;
while it waits, the model's batching thread rests, its unloading ends it as before, and a shutdown is not held by
it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from tests.conftest import TINY_MODEL, greedy, load_tiny, serving
from warpcore.server.adapters.llama.adapter import LlamaCppAdapter
from warpcore.server.adapters.llama.job import MAX_UNREAD
from warpcore.server.core import drain
from warpcore.server.core.domain import (
    Finish,
    FinishReason,
    GenerationEvent,
    GenerationParams,
    LocalSettings,
    TextChunk,
)
from warpcore.server.core.occupancy import Occupancy
from warpcore.server.core.tokens import PromptUsage
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

MAX_TOKENS = 1500
"""Far more than a caller may leave unread: a generation that went on for nobody would reach it."""
LONG = GenerationParams(prompt="the world", messages=(), max_tokens=MAX_TOKENS, temperature=0.0)


async def settled_cells(occupancy: Occupancy, least: int, quiet: float = 0.2, limit: float = 60.0) -> int:
    """The KV cells the running generations hold, once they hold at least `least` and that count has not changed
    for `quiet` seconds: on a busy machine one decode step may take longer than `quiet`, and the floor keeps such a
    pause from passing for the generation's rest."""
    deadline = time.monotonic() + limit
    last, since = occupancy.cells_used, time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.01)
        if occupancy.cells_used != last:
            last, since = occupancy.cells_used, time.monotonic()
        elif last >= least and time.monotonic() - since >= quiet:
            break
    return last


def batching_cpu_seconds() -> float:
    """CPU time the model's batching threads in this process have used so far."""
    total = 0
    for thread in threading.enumerate():
        if thread.name == "llama-cpp-batch" and thread.native_id is not None:
            total += int(Path(f"/proc/self/task/{thread.native_id}/schedstat").read_text().split()[0])
    return total / 1e9


async def loaded(models_path: Path, parallel: int) -> tuple[LlamaCppAdapter, Occupancy]:
    """The tiny model on an adapter of `parallel` slots, and what the model is doing."""
    adapter = LlamaCppAdapter(LocalSettings(parallel=parallel, threads=2), {"MODELS_PATH": str(models_path)})
    occupancy = (await adapter.load(TINY_MODEL, 2048)).occupancy
    assert occupancy is not None
    return adapter, occupancy


async def stalled(
    adapter: LlamaCppAdapter, occupancy: Occupancy
) -> tuple[AsyncGenerator[GenerationEvent, None], list[GenerationEvent], int]:
    """A generation of MAX_TOKENS whose caller took a few events and reads no more: its events, those taken, and
    the cells it holds once it waits."""
    events = adapter.generate(LONG, threading.Event())
    taken = [await anext(events) for _ in range(4)]
    prompt = taken[0]
    assert isinstance(prompt, PromptUsage)
    # Nothing more is read meanwhile. Each decoded token gives at most one event: the generation is passed over
    # once it gave MAX_UNREAD events more than were taken, so not before it decoded that many tokens more.
    held = await settled_cells(occupancy, least=prompt.prompt_tokens + MAX_UNREAD)
    return events, taken, held


async def test_a_generation_waits_for_a_caller_that_stops_reading_and_then_goes_on_the_same(
    models_path: Path,
) -> None:
    # It decoded on for nobody up to max_tokens, a core busy and the model's slot held, while its client (a full
    # connection) read nothing.
    adapter, occupancy = await loaded(models_path, parallel=2)
    try:
        alone = [event async for event in adapter.generate(LONG, threading.Event())]
        assert isinstance(alone[-1], Finish)
        assert alone[-1].completion_tokens == MAX_TOKENS
        assert alone[-1].prompt_tokens is not None

        events, taken, held = await stalled(adapter, occupancy)
        assert held < alone[-1].prompt_tokens + len(taken) + 2 * MAX_UNREAD
        taken += [event async for event in events]
    finally:
        await adapter.close()
    text = "".join(event.text for event in taken if isinstance(event, TextChunk))
    assert text == "".join(event.text for event in alone if isinstance(event, TextChunk))
    assert taken[-1] == alone[-1]


async def test_the_batching_thread_rests_while_every_slot_waits_for_its_caller_and_another_call_queues(
    models_path: Path,
) -> None:
    # With a call queued for a slot, the batching thread stepped without rest, a core busy for as long as the
    # callers stayed stalled (an outside tester's finding).
    adapter, occupancy = await loaded(models_path, parallel=1)
    try:
        events, _, _ = await stalled(adapter, occupancy)
        params = GenerationParams(prompt="hello", messages=(), max_tokens=4, temperature=0.0)
        queued = asyncio.ensure_future(anext(adapter.generate(params, threading.Event())))
        busy = batching_cpu_seconds()
        started = time.monotonic()
        await asyncio.sleep(0.5)  # a window to measure the thread's CPU over, not a wait for an event
        used = batching_cpu_seconds() - busy
        assert used < 0.2 * (time.monotonic() - started), used
        assert not queued.done()  # its slot is still held
        await events.aclose()  # the stalled caller goes: the queued call gets the slot
        assert isinstance(await asyncio.wait_for(queued, 10), PromptUsage)
    finally:
        await adapter.close()


async def test_unloading_ends_a_generation_whose_caller_stopped_reading(models_path: Path) -> None:
    # The unload waited for as long as the caller stayed stalled: the passed-over generation never ended.
    adapter, occupancy = await loaded(models_path, parallel=1)
    events, _, _ = await stalled(adapter, occupancy)
    await asyncio.wait_for(adapter.close(), 120)  # it decodes to its end first: a busy machine takes its time
    rest = [event async for event in events]
    assert isinstance(rest[-1], Finish)
    assert rest[-1].reason is FinishReason.LENGTH


async def test_a_shutdown_is_not_held_by_a_local_stream_whose_client_stopped_reading(
    server_env: dict[str, str],
) -> None:
    # Its result frame could not be written: the process waited past its grace until the client read again (an
    # outside tester's finding: 40 s after SIGTERM with a grace of 8 s, and for good had the client never read).
    async with serving(server_env) as server:
        target = f"127.0.0.1:{server.port}"
        async with grpc.aio.insecure_channel(target) as channel:
            await load_tiny(inference_pb2_grpc.InferenceServiceStub(channel), context_size=2048)
        # A window of 1 KiB that the client never widens: the server's writes wait once it is full.
        narrow = [("grpc.http2.lookahead_bytes", 1024), ("grpc.http2.bdp_probe", 0)]
        async with grpc.aio.insecure_channel(target, options=narrow) as channel:
            stub: Stub = inference_pb2_grpc.InferenceServiceStub(channel)
            call = stub.Generate(greedy("the world", MAX_TOKENS, logprobs=True, top_logprobs=20))
            assert isinstance(await call.read(), pb.GenerateResponse)  # then nothing more is read
            started = time.monotonic()
            await asyncio.wait_for(server.stop(0.5), drain.STEP_WAIT + drain.CANCELLED_WAIT + 5)
            assert time.monotonic() - started < drain.STEP_WAIT + drain.CANCELLED_WAIT + 1
            call.cancel()
