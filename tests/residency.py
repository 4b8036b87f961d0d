"""Helpers for tests of models that manage their own residency: the registry's loads and unloads watched, a server with
a residency policy, a load request, a keep_alive, and the models listed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING

import grpc
from google.protobuf import duration_pb2

from tests.conftest import TINY_MODEL, serving
from warpcore.server.core.residency import ResidencyPolicy
from warpcore.server.rpc.server import ServingOptions, WarpcoreServer
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc, models_pb2

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


WAIT_SECONDS = 10  # for an unload that the test's own steps cause; a timeout only turns a hang into a failure


class ModelEvents:
    """Every load and unload the registry reports, and a way to wait for one."""

    def __init__(self, server: WarpcoreServer) -> None:
        self.seen: list[tuple[str, bool]] = []
        self._changed = asyncio.Condition()
        server.engine.registry.listeners.append(self._record)

    async def _record(self, model_id: str, loaded: bool) -> None:
        async with self._changed:
            self.seen.append((model_id, loaded))
            self._changed.notify_all()

    async def wait_for(self, model_id: str, loaded: bool) -> None:
        await self.wait_for_count(model_id, loaded, 1)

    async def wait_for_count(self, model_id: str, loaded: bool, count: int) -> None:
        async with self._changed:
            seen = self._changed.wait_for(lambda: self.seen.count((model_id, loaded)) >= count)
            await asyncio.wait_for(seen, WAIT_SECONDS)

    def loads(self, model_id: str) -> int:
        return self.seen.count((model_id, True))


async def server_and_stub(
    env: Mapping[str, str], policy: ResidencyPolicy
) -> AsyncIterator[tuple[WarpcoreServer, Stub, ModelEvents]]:
    async with (
        serving(env, ServingOptions(residency=policy)) as started,
        grpc.aio.insecure_channel(f"127.0.0.1:{started.port}") as channel,
    ):
        yield started, inference_pb2_grpc.InferenceServiceStub(channel), ModelEvents(started)


def load_request(
    model_id: str, keep_alive: models_pb2.KeepAlive | None = None, context_size: int | None = None
) -> pb.LoadModelRequest:
    return pb.LoadModelRequest(
        backend=pb.BACKEND_TYPE_LLAMA_CPP,
        model=TINY_MODEL,
        model_id=model_id,
        model_config=pb.ModelConfig(context_size=context_size, keep_alive=keep_alive),
    )


def idle(seconds: float) -> models_pb2.KeepAlive:
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(round(seconds * 1e9))
    return models_pb2.KeepAlive(idle=duration)


async def listed(stub: Stub) -> dict[str, pb.Model]:
    return {model.id: model for model in (await stub.ListModels(pb.ListModelsRequest())).models}
