"""What the health service says of a model as UnloadModel unloads it: a probe or a router reads NOT_SERVING while new
calls are refused and the running ones finish, then the entry goes once the model is freed."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.residency import listed, load_request, server_and_stub
from tests.test_model_lifecycle import endless_stream
from warpcore.server.core.residency import ResidencyPolicy
from warpcore.v1 import inference_pb2 as pb

WAIT_SECONDS = 10  # a timeout turns a hang into a failure
Status = health_pb2.HealthCheckResponse


async def next_status(watch: grpc.aio.UnaryStreamCall[Any, Any]) -> int:
    response = await asyncio.wait_for(watch.read(), WAIT_SECONDS)
    assert isinstance(response, Status)
    return int(response.status)


async def test_a_model_unload_model_unloads_is_not_serving_until_freed_then_unknown(
    server_env: Mapping[str, str],
) -> None:
    """Its entry went as the unload began, while the model was still listed and its stream ran on."""
    async for server, stub, events in server_and_stub(server_env, ResidencyPolicy()):
        await stub.LoadModel(load_request("a"))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service="model:a")
            watch = health.Watch(request)
            assert await next_status(watch) == Status.SERVING
            stream = await endless_stream(stub, "a")
            unload = asyncio.ensure_future(stub.UnloadModel(pb.UnloadModelRequest(model_id="a")))
            await events.wait_for("a", False)  # the unload has begun; it waits for the stream
            assert (await listed(stub))["a"].state == pb.MODEL_STATE_UNLOADING
            assert (await health.Check(request)).status == Status.NOT_SERVING
            assert await next_status(watch) == Status.NOT_SERVING
            stream.cancel()
            await asyncio.wait_for(unload, WAIT_SECONDS)
            assert await next_status(watch) == Status.SERVICE_UNKNOWN
            with pytest.raises(grpc.aio.AioRpcError) as gone:
                await health.Check(request)
            assert gone.value.code() == grpc.StatusCode.NOT_FOUND
            watch.cancel()
