"""The shutdown's answers: a local stream cut while its decode step runs long still counts its tokens exactly; any
other call still open when the grace ends (a load, a pull, calls waiting for a lazy model) gets UNAVAILABLE
(SHUTTING_DOWN), which the access log records as the client saw it; a second signal ends the process even while
llama.cpp is loading a model.

Long native steps are made by holding the thread that runs them where it writes a llama.cpp log line: llama.cpp's
log goes through Python logging (native_log.py), so a filter on its logger runs on that thread, in the step."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import openai
import pytest

from tests.conftest import TINY_MODEL, AccessLines, greedy, rich_details, serving, serving_doors
from tests.fakes.hub import FakeHub
from tests.pull import MODEL, logged, pull, pulling_server
from tests.test_local_images import MMPROJ, image, looking
from tests.test_operations import rest
from tests.tiny_model import write_tiny_model
from tests.tiny_projector import write_seeing_models
from warpcore.server.core.domain import BackendKind, LoadSpec
from warpcore.server.rpc.server import ServingOptions
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

if TYPE_CHECKING:
    from warpcore.server.rpc.server import WarpcoreServer
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

WAIT_SECONDS = 30  # a timeout turns a hang into a failure
IMAGE_DECODE_LINE = "decoding image batch"
"""What llama.cpp's multimodal helper logs as it decodes an image's embeddings, inside a decode step."""
MODEL_LOAD_LINE = "load_tensors"
"""What llama.cpp logs as it reads a model's weights, inside a load (after the vocabulary, which is read with the
process's stderr sent to /dev/null)."""


@pytest.fixture(scope="module")
def models_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_seeing_models(tmp_path_factory.mktemp("models"))


class Held(logging.Filter):
    """Holds the first thread that logs a line holding `needle` until `release` is set. A filter of the logger, not
    a handler: a handler would hold its lock meanwhile, and so every other thread's line."""

    def __init__(self, needle: str) -> None:
        super().__init__()
        self.needle = needle
        self.holding = threading.Event()
        self.release = threading.Event()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.needle in record.getMessage() and not self.holding.is_set():
            self.holding.set()
            self.release.wait()
        return False  # llama.cpp's debug lines are not the test's

    async def held(self) -> None:
        assert await asyncio.to_thread(self.holding.wait, WAIT_SECONDS), f"nothing logged {self.needle!r}"


@contextlib.contextmanager
def holding(needle: str) -> Iterator[Held]:
    native = logging.getLogger("llama.cpp")
    level, held = native.level, Held(needle)
    native.setLevel(logging.DEBUG)
    native.addFilter(held)
    try:
        yield held
    finally:
        held.release.set()
        native.removeFilter(held)
        native.setLevel(level)


def load_request(model_id: str, **local: object) -> pb.LoadModelRequest:
    return pb.LoadModelRequest(
        backend=pb.BACKEND_TYPE_LLAMA_CPP,
        model=TINY_MODEL,
        model_id=model_id,
        model_config=pb.ModelConfig(context_size=32768),
        backend_config=pb.BackendConfig(local=pb.LocalBackendConfig(**local)),  # type: ignore[arg-type]
    )


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


async def test_a_load_open_when_the_grace_ends_gets_shutting_down_as_the_access_log_says(
    server_env: dict[str, str], access_lines: AccessLines
) -> None:
    """gRPC's own cancel answered it `UNAVAILABLE` "Cancelling all calls", and the access log said CANCELLED."""
    async with serving(server_env) as server, grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub: Stub = inference_pb2_grpc.InferenceServiceStub(channel)
        with holding(MODEL_LOAD_LINE) as load:
            loading = asyncio.ensure_future(stub.LoadModel(load_request("slow")))
            await load.held()
            stopping = asyncio.ensure_future(server.stop(120))
            server.streams.end_now()  # a second signal: the grace ends now
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await asyncio.wait_for(loading, WAIT_SECONDS)
            load.release.set()
            await stopping
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert rich_details(refused.value)[0].reason == "SHUTTING_DOWN"
    assert await access_lines.next() == ("LoadModel", "slow", "UNAVAILABLE")


