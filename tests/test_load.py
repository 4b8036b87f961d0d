"""Load: many concurrent streams each get their whole text, in order, and concurrency does not change any answer."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from google.protobuf import duration_pb2

from tests.conftest import TINY_MODEL, collect, greedy, load_tiny, serving
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from warpcore.server.core.limits import Limits
from warpcore.server.rpc.server import ServingOptions, WarpcoreServer
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc, models_pb2

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

CALL_TIMEOUT = 60.0  # seconds, per stream
API_STREAMS = 200
CHUNKS = [f"w{n} " for n in range(50)]
LOCAL_PROMPTS = [  # distinct first letters: no two share a cached prompt prefix beyond the start of the text
    "the world",
    "people say",
    "life is",
    "when they",
    "my little",
    "good work",
    "after years",
    "never before",
]
LOCAL_TOKENS = 64
FIRST_DELTA_LIMIT = 30.0  # seconds: 8 streams of 64 tokens on the tiny model take well under one
OPENAI_KEY = "sk-load-0123456789abcdef"


@dataclass(frozen=True)
class Timed:
    """A stream's text, its result frame, and when its first delta came (seconds after the call started)."""

    text: str
    result: pb.GenerateResult
    first_delta: float


async def timed_stream(stub: Stub, request: pb.GenerateRequest) -> Timed:
    loop = asyncio.get_running_loop()
    started = loop.time()
    first_delta: float | None = None
    text: list[str] = []
    results: list[pb.GenerateResult] = []
    async for frame in stub.Generate(request, timeout=CALL_TIMEOUT):
        assert not results, "a frame arrived after the result frame"
        if frame.HasField("delta"):
            if first_delta is None:
                first_delta = loop.time() - started
            text.append(frame.delta.text)
        else:
            results.append(frame.result)
    assert len(results) == 1
    assert first_delta is not None
    return Timed("".join(text), results[0], first_delta)


@pytest.fixture
async def wide_server(server_env: Mapping[str, str]) -> AsyncIterator[WarpcoreServer]:
    """A server that runs up to 256 generations per model, with as many waiting."""
    options = ServingOptions(limits=Limits(max_streams_per_model=256, max_queue_per_model=256))
    async with serving(server_env, options) as started:
        yield started


