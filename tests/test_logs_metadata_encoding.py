"""Metadata whose bytes are not UTF-8 keeps out of the log (an outside tester's finding): grpc's Python layer logged
each such value whole at ERROR with a traceback, twice a call, so an attempted token landed in the log and any peer,
without one, could fill it with error lines. gRPC's own client refuses to send such bytes: a relay puts them in."""

from __future__ import annotations

import asyncio
import functools
import json
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import serving
from tests.relay import relay
from warpcore.server.logs import configure_logging
from warpcore.server.rpc.server import ServingOptions
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

pytestmark = pytest.mark.timeout(60)

GUESS = "s3cr3t-T0ken-xyz"
"""A caller's attempt at the server's token."""
MARK, NOT_UTF8 = b"~~", b"\xff\xfe"
"""Printable bytes gRPC's client sends as they are (it does not Huffman-code a value), and what the relay makes them:
bytes that start no UTF-8 character."""


def _not_utf8(data: bytes) -> bytes:
    return data.replace(MARK, NOT_UTF8)


async def test_metadata_that_is_not_utf8_is_refused_and_its_value_never_logged(
    server_env: dict[str, str], restored_logging: None, capfd: pytest.CaptureFixture[str]
) -> None:
    configure_logging("json")
    sent = (bytearray(), bytearray())
    async with serving(server_env, ServingOptions(token="log-token-0123456789")) as server:
        proxy = await asyncio.start_server(
            functools.partial(relay, server.port, sent, rewrite=_not_utf8), "127.0.0.1", 0
        )
        port = proxy.sockets[0].getsockname()[1]
        async with proxy, grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub: Stub = inference_pb2_grpc.InferenceServiceStub(channel)
            metadata = (("authorization", f"Bearer {GUESS}~~"), ("x-request-id", "id~~"))
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.ListModels(pb.ListModelsRequest(), metadata=metadata)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert bytes(sent[0]).count(GUESS.encode() + NOT_UTF8) == 1  # the server was sent the bytes, not the marks
    assert b"id" + NOT_UTF8 in sent[0]
    output = capfd.readouterr().err
    # gRPC's C core writes lines of its own there too (this process's, as a client), which are not JSON
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert GUESS not in output
    assert [line for line in lines if line["logger"].startswith("grpc")] == []
    access = [line for line in lines if line["logger"] == "warpcore.access"]
    assert [(line["method"], line["code"]) for line in access] == [("ListModels", "UNAUTHENTICATED")]
    assert access[0]["request_id"].startswith("req_")  # a new one: the id sent is not printable ASCII
