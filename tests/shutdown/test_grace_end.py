"""Calls still open when the shutdown's grace ends (a load, a pull, calls and an HTTP request waiting for a lazy model)
get UNAVAILABLE (SHUTTING_DOWN), which the access log records as the client saw it; a generation whose lazy model loads
during the shutdown never starts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import openai
import pytest

from tests.conftest import TINY_MODEL, AccessLines, greedy, rich_details, serving, serving_doors
from tests.fakes.hub import FakeHub
from tests.pull import MODEL, pull, pulling_server
from tests.shutdown import MODEL_LOAD_LINE, WAIT_SECONDS, Held, holding, load_request
from tests.test_operations import rest
from tests.tiny_model import write_tiny_model
from warpcore.server.core.domain import BackendKind, LoadSpec
from warpcore.server.rpc.server import ServingOptions
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc, models_pb2

if TYPE_CHECKING:
    from warpcore.server.rpc.server import WarpcoreServer
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


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


async def refusal(call: grpc.aio.UnaryStreamCall[models_pb2.PullModelRequest, models_pb2.PullModelResponse]) -> None:
    """Read a pull to its end: its frames (the one telling the file's size may come first), then its status."""
    while await call.read() is not grpc.aio.EOF:
        pass


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
                await asyncio.wait_for(refusal(pulling), WAIT_SECONDS)
            hub.release.set()
            await stopping
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert rich_details(refused.value)[0].reason == "SHUTTING_DOWN"
    assert await access_lines.next() == ("PullModel", MODEL, "UNAVAILABLE")


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
