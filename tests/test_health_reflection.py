"""The standard services beside the inference one, as a tester drove them below their stubs: health (Check, Watch)
and reflection answer bytes that do not decode as the inference service does; health's List gives every entry;
reflection finds the file of a method's full name."""

from __future__ import annotations

import logging
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.conftest import load_tiny, rich_details
from warpcore.server.rpc.server import WarpcoreServer
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

CALL_TIMEOUT = 10
HEALTH = "/grpc.health.v1.Health/"
SERVING = health_pb2.HealthCheckResponse.SERVING
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


async def test_list_gives_every_health_entry(server: WarpcoreServer) -> None:
    """A tester's finding: List, which reflection names, answered UNIMPLEMENTED with an ERROR traceback per call."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        await load_tiny(stub)
        listed = await health.List(health_pb2.HealthListRequest(), timeout=CALL_TIMEOUT)
        assert {service: entry.status for service, entry in listed.statuses.items()} == {
            "": SERVING,
            "warpcore.v1.InferenceService": SERVING,
            "model:tiny": SERVING,
        }
        await stub.UnloadModel(pb.UnloadModelRequest(model_id="tiny"))
        listed = await health.List(health_pb2.HealthListRequest(), timeout=CALL_TIMEOUT)
        assert set(listed.statuses) == {"", "warpcore.v1.InferenceService"}  # the model's entry went with it


async def file_containing(channel: grpc.aio.Channel, symbol: str) -> reflection_pb2.ServerReflectionResponse:
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
    call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(iter([request]), timeout=CALL_TIMEOUT)
    [response] = [response async for response in call]
    return response


@pytest.mark.parametrize(
    ("method", "file"),
    [
        ("warpcore.v1.InferenceService.Generate", "warpcore/v1/inference.proto"),
        ("grpc.health.v1.Health.List", "grpc_health/v1/health.proto"),
    ],
)
async def test_reflection_finds_the_file_of_a_method(server: WarpcoreServer, method: str, file: str) -> None:
    """A tester's finding: `grpcurl describe warpcore.v1.InferenceService.Generate` said "Symbol not found"."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        found = await file_containing(channel, method)
        missing = await file_containing(channel, method.rpartition(".")[0] + ".Nope")
    first = found.file_descriptor_response.file_descriptor_proto[0]
    assert descriptor_pb2.FileDescriptorProto.FromString(first).name == file
    assert missing.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]  # a method the service has not
