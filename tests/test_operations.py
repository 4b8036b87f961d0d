"""Operating the server: Unix sockets, tokens, limits, metrics, health per model, reflection, graceful drain."""

from __future__ import annotations

import asyncio
import functools
import os
import stat
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from grpc_status import rpc_status
from prometheus_client import generate_latest

from tests.conftest import collect, failed_stream, greedy, load_tiny, rich_details
from warpcore.server.adapters.factory import create_adapter
from warpcore.server.core.auth import token_matches
from warpcore.server.core.limits import Limits
from warpcore.server.core.registry import ModelRegistry
from warpcore.server.rpc import auth
from warpcore.server.rpc.server import ServingOptions, WarpcoreServer, start_server
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

Code = grpc.StatusCode
T = TypeVar("T")


@pytest.fixture
def registry(models_path: Path) -> ModelRegistry:
    return ModelRegistry(functools.partial(create_adapter, env={"MODELS_PATH": str(models_path)}))


@pytest.fixture
async def started(
    registry: ModelRegistry, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[WarpcoreServer]:
    """A server with the ServingOptions a test passes through indirect parametrization (default options)."""
    options: ServingOptions = getattr(request, "param", ServingOptions())
    server = await start_server(registry, ["127.0.0.1:0", f"unix://{tmp_path}/warpcore.sock"], options)
    await server.set_serving(True)
    try:
        yield server
    finally:
        await server.stop(None)
        await registry.close()


async def test_unix_socket_serves_and_the_group_may_connect(started: WarpcoreServer, tmp_path: Path) -> None:
    socket_path = tmp_path / "warpcore.sock"
    assert stat.S_IMODE(os.stat(socket_path).st_mode) == 0o660
    async with grpc.aio.insecure_channel(f"unix://{socket_path}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        await load_tiny(stub)
        _, result = await collect(stub.Generate(greedy("the", 3)))
    assert result.usage.completion_tokens == 3


@pytest.mark.parametrize("started", [ServingOptions(token="let-me-in")], indirect=True)
async def test_token_guards_inference_but_not_health(started: WarpcoreServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{started.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        twice = (("authorization", "Bearer wrong"), ("authorization", "Bearer let-me-in"))  # which would count?
        for metadata in [(), (("authorization", "Bearer wrong"),), (("authorization", "let-me-in"),), twice]:
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                await stub.ListModels(pb.ListModelsRequest(), metadata=metadata)
            assert denied.value.code() == Code.UNAUTHENTICATED
            assert rich_details(denied.value)[0].reason == "UNAUTHENTICATED"
        _, stream_error = await failed_stream(stub.Generate(greedy("x", 1)))
        assert stream_error.code() == Code.UNAUTHENTICATED
        assert rich_details(stream_error)[0].reason == "UNAUTHENTICATED"
        # The scheme's name is case-insensitive (RFC 9110).
        for scheme in ("Bearer", "bearer", "BEARER"):
            presented = (("authorization", f"{scheme} let-me-in"),)
            allowed = await stub.ListModels(pb.ListModelsRequest(), metadata=presented)
            assert list(allowed.models) == []
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING


@dataclass
class CallDetails:
    """What grpc hands an interceptor: the method called and the call's metadata."""

    method: str
    invocation_metadata: tuple[tuple[str, str | bytes], ...]


async def fastest_time_ratio(
    check: Callable[[T], Awaitable[object]], early_mismatch: T, late_mismatch: T, rounds: int
) -> float:
    """Fastest time of `check(late_mismatch)` over that of `check(early_mismatch)`, timed in alternating order.
    Whatever else the machine does only adds time, and on a busy one it adds more than a 1 MiB scan to some rounds
    of either: the fastest round of each is its own cost."""
    early: list[int] = []
    late: list[int] = []
    for round_number in range(rounds):
        pair = [(early, early_mismatch), (late, late_mismatch)]
        for times, argument in pair if round_number % 2 else reversed(pair):
            started = time.perf_counter_ns()
            await check(argument)
            times.append(time.perf_counter_ns() - started)
    return min(late) / min(early)


async def test_a_wrong_token_takes_as_long_however_much_of_it_matched(monkeypatch: pytest.MonkeyPatch) -> None:
    # A 1 MiB token: a comparison that stops at the first differing byte returns at once for `wrong_first` and
    # only after scanning the whole token for `wrong_last`: `==` shows a ratio above 50, `token_matches` none.
    # Through the interceptor, the header's copies cost more than such a scan, and hide it even from a plain `==`
    # there: what is checked there is that the interceptor decides by `token_matches`, with the token presented.
    token = "t" * (1 << 20)
    wrong_first = "x" + token[1:]
    wrong_last = token[:-1] + "x"
    expected = token.encode()

    async def compare_digest(presented: bytes) -> bool:
        return token_matches(presented, expected)

    async def naive(presented: bytes) -> bool:
        return presented == expected

    as_bytes = (wrong_first.encode(), wrong_last.encode())
    digest_ratio = await fastest_time_ratio(compare_digest, *as_bytes, rounds=151)
    naive_ratio = await fastest_time_ratio(naive, *as_bytes, rounds=151)
    figures = f"token_matches {digest_ratio:.2f}, == {naive_ratio:.2f}"
    assert 0.67 < digest_ratio < 1.5, figures
    assert naive_ratio > 5, figures  # the measurement does see an early exit

    compared: list[tuple[bytes, bytes]] = []

    def watched(presented: bytes, wanted: bytes) -> bool:
        compared.append((presented, wanted))
        return token_matches(presented, wanted)

    monkeypatch.setattr(auth, "token_matches", watched)
    handler: grpc.RpcMethodHandler[Any, Any] = grpc.unary_unary_rpc_method_handler(lambda request, context: request)

    async def continuation(details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any]:
        return handler

    interceptor = auth.BearerTokenInterceptor(token)
    for presented, allowed in ((wrong_last, False), (token, True)):
        metadata = (("authorization", f"Bearer {presented}"),)
        answer = await interceptor.intercept_service(
            continuation, CallDetails(f"{auth.PROTECTED_PREFIX}ListModels", metadata)
        )
        assert (answer is handler) is allowed
    assert compared == [(wrong_last.encode(), expected), (expected, expected)]


@pytest.mark.parametrize(
    "started",
    [ServingOptions(limits=Limits(max_streams_per_model=1, max_queue_per_model=1, max_tokens=20000))],
    indirect=True,
)
async def test_a_full_queue_is_resource_exhausted_with_retry_info(started: WarpcoreServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{started.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        await load_tiny(stub, model_id="tiny", context_size=32768)
        running = stub.Generate(greedy("the", 20000))
        await running.read()  # generating: the only slot is taken
        waiting = asyncio.ensure_future(collect(stub.Generate(greedy("the", 4))))
        await asyncio.sleep(0.05)  # the second call takes the only queue place
        _, refused = await failed_stream(stub.Generate(greedy("the", 4)))
        assert refused.code() == Code.RESOURCE_EXHAUSTED
        status = rpc_status.from_call(refused)
        assert status is not None
        retry = [detail for detail in status.details if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
        assert retry, "no RetryInfo"
        _, too_many = await failed_stream(stub.Generate(greedy("the", 20001)))
        assert too_many.code() == Code.INVALID_ARGUMENT  # above the server's max_tokens limit
        running.cancel()
        _, result = await waiting
        assert result.usage.completion_tokens == 4


@pytest.mark.parametrize("started", [ServingOptions(max_message_bytes=4096)], indirect=True)
async def test_oversized_request_is_refused(started: WarpcoreServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{started.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        await load_tiny(stub)
        _, error = await failed_stream(stub.Generate(greedy("the " * 5000, 4)))
        assert error.code() == Code.RESOURCE_EXHAUSTED


async def test_metrics_are_scraped_over_http(started: WarpcoreServer) -> None:
    http = started.metrics.serve("127.0.0.1", 0)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{started.port}") as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            await load_tiny(stub)
            await collect(stub.Generate(greedy("the", 8)))
            await failed_stream(stub.Generate(greedy("the", 8, model_id="ghost")))
        url = f"http://127.0.0.1:{http.server_port}/metrics"
        body = (await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())).decode()
    finally:
        http.shutdown()
    assert 'warpcore_requests_total{code="OK",method="Generate",protocol="grpc"} 1.0' in body
    assert 'warpcore_requests_total{code="NOT_FOUND",method="Generate",protocol="grpc"} 1.0' in body
    assert 'warpcore_requests_total{code="OK",method="LoadModel",protocol="grpc"} 1.0' in body
    assert 'warpcore_time_to_first_token_seconds_count{backend="llama_cpp",model="tiny"} 1.0' in body
    assert 'warpcore_tokens_per_second_count{backend="llama_cpp",model="tiny"} 1.0' in body
    assert 'warpcore_model_load_seconds_count{backend="llama_cpp"} 1.0' in body
    assert 'warpcore_queue_depth{model="tiny"} 0.0' in body
    assert "warpcore_active_streams 0.0" in body


async def test_each_loaded_model_has_its_own_health_status(started: WarpcoreServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{started.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        await load_tiny(stub)
        check = health_pb2.HealthCheckRequest(service="model:tiny")
        assert (await health.Check(check)).status == health_pb2.HealthCheckResponse.SERVING
        watch = health.Watch(check)
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        await stub.UnloadModel(pb.UnloadModelRequest(model_id="tiny"))
        # The entry goes with the model, so that models coming and going cannot grow the list without end.
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await health.Check(check)
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND
        # A watch saw the unload begin (new calls refused), then the model freed.
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
        watch.cancel()


async def test_reflection_lists_the_services(started: WarpcoreServer) -> None:
    def services() -> list[str]:
        with grpc.insecure_channel(f"127.0.0.1:{started.port}") as channel:
            return list(ProtoReflectionDescriptorDatabase(channel).get_services())

    assert {"warpcore.v1.InferenceService", "grpc.health.v1.Health"} <= set(await asyncio.to_thread(services))


async def rest(call: grpc.aio.UnaryStreamCall[pb.GenerateRequest, pb.GenerateResponse]) -> list[pb.GenerateResponse]:
    frames = []
    while (frame := await call.read()) is not grpc.aio.EOF:
        assert isinstance(frame, pb.GenerateResponse)
        frames.append(frame)
    return frames


async def test_shutdown_drains_then_ends_streams_with_a_cancelled_frame(started: WarpcoreServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{started.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        await load_tiny(stub, model_id="long", context_size=32768)
        await load_tiny(stub, model_id="short")
        endless = stub.Generate(greedy("the", 32768, model_id="long"))
        short = stub.Generate(greedy("the", 50, model_id="short"))
        await endless.read()
        await short.read()
        stopping = asyncio.ensure_future(started.stop(1.5))
        await asyncio.sleep(0.1)
        with pytest.raises(grpc.aio.AioRpcError):  # new calls are refused while draining
            await stub.ListModels(pb.ListModelsRequest(), timeout=2)
        short_frames = await rest(short)
        assert short_frames[-1].result.finish_reason == pb.FINISH_REASON_LENGTH  # finished within the grace
        endless_frames = await rest(endless)
        ended = endless_frames[-1].result
        assert ended.finish_reason == pb.FINISH_REASON_CANCELLED
        # The usage of what was generated goes in this frame too: at least a token per text frame sent.
        assert ended.usage.prompt_tokens == short_frames[-1].result.usage.prompt_tokens > 0  # the same prompt
        assert ended.usage.completion_tokens >= 1 + sum(frame.HasField("delta") for frame in endless_frames)
        await stopping


async def test_an_unloaded_models_series_leave_the_metrics(started: WarpcoreServer) -> None:
    # Its histograms' series stayed after UnloadModel: 300 cycles under fresh ids left 4,800 series.
    async with grpc.aio.insecure_channel(f"127.0.0.1:{started.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        for model_id in ("cycle-0", "cycle-1"):
            await load_tiny(stub, model_id=model_id)
            await collect(stub.Generate(greedy("the", 4, model_id=model_id)))
        await load_tiny(stub, model_id="kept")
        await collect(stub.Generate(greedy("the", 4, model_id="kept")))
        before = generate_latest(started.metrics.registry).decode()
        for model_id in ("cycle-0", "cycle-1"):
            await stub.UnloadModel(pb.UnloadModelRequest(model_id=model_id))
    after = generate_latest(started.metrics.registry).decode()
    assert 'warpcore_time_to_first_token_seconds_count{backend="llama_cpp",model="cycle-0"} 1.0' in before
    assert 'warpcore_tokens_per_second_count{backend="llama_cpp",model="cycle-1"} 1.0' in before
    assert [line for line in after.splitlines() if "cycle-" in line] == []
    assert 'warpcore_time_to_first_token_seconds_count{backend="llama_cpp",model="kept"} 1.0' in after
