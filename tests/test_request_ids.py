"""Request ids: either door takes the caller's `x-request-id` when it is a sane one, else makes one, returns it (gRPC
initial metadata, HTTP headers), writes it in the access-log line, and names it in an error's details."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
import httpx2
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tests.conftest import AccessLines, collect, greedy, load_tiny
from tests.http_door import base_url
from tests.sdk_support import blocking
from warpcore.client import AsyncClient, Client, GenerateResponse, NotFoundError
from warpcore.server.doors import Doors
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

GENERATED = re.compile(r"req_[0-9a-f]{32}")
SANE = "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"
NOT_SANE = ["with space", "x" * 129, ""]  # what a gRPC client lets through: printable ASCII


@pytest.fixture
async def stub(doors: Doors) -> AsyncIterator[Stub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{doors.grpc.port}") as channel:
        yield inference_pb2_grpc.InferenceServiceStub(channel)


def request_info(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)
    assert status is not None
    ids = []
    for detail in status.details:
        if detail.Is(error_details_pb2.RequestInfo.DESCRIPTOR):
            info = error_details_pb2.RequestInfo()
            detail.Unpack(info)
            ids.append(info.request_id)
    assert len(ids) == 1
    return str(ids[0])


async def returned_id(call: grpc.aio.Call) -> str:
    values = [str(value) for key, value in await call.initial_metadata() or () if key == "x-request-id"]
    assert len(values) == 1
    return values[0]


@pytest.mark.parametrize("offered", [SANE, *NOT_SANE])
async def test_a_grpc_call_takes_a_sane_id_or_gets_one_back_and_in_its_log_line(
    stub: Stub, access_lines: AccessLines, offered: str
) -> None:
    call = stub.ListModels(pb.ListModelsRequest(), metadata=(("x-request-id", offered),))
    await call
    given = await returned_id(call)
    assert given == offered if offered == SANE else GENERATED.fullmatch(given)
    assert await access_lines.next() == ("ListModels", "", "OK")
    assert access_lines.records[-1].__dict__["request_id"] == given


async def test_each_grpc_call_without_one_gets_its_own_also_a_stream_and_an_error(
    stub: Stub, access_lines: AccessLines
) -> None:
    await load_tiny(stub)
    stream = stub.Generate(greedy("the world", 2))
    await collect(stream)
    failed = stub.CountTokens(pb.CountTokensRequest(request=greedy("the world", 2, model_id="absent")))
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await failed
    ids = [await returned_id(stream), await returned_id(failed)]
    assert all(GENERATED.fullmatch(given) for given in ids)
    assert len(set(ids)) == 2
    assert request_info(error.value) == ids[1]  # whoever reports the error can quote it
    lines = [await access_lines.next() for _ in range(3)]
    assert lines[1:] == [("Generate", "tiny", "OK"), ("CountTokens", "absent", "NOT_FOUND")]
    assert [record.__dict__["request_id"] for record in access_lines.records[1:]] == ids


@pytest.mark.parametrize("method", ["/warpcore.v1.InferenceService/Nope", "/random.Service/X"])
async def test_a_call_to_a_method_the_server_has_not_gets_an_id_a_line_and_a_count_under_one_name(
    doors: Doors, access_lines: AccessLines, method: str
) -> None:
    """A tester's finding: gRPC answered such calls UNIMPLEMENTED unseen, with no request id, no access-log line and
    no count. Counted under one method name whatever the caller named, lest each name add a series."""
    metadata = (("x-request-id", SANE),)
    raw: dict[str, Any] = {"request_serializer": bytes, "response_deserializer": bytes}
    async with grpc.aio.insecure_channel(f"127.0.0.1:{doors.grpc.port}") as channel:
        unary = channel.unary_unary(method, **raw)(b"", metadata=metadata)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await unary
        assert (refused.value.code(), refused.value.details()) == (grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
        assert await returned_id(unary) == SANE
        streamed = channel.stream_stream(method, **raw)(metadata=metadata)  # sends nothing, and keeps its side open
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await streamed.read()
        assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert [await access_lines.next() for _ in range(2)] == [("unmatched", "", "UNIMPLEMENTED")] * 2
    assert [record.__dict__["request_id"] for record in access_lines.records] == [SANE, SANE]
    count = doors.engine.metrics.registry.get_sample_value
    assert count("warpcore_requests_total", {"method": "unmatched", "code": "UNIMPLEMENTED", "protocol": "grpc"}) == 2


@pytest.mark.parametrize("offered", [SANE, *NOT_SANE])
async def test_the_http_door_takes_a_sane_id_by_the_same_rule(
    doors: Doors, access_lines: AccessLines, offered: str
) -> None:
    async with httpx2.AsyncClient() as client:
        response = await client.get(f"{base_url(doors)}/v1/models", headers={"x-request-id": offered})
    given = response.headers["x-request-id"]
    assert given == offered if offered == SANE else GENERATED.fullmatch(given)
    assert response.headers["request-id"] == given
    await access_lines.next()
    assert access_lines.records[-1].__dict__["request_id"] == given


async def test_the_sdks_error_carries_the_calls_request_id(doors: Doors, access_lines: AccessLines) -> None:
    async with AsyncClient(f"127.0.0.1:{doors.grpc.port}") as client:
        with pytest.raises(NotFoundError) as error:
            await client.count_tokens("absent", prompt="the world")
    await access_lines.next()
    assert GENERATED.fullmatch(error.value.request_id)
    assert error.value.request_id == access_lines.records[-1].__dict__["request_id"]


async def test_the_sdks_answer_carries_the_calls_request_id(
    doors: Doors, stub: Stub, access_lines: AccessLines
) -> None:
    """Whoever reports a wrong answer, not only a failed call, can quote the id its access line has."""
    await load_tiny(stub)
    await access_lines.next()
    target = f"127.0.0.1:{doors.grpc.port}"
    async with AsyncClient(target) as client:
        answers = [await client.generate("tiny", prompt="the world", max_tokens=2)]
        stream = await client.generate("tiny", prompt="the world", max_tokens=2, stream=True)
        answers.append(await stream.get_final_response())

    @blocking
    def sync() -> list[GenerateResponse]:
        with Client(target) as client:
            answer = client.generate("tiny", prompt="the world", max_tokens=2)
            return [answer, client.generate("tiny", prompt="the world", max_tokens=2, stream=True).get_final_response()]

    answers += await sync()
    for _ in answers:
        assert await access_lines.next() == ("Generate", "tiny", "OK")
    logged = [record.__dict__["request_id"] for record in access_lines.records[1:]]
    assert all(GENERATED.fullmatch(answer.request_id) for answer in answers)
    assert sorted(answer.request_id for answer in answers) == sorted(logged)
    assert len(set(logged)) == 4
