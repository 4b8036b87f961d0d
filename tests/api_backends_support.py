"""Shared by the tests/test_api_backend_*.py modules (OpenAI and Anthropic backends): the status code alias and the rich
error details of a failed call."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

Code = grpc.StatusCode


def details(error: grpc.aio.AioRpcError) -> dict[str, object]:
    """ErrorInfo reason/metadata and RetryInfo delay of a failed call."""
    status = rpc_status.from_call(error)
    assert status is not None
    found: dict[str, object] = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            found["reason"], found["metadata"] = info.reason, dict(info.metadata)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            found["retry_after"] = retry.retry_delay.ToTimedelta().total_seconds()
    return found
