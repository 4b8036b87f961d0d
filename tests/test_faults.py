"""Faults at every stage of a call: each ends in a clear status, and the server stays healthy afterwards."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import TINY_MODEL, assert_healthy, collect, failed_stream, greedy, load_tiny
from warpcore.server.rpc.server import WarpcoreServer
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


async def test_cancel_before_the_first_token(stub: Stub) -> None:
    await load_tiny(stub, model_id="long", context_size=32768)
    busy = stub.Generate(greedy("the", 32768, model_id="long"))
    await busy.read()  # the model's worker is busy: the next call waits in its queue
    queued = stub.Generate(greedy("people", 32768, model_id="long"))
    await asyncio.sleep(0.05)
    queued.cancel()  # before its first token
    busy.cancel()
    await assert_healthy(stub, "long")  # the queued job never ran its 32768 tokens


async def test_deadline_shorter_than_the_load(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.LoadModel(
            pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP, model=TINY_MODEL, model_id="tiny"), timeout=0.001
        )
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The load went on in the background; asking again gets that same model (or loads it), never a conflict.
    await load_tiny(stub, model_id="tiny")
    await assert_healthy(stub)


async def test_cancel_during_load_model(stub: Stub) -> None:
    call = stub.LoadModel(pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP, model=TINY_MODEL, model_id="tiny"))
    await asyncio.sleep(0)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await load_tiny(stub, model_id="tiny")
    await assert_healthy(stub)


async def test_a_client_that_disappears_without_cancelling(server: WarpcoreServer, stub: Stub) -> None:
    await load_tiny(stub, model_id="long", context_size=32768)
    client = (
        "import sys, grpc\n"
        "from warpcore.v1 import inference_pb2 as pb, inference_pb2_grpc\n"
        f"stub = inference_pb2_grpc.InferenceServiceStub(grpc.insecure_channel('127.0.0.1:{server.port}'))\n"
        "options = pb.GenerationOptions(max_tokens=32768, temperature=0)\n"
        "for frame in stub.Generate(pb.GenerateRequest(model_id='long', prompt='the', options=options)):\n"
        "    print(frame.delta.text, flush=True)\n"
    )
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", client, stdout=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    assert await asyncio.wait_for(process.stdout.readline(), 30)  # it is streaming
    os.kill(process.pid, signal.SIGKILL)  # gone, no cancel sent: only the connection drops
    await process.wait()
    await assert_healthy(stub, "long")


async def test_truncated_gguf_fails_cleanly(stub: Stub, models_path: Path) -> None:
    original = (models_path / "hf" / "warpcore" / "tiny" / "tiny.gguf").read_bytes()
    truncated = models_path / "truncated.gguf"
    truncated.write_bytes(original[: len(original) // 2])
    try:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.LoadModel(pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP, model="truncated.gguf"))
        assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert str(models_path) not in (raised.value.details() or "")
    finally:
        truncated.unlink()
    await load_tiny(stub)
    await assert_healthy(stub)


async def test_running_out_of_context_mid_generation_is_length(stub: Stub) -> None:
    model = await load_tiny(stub, model_id="small", context_size=256)
    text, result = await collect(stub.Generate(greedy("the", 1000, model_id="small")))
    assert result.finish_reason == pb.FINISH_REASON_LENGTH
    assert result.usage.prompt_tokens + result.usage.completion_tokens == model.context_size
    assert text


async def test_failed_streams_leave_no_trace(stub: Stub) -> None:
    await load_tiny(stub)
    for _ in range(20):
        _, error = await failed_stream(stub.Generate(greedy("x", 4, model_id="nope")))
        assert error.code() == grpc.StatusCode.NOT_FOUND
    await assert_healthy(stub)
