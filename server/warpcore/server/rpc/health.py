"""The gRPC health service, with entries that can go: grpcio's own servicer can only add them, and an entry per
model ever loaded would grow without end once models come and go by themselves (lazy loads, idle unload,
eviction)."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from warpcore.server.core.bounds import fitted_message, quoted
from warpcore.server.core.limits import shutting_down
from warpcore.server.rpc.status import send_request_id, unary_errors

WATCHES_END_WAIT = 1.0
"""Seconds the shutdown waits for the watches to send their last status before gRPC cancels what is left."""
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class HealthServicer(health_pb2_grpc.HealthServicer):  # type: ignore[misc]  # grpc_health has no types
    """Check answers NOT_FOUND for a service without an entry, as the protocol asks; Watch reports SERVICE_UNKNOWN
    for it, and every change after; List gives every entry."""

    def __init__(self) -> None:
        self._status: dict[str, health_pb2.HealthCheckResponse.ServingStatus.ValueType] = {"": SERVING}
        self._version = 0
        self._changed = asyncio.Condition()
        self._shutting_down = False
        self._ended = False
        self._watches: set[asyncio.Task[object]] = set()

    async def Check(self, request: health_pb2.HealthCheckRequest, context: Any) -> health_pb2.HealthCheckResponse:
        status = self._status.get(request.service)
        if status is None:
            await send_request_id(context)
            await context.abort(grpc.StatusCode.NOT_FOUND, fitted_message(f"unknown service {quoted(request.service)}"))
        return health_pb2.HealthCheckResponse(status=status)

    async def List(self, request: health_pb2.HealthListRequest, context: Any) -> health_pb2.HealthListResponse:
        """Every entry and its status: the server's (""), the inference service's and each loaded model's, so they
        stay as few as the models loaded."""
        statuses = {service: health_pb2.HealthCheckResponse(status=status) for service, status in self._status.items()}
        return health_pb2.HealthListResponse(statuses=statuses)

    @unary_errors
    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Any) -> None:
        """Every change of the service's status, until the server's drain is over: then UNAVAILABLE, reason
        SHUTTING_DOWN, as any other call gets, for the watcher to turn to another replica."""
        task = asyncio.current_task()
        assert task is not None
        self._watches.add(task)
        try:
            last = None
            while not self._ended:
                seen = self._version
                status = self._status.get(request.service, SERVICE_UNKNOWN)
                if status != last:
                    # Written outside the condition, so that a slow watcher cannot hold up the others.
                    await context.write(health_pb2.HealthCheckResponse(status=status))
                    last = status
                await self._next_change(seen)
        finally:
            self._watches.discard(task)
        raise shutting_down()

    async def _next_change(self, seen: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self._version != seen)

    async def set(self, service: str, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        """Set an entry; ignored once shutting down, when everything reads NOT_SERVING."""
        if not self._shutting_down:
            await self._update(service, status)

    async def clear(self, service: str) -> None:
        """Remove an entry: Check answers NOT_FOUND, watchers read SERVICE_UNKNOWN."""
        if not self._shutting_down:
            await self._update(service, None)

    async def enter_graceful_shutdown(self) -> None:
        if not self._shutting_down:
            self._shutting_down = True
            for service in list(self._status):
                await self._update(service, NOT_SERVING)

    async def end_watches(self) -> None:
        """End every watch (the drain is over), and wait a moment for their last status to be sent."""
        watches = list(self._watches)
        self._ended = True
        async with self._changed:
            self._version += 1
            self._changed.notify_all()
        if watches:
            await asyncio.wait(watches, timeout=WATCHES_END_WAIT)

    async def _update(
        self, service: str, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType | None
    ) -> None:
        async with self._changed:
            if status is None:
                self._status.pop(service, None)
            else:
                self._status[service] = status
            self._version += 1
            self._changed.notify_all()
