"""Assemble the grpc.aio server: inference, health and reflection services on one port."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from warpcore.server.registry import ModelRegistry
from warpcore.server.servicer import InferenceServicer
from warpcore.v1 import inference_pb2, inference_pb2_grpc

INFERENCE_SERVICE = inference_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name


class WarpcoreServer:
    """A started server and the handles needed to operate it."""

    def __init__(self, server: grpc.aio.Server, port: int, health: health_aio.HealthServicer) -> None:
        self.server = server
        self.port = port
        self.health = health

    async def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for service in ("", INFERENCE_SERVICE):
            await self.health.set(service, status)

    async def stop(self, grace: float | None) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def start_server(
    registry: ModelRegistry,
    address: str,
    *,
    credentials: grpc.ServerCredentials | None = None,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
) -> WarpcoreServer:
    """Start serving on `address` ("host:port"; port 0 picks a free one), with TLS when `credentials` are given.
    Health reports NOT_SERVING until told."""
    # Without so_reuseport=0, Linux lets a second server bind a port that is already taken.
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)], interceptors=interceptors)
    inference_pb2_grpc.add_InferenceServiceServicer_to_server(InferenceServicer(registry), server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        (INFERENCE_SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
    )
    port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    await server.start()
    started = WarpcoreServer(server, port, health)
    await started.set_serving(False)
    return started
