"""Assemble the grpc.aio server over the engine: inference, health and reflection services, interceptors, TLS."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from warpcore.server.core.bounds import MAX_MESSAGE_BYTES
from warpcore.server.core.drain import ActiveStreams
from warpcore.server.core.engine import Engine
from warpcore.server.core.limits import Limits
from warpcore.server.core.metrics import Metrics
from warpcore.server.core.policy import ApiOverridePolicy
from warpcore.server.core.pulls import Pulls
from warpcore.server.core.registry import ModelRegistry
from warpcore.server.core.residency import ResidencyPolicy
from warpcore.server.rpc.access_log import AccessLogInterceptor
from warpcore.server.rpc.addresses import check_free
from warpcore.server.rpc.auth import BearerTokenInterceptor
from warpcore.server.rpc.health import NOT_SERVING, SERVING, HealthServicer
from warpcore.server.rpc.reflection import enable_reflection
from warpcore.server.rpc.servicer import InferenceServicer
from warpcore.server.rpc.status import DecodeErrorInterceptor
from warpcore.server.tls import TlsFiles
from warpcore.v1 import inference_pb2, inference_pb2_grpc

INFERENCE_SERVICE = inference_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name
UNTIL_DRAINED = 7 * 86400.0
"""The grace handed to gRPC's own stop: longer than any drain, which then ends it."""
SENDING_LAST = 1.0
"""Seconds gRPC gets, once the drain has ended every call, to send what those calls left to send (a stream's status
goes out after its last frame, when our code is done): a stop at once would cut it to "Cancelling all calls"."""
MODEL_HEALTH_PREFIX = "model:"
"""Each loaded model is also a health service, named "model:<model id>", SERVING while loaded, NOT_SERVING while
UnloadModel unloads it (new calls are refused, those running finish); its entry goes once the model is freed, or at
once when it is unloaded for idleness or room, so Check answers NOT_FOUND and Watch SERVICE_UNKNOWN."""


@dataclass
class ServingOptions:
    tls: TlsFiles | None = None
    """TLS for every listening address, the HTTP door's too (mTLS with a client CA)."""
    token: str | None = field(default=None, repr=False)
    """Bearer token required on the inference service (health and reflection stay open)."""
    limits: Limits = field(default_factory=Limits)
    max_message_bytes: int = MAX_MESSAGE_BYTES
    keepalive_seconds: float = 60.0
    """Ping idle connections this often, so that proxies and NATs keep them open."""
    min_client_ping_seconds: float = 10.0
    """How often a client's keepalive may ping while the server sends nothing (a call queued, a model loading):
    more often, and gRPC closes the connection with every call on it ("too_many_pings")."""
    api_overrides: ApiOverridePolicy = field(default_factory=ApiOverridePolicy)
    interceptors: Sequence[grpc.aio.ServerInterceptor] = ()
    residency: ResidencyPolicy = field(default_factory=ResidencyPolicy)
    """Idle unload and the budget of loaded local models."""
    pulls: Pulls | None = None
    """How the server pulls model files onto its disk; None: PullModel is refused (the operator's permission)."""


class WarpcoreServer:
    """A started server and the handles needed to operate it."""

    def __init__(self, server: grpc.aio.Server, ports: list[int], health: HealthServicer, engine: Engine):
        self.server = server
        self.ports = ports
        self.health = health
        self.engine = engine

    @property
    def streams(self) -> ActiveStreams:
        return self.engine.streams

    @property
    def metrics(self) -> Metrics:
        return self.engine.metrics

    @property
    def port(self) -> int:
        """The first TCP port bound (0 for a Unix socket)."""
        return self.ports[0]

    async def set_serving(self, serving: bool) -> None:
        for service in ("", INFERENCE_SERVICE):
            await self.health.set(service, SERVING if serving else NOT_SERVING)

    async def model_changed(self, model_id: str, loaded: bool) -> None:
        service = MODEL_HEALTH_PREFIX + model_id
        if loaded:
            await self.health.set(service, SERVING)
        elif any(model.id == model_id for model in self.engine.unloading()):
            # UnloadModel's: still listed, its generations running on, new ones refused (MODEL_UNLOADING).
            await self.health.set(service, NOT_SERVING)
        else:  # unloaded for idleness or room: the next call loads it again, like any model without an entry
            await self.health.clear(service)

    async def model_freed(self, model_id: str) -> None:
        await self.health.clear(MODEL_HEALTH_PREFIX + model_id)

    async def stop(self, grace: float | None) -> None:
        """Report NOT_SERVING, refuse new calls, give the calls in flight `grace` seconds, then end them with our own
        answers (core/drain.py): a CANCELLED result frame for a stream, UNAVAILABLE (SHUTTING_DOWN) for any other
        call; health watches end with UNAVAILABLE (SHUTTING_DOWN) too. `streams.end_now()` cuts the grace short. gRPC
        cancels only what is left SENDING_LAST after that, with its own status."""
        await self.health.enter_graceful_shutdown()
        self.engine.refuse_queued()
        if grace is None:  # no drain: gRPC cancels every call at once
            await self.server.stop(None)
            return
        # Given the grace, gRPC would cancel the calls still open when it ends, ahead of the drain's own answers.
        stopping = asyncio.ensure_future(self.server.stop(UNTIL_DRAINED))
        await self.streams.drain(grace)
        await self.health.end_watches()
        await self.server.stop(SENDING_LAST)
        await stopping


