"""The shutdown of long native steps: a local stream cut while its decode step runs long still counts every token it
sent, and a second signal ends the process even while llama.cpp is loading a model."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import greedy, rich_details, serving
from tests.local_images_support import MMPROJ, image, looking
from tests.pull import logged
from tests.server_process import CONFIG, log_lines_until
from tests.shutdown import IMAGE_DECODE_LINE, MODEL_LOAD_LINE, WAIT_SECONDS, holding, load_request
from tests.test_operations import rest
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


async def test_a_local_stream_cut_while_its_decode_step_runs_long_counts_every_token_it_sent(
    server_env: dict[str, str],
) -> None:
    """The tester's finding: a stream stopped by the shutdown while its decode step outlasted the drain's short wait
    was cancelled, and its result frame said completion_tokens 0."""
    async with serving(server_env) as server, grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub: Stub = inference_pb2_grpc.InferenceServiceStub(channel)
        await stub.LoadModel(load_request("seeing", parallel=2, llama_cpp=pb.LlamaCppConfig(mmproj=MMPROJ)))
        cut = stub.Generate(greedy("the", 32000, model_id="seeing", logprobs=True))
        first = await cut.read()
        assert isinstance(first, pb.GenerateResponse)
        with holding(IMAGE_DECODE_LINE) as step, logged("grace over") as grace_over:
            # An image decoded beside the stream: the step they share lasts until the test releases it.
            beside = stub.Generate(looking(image(1)))
            await step.held()
            stopping = asyncio.ensure_future(server.stop(0.6))
            frames = asyncio.ensure_future(rest(cut))
            over = asyncio.ensure_future(grace_over.wait())
            # The step goes on past the moment the drain stopped waiting for it (or until the stream ended without it).
            await asyncio.wait((frames, over), timeout=WAIT_SECONDS, return_when=asyncio.FIRST_COMPLETED)
            over.cancel()
            step.release.set()
            sent = [first, *await frames]
        result = sent[-1].result
        tokens = sum(len(frame.delta.logprobs) for frame in sent if frame.HasField("delta"))
        assert result.finish_reason == pb.FINISH_REASON_CANCELLED
        assert result.usage.completion_tokens == tokens > 0
        await rest(beside)
        await stopping


def held_forever(needle: str) -> str:
    """The server's command, run with `python -c`, whose thread that logs a llama.cpp line holding `needle` says
    "holding" and is held there for good."""
    return f"""
import json, logging, sys, threading
def forever(record):
    if {needle!r} in record.getMessage():
        print(json.dumps({{"message": "holding"}}), file=sys.stderr, flush=True)
        threading.Event().wait()
    return False
native = logging.getLogger("llama.cpp")
native.setLevel(logging.DEBUG)
native.addFilter(forever)
from warpcore.server.cli import main
main()
"""


FREE_LINE = "~llama_context"
"""What llama.cpp logs as it frees a model's context, on the model's batching thread."""


async def test_a_second_signal_ends_the_process_while_llama_cpp_loads_a_model(models_path: Path) -> None:
    """A load cannot be interrupted in its thread: the server logged `stopped`, then lived on until the load ended."""
    process = await asyncio.create_subprocess_exec(
        *(
            sys.executable,
            "-c",
            held_forever(MODEL_LOAD_LINE),
            "--port",
            "0",
            "--no-default-model",
            "--log-format",
            "json",
        ),
        *("--grace", "120"),
        env={**os.environ, "MODELS_PATH": str(models_path)},
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        async with asyncio.timeout(WAIT_SECONDS):
            while "serving on" not in (message := json.loads(await process.stderr.readline())["message"]):
                pass
            port = int(message.split("127.0.0.1:")[1].split(",")[0].split(";")[0])
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub: Stub = inference_pb2_grpc.InferenceServiceStub(channel)
                loading = asyncio.ensure_future(stub.LoadModel(load_request("stuck")))
                while "holding" not in json.loads(await process.stderr.readline())["message"]:
                    pass
                process.send_signal(signal.SIGTERM)
                while "shutting down" not in json.loads(await process.stderr.readline())["message"]:
                    pass
                process.send_signal(signal.SIGTERM)
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await loading
            assert await process.wait() == 0
        assert rich_details(refused.value)[0].reason == "SHUTTING_DOWN"
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_once_the_grace_is_over_the_process_exits_without_freeing_its_models(
    models_path: Path, tmp_path: Path
) -> None:
    """A tester's finding: the process lived on for seconds after the grace, freeing its local models one after the
    other, memory that its exit returns all the same. Here a model's free would never end."""
    config = tmp_path / "warpcore.toml"
    config.write_text(CONFIG)
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-c", held_forever(FREE_LINE), "--port", "0", "--no-default-model", "--log-format", "json"),
        *("--config", str(config)),
        env={**os.environ, "MODELS_PATH": str(models_path)},
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        await log_lines_until(process, "serving on")
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(WAIT_SECONDS):
            said = [json.loads(line)["message"] for line in (await process.stderr.read()).splitlines()]
            assert await process.wait() == 0
        assert said[-1] == "stopped"
        assert not [line for line in said if "unloaded model" in line or "holding" in line]
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