class Arrivals(grpc.aio.ServerInterceptor):
    """Counts the unary calls that reach their handler. A unary call's initial metadata comes only with its end, so a
    client cannot tell that its call is in; by the time a waiter here sees a call counted, its handler has run to its
    first wait (for the lazy model's load), tracked by the drain."""

    def __init__(self) -> None:
        self.count = 0
        self.changed = asyncio.Condition()

    async def reached(self, count: int) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(lambda: self.count >= count), WAIT_SECONDS)

    async def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        handler: grpc.RpcMethodHandler[Any, Any] | None = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        behavior: Any = handler.unary_unary

        async def arrive(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            async with self.changed:
                self.count += 1
                self.changed.notify_all()
            return await behavior(request, context)

        serializers = {"request_deserializer": handler.request_deserializer}
        return grpc.unary_unary_rpc_method_handler(
            arrive, **serializers, response_serializer=handler.response_serializer
        )


LAZY = LoadSpec("lazy", BackendKind.LLAMA_CPP, TINY_MODEL, None, None, lazy=True)
"""The tiny model, loaded by the first call naming it."""


@contextlib.asynccontextmanager
async def lazily_served(env: dict[str, str]) -> AsyncIterator[tuple[WarpcoreServer, Stub, Arrivals, Held]]:
    """A server that knows LAZY, a stub, the count of unary calls in, and the hold on the load the first call naming
    it starts."""
    arrivals = Arrivals()
    async with (
        serving(env, ServingOptions(interceptors=[arrivals])) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        server.engine.declare(LAZY)
        with holding(MODEL_LOAD_LINE) as load:
            yield server, inference_pb2_grpc.InferenceServiceStub(channel), arrivals, load


@pytest.mark.parametrize("grace", [120, 0], ids=["grace cut short", "no grace"])
async def test_every_call_open_when_the_grace_ends_gets_shutting_down_as_the_access_log_says(
    server_env: dict[str, str], access_lines: AccessLines, grace: float
) -> None:
    """Calls waiting for a lazy model's load (a Generate, a CountTokens, an UnloadModel) got gRPC's own UNAVAILABLE
    "Cancelling all calls", with no reason, and the access log said CANCELLED; with a grace of 0 too."""
    async with lazily_served(server_env) as (server, stub, arrivals, load):
        generating = stub.Generate(greedy("the", 4, model_id="lazy"))
        await load.held()
        counting = stub.CountTokens(pb.CountTokensRequest(request=greedy("the", 4, model_id="lazy")))
        unloading = stub.UnloadModel(pb.UnloadModelRequest(model_id="lazy"))
        await arrivals.reached(2)
        stopping = asyncio.ensure_future(server.stop(grace))
        server.streams.end_now()  # a second signal: of no more use with no grace
        refusals = []
        for ended in (rest(generating), counting, unloading):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await asyncio.wait_for(ended, WAIT_SECONDS)
            refusals.append(refused.value)
        load.release.set()
        await stopping
    for refusal in refusals:
        assert refusal.code() == grpc.StatusCode.UNAVAILABLE
        assert rich_details(refusal)[0].reason == "SHUTTING_DOWN"
    lines = {await access_lines.next() for _ in refusals}
    assert lines == {(method, "lazy", "UNAVAILABLE") for method in ("Generate", "CountTokens", "UnloadModel")}


async def test_a_pull_open_when_the_grace_ends_gets_shutting_down_as_the_access_log_says(
    tmp_path: Path, access_lines: AccessLines
) -> None:
    async with FakeHub() as hub:
        hub.add("acme/tiny-GGUF", "tiny-q8.gguf", write_tiny_model(tmp_path / "tiny.gguf").read_bytes())
        hub.hold_after = 0  # the download waits for the hub's first byte
        async for server, stub in pulling_server(hub, tmp_path / "models"):
            pulling = pull(stub)
            await pulling.initial_metadata()
            stopping = asyncio.ensure_future(server.stop(0.6))
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await asyncio.wait_for(pulling.read(), WAIT_SECONDS)
            hub.release.set()
            await stopping
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert rich_details(refused.value)[0].reason == "SHUTTING_DOWN"
    assert await access_lines.next() == ("PullModel", MODEL, "UNAVAILABLE")


HOLD_LOADS_FOREVER = f"""
import json, logging, sys, threading
def forever(record):
    if {MODEL_LOAD_LINE!r} in record.getMessage():
        print(json.dumps({{"message": "holding the load"}}), file=sys.stderr, flush=True)
        threading.Event().wait()
    return False
native = logging.getLogger("llama.cpp")
native.setLevel(logging.DEBUG)
native.addFilter(forever)
from warpcore.server.cli import main
main()
"""


async def test_a_second_signal_ends_the_process_while_llama_cpp_loads_a_model(models_path: Path) -> None:
    """A load cannot be interrupted in its thread: the server logged `stopped`, then lived on until the load ended."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-c", HOLD_LOADS_FOREVER, "--port", "0", "--no-default-model", "--log-format", "json"),
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
                while "holding the load" not in json.loads(await process.stderr.readline())["message"]:
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


async def test_an_http_request_waiting_for_a_lazy_model_when_the_grace_ends_gets_a_503(
    server_env: dict[str, str],
) -> None:
    """The engine ends it, as it ends a gRPC call: the HTTP door answers before it closes, where the close cut it."""
    async with serving_doors(server_env) as doors:
        assert doors.http is not None
        doors.engine.declare(LAZY)
        client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{doors.http.port}/v1", api_key="-", max_retries=0)
        with holding(MODEL_LOAD_LINE) as load:
            asking = asyncio.ensure_future(
                client.chat.completions.create(model="lazy", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
            )
            await load.held()  # the request is in the engine, waiting for the load it started
            stopping = asyncio.ensure_future(doors.stop(120))
            doors.engine.streams.end_now()
            with pytest.raises(openai.APIStatusError) as refused:
                await asyncio.wait_for(asking, WAIT_SECONDS)
            load.release.set()
            await stopping
        await client.close()
    assert refused.value.status_code == 503
    assert "shutting down" in refused.value.message


@pytest.mark.parametrize("cut_short", [False, True], ids=["in the grace", "grace cut short"])
async def test_a_generation_whose_lazy_model_loads_during_the_shutdown_never_starts(
    server_env: dict[str, str], access_lines: AccessLines, cut_short: bool
) -> None:
    """Testers' findings: admitted once the load ended, it ran through the drain to its token limit (the call
    queued for a slot beside it was refused at once), and, admitted after the grace, held the process past it."""
    async with lazily_served(server_env) as (server, stub, _, load):
        generating = stub.Generate(greedy("the", 4000, model_id="lazy"))
        await load.held()
        stopping = asyncio.ensure_future(server.stop(120))
        if cut_short:
            server.streams.end_now()
        load.release.set()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await asyncio.wait_for(rest(generating), WAIT_SECONDS)
        await asyncio.wait_for(stopping, WAIT_SECONDS)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert rich_details(refused.value)[0].reason == "SHUTTING_DOWN"
    assert await access_lines.next() == ("Generate", "lazy", "UNAVAILABLE")
