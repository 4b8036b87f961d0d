"""Leaks: a thousand cancelled or failed streams leave tasks, threads, file descriptors and memory as they were."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import collect, failed_stream, greedy, load_tiny
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from warpcore.server.rpc.server import WarpcoreServer
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

Code = grpc.StatusCode
STREAMS = 1000
BATCH = 50  # streams in flight at once
CALL_TIMEOUT = 30.0  # seconds, per stream: far above what any takes
SETTLE_SECONDS = 10.0  # how long things may take to return to their baseline
TASK_SLACK, THREAD_SLACK, FD_SLACK = 2, 2, 5
# 1,000 streams each leaking a frame, a call object or a buffer of a few kB would already exceed this; what the
# allocator keeps after a busy period (pymalloc arenas, glibc per-thread arenas, gRPC's slab caches) stays below it.
RSS_GROWTH_LIMIT = 50 * 1024 * 1024
OPENAI_KEY = "sk-leaks-0123456789abcdef"


@dataclass(frozen=True)
class Snapshot:
    tasks: int
    threads: int
    fds: int
    rss: int

    @classmethod
    def take(cls) -> Snapshot:
        gc.collect()
        with open("/proc/self/statm") as statm:
            resident_pages = int(statm.read().split()[1])
        return cls(
            tasks=len(asyncio.all_tasks()),
            threads=threading.active_count(),
            fds=len(os.listdir("/proc/self/fd")),
            rss=resident_pages * os.sysconf("SC_PAGE_SIZE"),
        )

    def settled_against(self, baseline: Snapshot) -> bool:
        return (
            self.tasks <= baseline.tasks + TASK_SLACK
            and self.threads <= baseline.threads + THREAD_SLACK
            and self.fds <= baseline.fds + FD_SLACK
        )


@dataclass
class Upstreams:
    stalling: FakeOpenAI
    failing: FakeOpenAI


@pytest.fixture
async def upstreams(stub: Stub) -> AsyncIterator[Upstreams]:
    """The tiny model, and OpenAI models on two fakes: one that stalls after its first chunk, one that answers 500."""
    async with FakeOpenAI() as stalling, FakeOpenAI() as failing:
        await load_tiny(stub, model_id="tiny", context_size=256)
        for model_id, fake in (("stalling", stalling), ("failing", failing)):
            config = pb.BackendConfig(api=pb.ApiConfig(api_key=OPENAI_KEY, base_url=fake.base_url))
            request = pb.LoadModelRequest(
                backend=pb.BACKEND_TYPE_OPENAI, model=fake.models[0], model_id=model_id, backend_config=config
            )
            await stub.LoadModel(request, timeout=CALL_TIMEOUT)
        # Scripted once loaded: LoadModel asks the upstream for its model list.
        stalling.script = Script(chunks=["first", " never"], stall_after=1)
        failing.script = Script(status=500, error_message="scripted upstream failure")
        yield Upstreams(stalling, failing)


async def cancelled_after_first_delta(stub: Stub, model_id: str) -> None:
    call = stub.Generate(greedy("the world", 200, model_id=model_id), timeout=CALL_TIMEOUT)
    async for frame in call:
        assert frame.HasField("delta")
        call.cancel()
        break
    assert await call.code() == Code.CANCELLED


async def failed_before_text(stub: Stub, model_id: str, code: Code) -> None:
    frames, error = await failed_stream(stub.Generate(greedy("the world", 8, model_id=model_id), timeout=CALL_TIMEOUT))
    assert frames == []
    assert error.code() == code, error.details()


def stream_kinds(stub: Stub) -> list[Callable[[], Awaitable[None]]]:
    """The four ways a stream ends early, taken in turn."""
    return [
        lambda: cancelled_after_first_delta(stub, "tiny"),  # local model, client cancels
        lambda: failed_before_text(stub, "not-loaded", Code.NOT_FOUND),  # no such model
        lambda: cancelled_after_first_delta(stub, "stalling"),  # upstream stalls, client cancels
        lambda: failed_before_text(stub, "failing", Code.UNAVAILABLE),  # upstream answers 500
    ]


async def run_streams(stub: Stub, count: int) -> None:
    kinds = stream_kinds(stub)
    for start in range(0, count, BATCH):
        async with asyncio.timeout(60):
            await asyncio.gather(*(kinds[n % len(kinds)]() for n in range(start, min(start + BATCH, count))))


def stream_gauges(server: WarpcoreServer, model_id: str) -> tuple[float | None, float | None]:
    """warpcore_active_streams (all models) and warpcore_queue_depth of `model_id`, from the server's metrics."""
    registry = server.metrics.registry
    return (
        registry.get_sample_value("warpcore_active_streams"),
        registry.get_sample_value("warpcore_queue_depth", {"model": model_id}),
    )


async def test_cancelled_and_failed_streams_leave_nothing_behind(
    server: WarpcoreServer, stub: Stub, upstreams: Upstreams
) -> None:
    await run_streams(stub, BATCH)  # warm-up: connection pools, executor threads, gRPC's caches
    await asyncio.sleep(0.5)
    baseline = Snapshot.take()
    started = asyncio.get_running_loop().time()
    await run_streams(stub, STREAMS)
    elapsed = asyncio.get_running_loop().time() - started

    # Bounded wait for what ends asynchronously: server tasks, upstream connections, the worker's last token.
    stalled = STREAMS // 4 + BATCH // 4  # the warm-up's too
    models = ("tiny", "stalling", "failing")
    after = Snapshot.take()
    for _ in range(int(SETTLE_SECONDS / 0.2)):
        idle = all(stream_gauges(server, model_id) == (0.0, 0.0) for model_id in models)
        if idle and after.settled_against(baseline) and upstreams.stalling.disconnects >= stalled:
            break
        await asyncio.sleep(0.2)
        after = Snapshot.take()
    settled = asyncio.get_running_loop().time() - started - elapsed

    print(f"\n{STREAMS} streams (cancelled or failed) in {elapsed:.1f} s, settled {settled:.1f} s later")
    print(f"{'':8} {'baseline':>12} {'after':>12}")
    for name in ("tasks", "threads", "fds"):
        print(f"{name:8} {getattr(baseline, name):>12} {getattr(after, name):>12}")
    print(f"{'rss MB':8} {baseline.rss / 2**20:>12.1f} {after.rss / 2**20:>12.1f}")

    assert after.tasks <= baseline.tasks + TASK_SLACK
    assert after.threads <= baseline.threads + THREAD_SLACK
    assert after.fds <= baseline.fds + FD_SLACK
    assert after.rss - baseline.rss < RSS_GROWTH_LIMIT
    # Every stalled upstream response was abandoned by the server (the warm-up's too), none is left open.
    assert upstreams.stalling.disconnects == stalled
    for model_id in models:
        assert stream_gauges(server, model_id) == (0.0, 0.0), model_id
    text, result = await collect(stub.Generate(greedy("the world", 4), timeout=CALL_TIMEOUT))  # still serving
    assert text
    assert result.usage.completion_tokens == 4