def tls_credentials(tls: TlsFiles) -> grpc.ServerCredentials:
    """TLS with this certificate chain and key; with a client CA, mutual TLS that requires client certificates."""
    ca = tls.client_ca.read_bytes() if tls.client_ca else None
    return grpc.ssl_server_credentials(
        [(tls.key.read_bytes(), tls.cert.read_bytes())], root_certificates=ca, require_client_auth=ca is not None
    )


def _listen(server: grpc.aio.Server, address: str, credentials: grpc.ServerCredentials | None) -> int:
    check_free(address)
    try:
        port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    except RuntimeError as error:
        raise RuntimeError(f"cannot listen on {address}: {error}") from None
    if address.startswith("unix:"):
        # A sidecar's app runs as another user of the same group: let the group connect.
        os.chmod(address.removeprefix("unix:").removeprefix("//"), 0o660)
    return port


async def start_server(
    registry: ModelRegistry, addresses: str | Sequence[str], options: ServingOptions | None = None
) -> WarpcoreServer:
    """Start serving on each address ("host:port", port 0 picks a free one, or "unix:///path"). Health reports
    NOT_SERVING until told otherwise."""
    options = options or ServingOptions()
    metrics = Metrics(options.limits, models=registry.resident)
    engine = Engine(registry, options.limits, metrics, options.api_overrides, options.residency, options.pulls)
    chain: list[grpc.aio.ServerInterceptor] = [AccessLogInterceptor(metrics)]
    if options.token:
        chain.append(BearerTokenInterceptor(options.token))
    keepalive_ms = int(options.keepalive_seconds * 1000)
    server = grpc.aio.server(
        interceptors=[*chain, *options.interceptors, DecodeErrorInterceptor()],
        # Answers go uncompressed whatever a client accepts: a stream's frames are a few tokens each, too small for
        # gzip to shrink, and compressing each would cost CPU on every token's way. Compressed requests are taken.
        compression=grpc.Compression.NoCompression,
        options=[
            ("grpc.so_reuseport", 0),  # else Linux lets a second server bind a port already taken
            ("grpc.max_receive_message_length", options.max_message_bytes),
            ("grpc.max_send_message_length", options.max_message_bytes),
            ("grpc.keepalive_time_ms", keepalive_ms),
            ("grpc.keepalive_timeout_ms", 20_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", int(options.min_client_ping_seconds * 1000)),
            ("grpc.http2.max_pings_without_data", 0),
            # Clients behind dns:/// re-resolve when a connection closes: ageing connections out lets them find
            # replicas added since. The calls running then go on to their end (no grace is set: a long generation
            # may run for many minutes); only new calls go to a new connection.
            ("grpc.max_connection_age_ms", 300_000),
        ],
    )
    inference_pb2_grpc.add_InferenceServiceServicer_to_server(
        InferenceServicer(engine, options.max_message_bytes), server
    )
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    enable_reflection((INFERENCE_SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name), server)
    if isinstance(addresses, str):
        addresses = [addresses]
    credentials = tls_credentials(options.tls) if options.tls is not None else None
    ports = [_listen(server, address, credentials) for address in addresses]
    await server.start()
    started = WarpcoreServer(server, ports, health, engine)
    registry.listeners.append(started.model_changed)
    registry.freed.append(started.model_freed)
    await started.set_serving(False)
    return started
