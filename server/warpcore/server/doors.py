"""The process's front doors over one engine: gRPC always, the OpenAI/Anthropic HTTP door when given a port;
started together, and drained together on shutdown."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from warpcore.server.core.engine import Engine
from warpcore.server.core.registry import ModelRegistry
from warpcore.server.http.app import HttpDoor
from warpcore.server.rpc.server import ServingOptions, WarpcoreServer, start_server


@dataclass
class Doors:
    grpc: WarpcoreServer
    http: HttpDoor | None

    @property
    def engine(self) -> Engine:
        return self.grpc.engine

    async def set_serving(self, serving: bool) -> None:
        """What both doors' health says: gRPC's health service, and the HTTP door's `GET /health`."""
        await self.grpc.set_serving(serving)
        if self.http is not None:
            self.http.set_serving(serving)

    async def stop(self, grace: float | None) -> None:
        """New HTTP requests get 503 and gRPC reports NOT_SERVING; the generations in flight through either door
        get the grace (the engine's drain ends what is left with a final event), then both doors close."""
        if self.http is not None:
            self.http.refuse_new()
        await self.grpc.stop(grace)
        if self.http is not None:
            await self.http.close()


async def open_doors(
    registry: ModelRegistry,
    addresses: str | Sequence[str],
    options: ServingOptions | None = None,
    http_address: tuple[str, int] | None = None,
) -> Doors:
    """The gRPC server on `addresses` and, with `http_address` (host, port; port 0 picks one), the HTTP door on
    the same engine."""
    options = options or ServingOptions()
    grpc_server = await start_server(registry, addresses, options)
    if http_address is None:
        return Doors(grpc_server, None)
    http = HttpDoor(grpc_server.engine, options.token, options.max_message_bytes)
    try:
        await http.start(*http_address, options.tls.ssl_context() if options.tls is not None else None)
    except BaseException:
        await grpc_server.stop(None)
        raise
    return Doors(grpc_server, http)