async def test_200_concurrent_api_streams_each_get_the_whole_text(wide_server: WarpcoreServer) -> None:
    async with FakeOpenAI() as upstream, grpc.aio.insecure_channel(f"127.0.0.1:{wide_server.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        config = pb.BackendConfig(api=pb.ApiConfig(api_key=OPENAI_KEY, base_url=upstream.base_url))
        load = pb.LoadModelRequest(
            backend=pb.BACKEND_TYPE_OPENAI, model=upstream.models[0], model_id="api", backend_config=config
        )
        await stub.LoadModel(load, timeout=CALL_TIMEOUT)
        upstream.script = Script(chunks=CHUNKS, delay=0.001, request_id="req-load")

        loop = asyncio.get_running_loop()
        started = loop.time()
        async with asyncio.timeout(2 * CALL_TIMEOUT):
            streams = await asyncio.gather(
                *(
                    timed_stream(stub, pb.GenerateRequest(model_id="api", prompt=f"stream {n}"))
                    for n in range(API_STREAMS)
                )
            )
        elapsed = loop.time() - started

    expected = "".join(CHUNKS)
    for stream in streams:
        assert stream.text == expected
        assert stream.result.finish_reason == pb.FINISH_REASON_STOP
        assert stream.result.usage.completion_tokens == len(CHUNKS)
        assert stream.result.upstream_request_id == "req-load"
    prompts = {request.body["messages"][-1]["content"] for request in upstream.requests if request.body}
    assert prompts == {f"stream {n}" for n in range(API_STREAMS)}  # each stream reached the upstream once
    deltas = API_STREAMS * len(CHUNKS)
    waits = sorted(stream.first_delta for stream in streams)
    print(
        f"\nAPI backend: {API_STREAMS} concurrent streams, {deltas} deltas in {elapsed:.2f} s"
        f" ({deltas / elapsed:.0f} deltas/s, {API_STREAMS / elapsed:.0f} streams/s);"
        f" first delta after {waits[len(waits) // 2]:.2f} s median, {waits[-1]:.2f} s at most"
    )


async def test_concurrent_local_streams_match_each_one_run_alone(stub: Stub) -> None:
    """8 streams on one tiny model (4 running, 4 waiting under the default limits) give the greedy text each gives
    alone; each waits a bounded time for its first delta."""
    await load_tiny(stub)
    requests = [greedy(prompt, LOCAL_TOKENS) for prompt in LOCAL_PROMPTS]
    await collect(stub.Generate(greedy("the", 2), timeout=CALL_TIMEOUT))  # the same cache state for every run below

    loop = asyncio.get_running_loop()
    started = loop.time()
    alone = [await timed_stream(stub, request) for request in requests]
    sequential = loop.time() - started

    started = loop.time()
    async with asyncio.timeout(2 * CALL_TIMEOUT):
        together = await asyncio.gather(*(timed_stream(stub, request) for request in requests))
    concurrent = loop.time() - started

    for prompt, single, shared in zip(LOCAL_PROMPTS, alone, together, strict=True):
        assert shared.text == single.text, prompt
        assert shared.result.finish_reason == single.result.finish_reason == pb.FINISH_REASON_LENGTH
        assert shared.result.usage.completion_tokens == LOCAL_TOKENS
    tokens = LOCAL_TOKENS * len(requests)
    longest = max(stream.first_delta for stream in together)
    print(
        f"\nlocal tiny model: {len(requests)} streams x {LOCAL_TOKENS} tokens;"
        f" alone, one after another: {sequential:.2f} s ({tokens / sequential:.0f} tokens/s);"
        f" concurrently: {concurrent:.2f} s ({tokens / concurrent:.0f} tokens/s);"
        f" longest wait for a first delta {longest:.2f} s"
        f" (alone: {max(stream.first_delta for stream in alone):.3f} s)"
    )
    assert longest < FIRST_DELTA_LIMIT


def test_a_process_whose_model_was_never_closed_still_exits(models_path: Path) -> None:
    # The model's batching thread waits for work for the model's whole life; a caller that crashed before closing
    # the model must not leave the process hanging at exit.
    script = (
        "import asyncio, sys\n"
        "from warpcore.server.adapters.llama.adapter import LlamaCppAdapter\n"
        "from warpcore.server.core.domain import LocalSettings\n"
        "adapter = LlamaCppAdapter(LocalSettings(), {'MODELS_PATH': sys.argv[1]})\n"
        f"asyncio.run(adapter.load({TINY_MODEL!r}, 64))\n"
        "print('loaded', flush=True)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(models_path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout) == (0, "loaded\n"), done.stderr


async def test_a_load_naming_a_loaded_id_as_its_model_says_which_model_holds_the_id(stub: Stub) -> None:
    """A newcomer changing the default model's keep_alive names it as ListModels shows it, by its id: the refusal
    said "another loaded model", not which one, nor that naming that model changes its keep_alive."""
    await stub.LoadModel(pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP, model=TINY_MODEL, model_id="tiny-id"))
    with pytest.raises(grpc.aio.AioRpcError) as taken:
        await stub.LoadModel(pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP, model="tiny-id"))
    assert taken.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert f"is taken by model {TINY_MODEL!r} (llama_cpp): a LoadModel naming that model" in (
        taken.value.details() or ""
    )
    idle = models_pb2.KeepAlive(idle=duration_pb2.Duration(seconds=300))
    again = pb.LoadModelRequest(
        backend=pb.BACKEND_TYPE_LLAMA_CPP,
        model=TINY_MODEL,
        model_id="tiny-id",
        model_config=pb.ModelConfig(keep_alive=idle),
    )
    assert (await stub.LoadModel(again)).model.residency.keep_alive.seconds == 300
