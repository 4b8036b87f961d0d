"""The standard services beside the inference one, as a tester drove them below their stubs: health (Check, Watch,
List) and reflection answer bytes that do not decode as the inference service does."""

from __future__ import annotations

import logging
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from tests.conftest import rich_details
from warpcore.server.rpc.server import WarpcoreServer

CALL_TIMEOUT = 10
HEALTH = "/grpc.health.v1.Health/"
REFLECTION_INFO = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


async def call_raw(channel: grpc.aio.Channel, method: str, response_type: Any, raw: bytes) -> None:
    """Call `method` (its kind: health's unary Check, its server-streaming Watch, reflection's bidirectional stream)
    with `raw` as its request, and read its answer."""
    serializers = {"request_serializer": lambda data: data, "response_deserializer": response_type.FromString}
    if method == HEALTH + "Check":
        await channel.unary_unary(method, **serializers)(raw, timeout=CALL_TIMEOUT)
    elif method == HEALTH + "Watch":
        [_ async for _ in channel.unary_stream(method, **serializers)(raw, timeout=CALL_TIMEOUT)]
    else:
        [_ async for _ in channel.stream_stream(method, **serializers)(iter([raw]), timeout=CALL_TIMEOUT)]


@pytest.mark.parametrize(
    ("method", "response_type"),
    [
        (HEALTH + "Check", health_pb2.HealthCheckResponse),
        (HEALTH + "Watch", health_pb2.HealthCheckResponse),
        (REFLECTION_INFO, reflection_pb2.ServerReflectionResponse),
    ],
)
@pytest.mark.parametrize(("raw", "hint"), [(b"\xff\xff\xff", "send the bytes"), (b"\x0a\x01\xff", "UTF-8")])
async def test_undecodable_bytes_are_invalid_argument_on_every_service(
    server: WarpcoreServer,
    caplog: pytest.LogCaptureFixture,
    method: str,
    response_type: Any,
    raw: bytes,
    hint: str,
) -> None:
    """A tester's finding: Watch and reflection answered UNKNOWN "Unexpected <class DecodeError>", with an ERROR and a
    traceback in the log for each call, where Check and the inference methods said INVALID_ARGUMENT."""
    caplog.set_level(logging.ERROR)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await call_raw(channel, method, response_type, raw)
    error = failed.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert hint in (error.details() or "")
    assert rich_details(error)[0].reason == "REQUEST_UNDECODABLE"
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
