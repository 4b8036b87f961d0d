"""Checks of a hostile call's outcome: a documented status with rich details, and the statuses each call may give."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import grpc
from google.rpc import error_details_pb2
from hypothesis import event

from tests.conftest import rich_details
from tests.fakes.base import FakeUpstream
from tests.hostile import (
    CALL_TIMEOUT,
    FAKE_BASE_URL,
    MAX_DELTAS,
    REASONS_WITHOUT_FIELD,
    REFUSED_BASE_URL,
    UNRESOLVED_BASE_URL,
    Code,
)
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


def check_failure(error: grpc.aio.AioRpcError, allowed: Collection[Code]) -> error_details_pb2.ErrorInfo:
    """The status is one the call documents, says something, and carries an ErrorInfo (and a field if invalid)."""
    event(f"status {error.code().name}")  # tallied by --hypothesis-show-statistics
    assert error.code() in allowed, f"{error.code().name}: {error.details()!r}"
    assert (error.details() or "").strip(), f"{error.code().name} with an empty message"
    info, fields = rich_details(error)
    assert info.domain == "warpcore.v1"
    assert info.reason
    if error.code() == Code.INVALID_ARGUMENT and info.reason not in REASONS_WITHOUT_FIELD:
        assert fields, f"INVALID_ARGUMENT {info.reason} names no field: {error.details()!r}"
        assert all(fields), "a BadRequest field violation with an empty field"
    return info


async def unary_outcome(call: Any) -> grpc.aio.AioRpcError | None:
    """None when a unary call succeeded, else its error."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error
    event("status OK")
    return None


async def generate_outcome(stub: Stub, request: pb.GenerateRequest) -> grpc.aio.AioRpcError | None:
    """None when the stream was accepted (MAX_DELTAS deltas, or a complete stream), else its error."""
    call = stub.Generate(request, timeout=CALL_TIMEOUT)
    kinds: list[str | None] = []
    failure: grpc.aio.AioRpcError | None = None
    try:
        async for frame in call:
            assert "result" not in kinds, "a frame after the result frame"
            kinds.append(frame.WhichOneof("frame"))
            if kinds.count("delta") >= MAX_DELTAS:
                call.cancel()
                event("status OK (cancelled after the first deltas)")
                return None
    except grpc.aio.AioRpcError as error:
        failure = error
    if failure is not None:
        # A failure after text was sent closes the stream with a result frame first.
        assert not kinds or kinds[-1] == "result", f"{failure.code().name} after {kinds} without a result frame"
        return failure
    assert kinds.count("result") == 1, f"a stream that ended with {kinds}"
    event("status OK (complete stream)")
    return None


def api_request_config(config: pb.BackendConfig, backend: int, fakes: dict[int, FakeUpstream]) -> None:
    """Point the FAKE_BASE_URL placeholder at the fake upstream of `backend` (the OpenAI one for others)."""
    if config.WhichOneof("config") == "api" and config.api.base_url == FAKE_BASE_URL:
        config.api.base_url = fakes.get(backend, fakes[pb.BACKEND_TYPE_OPENAI]).base_url


def api_allowed(config: pb.BackendConfig) -> set[Code]:
    """Statuses the README documents for reaching an upstream with `config`: a refused connection, or a host name
    that does not resolve, is UNAVAILABLE; an upstream timeout DEADLINE_EXCEEDED (the fakes answer within a second,
    so only shorter timeouts)."""
    allowed = set()
    if config.WhichOneof("config") == "api":
        api = config.api
        if api.base_url in (REFUSED_BASE_URL, UNRESOLVED_BASE_URL):
            allowed.add(Code.UNAVAILABLE)
        if api.HasField("timeout") and api.timeout.seconds < 1:
            allowed.add(Code.DEADLINE_EXCEEDED)
    return allowed
