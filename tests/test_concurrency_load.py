"""Load: 200 concurrent streams through an API backend, 8 on one local model; every text complete and in order."""

from __future__ import annotations

import asyncio
import functools
import time
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from tests.conftest import TINY_MODEL, collect, greedy
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from warpcore.server.adapters.factory import create_adapter
from warpcore.server.app import ServingOptions, start_server
from warpcore.server.limits import Limits
from warpcore.server.registry import ModelRegistry
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

WORDS = [f"w{index} " for index in range(50)]


async def test_200_concurrent_streams_through_an_api_backend(models_path: Path) -> None:
    registry = ModelRegistry(functools.partial(create_adapter, env={"MODELS_PATH": str(models_path)}))
    options = ServingOptions(limits=Limits(max_streams_per_model=256, max_queue_per_model=256))
    server = await start_server(registry, "127.0.0.1:0", options)
    try:
        async with FakeOpenAI() as upstream, grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            upstream.script = Script(chunks=WORDS, delay=0.001)
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            config = pb.BackendConfig(api=pb.ApiConfig(api_key="sk-load-0123456789", base_url=upstream.base_url))
            await stub.LoadModel(
                pb.LoadModelRequest(
                    backend=pb.BACKEND_TYPE_OPENAI, model="gpt-4o", model_id="gpt", backend_config=config
                )
            )
            started = time.monotonic()
            results = await asyncio.gather(
                *(
                    collect(stub.Generate(pb.GenerateRequest(model_id="gpt", prompt=f"n{n}"), timeout=60))
                    for n in range(200)
                )
            )
            elapsed = time.monotonic() - started
    finally:
        await server.stop(None)
        await registry.close()
    assert all(text == "".join(WORDS) for text, _ in results)
    assert all(result.finish_reason == pb.FINISH_REASON_STOP for _, result in results)
    print(f"\n200 API streams x {len(WORDS)} deltas in {elapsed:.2f} s ({200 * len(WORDS) / elapsed:.0f} deltas/s)")


async def test_8_concurrent_streams_on_one_local_model(stub: Stub) -> None:
    await stub.LoadModel(pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP, model=TINY_MODEL, model_id="tiny"))
    prompts = [f"the {word}" for word in ("world", "people", "time", "state", "life", "day", "work", "year")]
    alone = [(await collect(stub.Generate(greedy(prompt, 64))))[0] for prompt in prompts]

    async def timed(prompt: str) -> tuple[str, float]:
        started = time.monotonic()
        call = stub.Generate(greedy(prompt, 64))
        pieces, first = [], None
        async for frame in call:
            if frame.HasField("delta"):
                first = first if first is not None else time.monotonic() - started
                pieces.append(frame.delta.text)
        assert first is not None
        return "".join(pieces), first

    together = await asyncio.gather(*(timed(prompt) for prompt in prompts))
    assert [text for text, _ in together] == alone
    longest_wait = max(wait for _, wait in together)
    assert longest_wait < 30  # served in turn: no stream starves
    print(f"\n8 local streams: longest wait for a first token {longest_wait * 1000:.1f} ms")
