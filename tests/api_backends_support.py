"""Shared by the tests/test_api_backend_*.py modules (OpenAI and Anthropic backends): the status code alias, the rich
error details of a failed call, and each vendor's refusal of a prompt too long (the HTTP door's tests too)."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tests.fakes.base import FakeUpstream
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script

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


def prompt_too_long(upstream: FakeUpstream) -> tuple[Script, str]:
    """What OpenAI or Anthropic answers a prompt longer than the model's context, and the context size it says."""
    if isinstance(upstream, FakeOpenAI):
        message = "This model's maximum context length is 10 tokens. However, your messages resulted in 12 tokens."
        return Script(status=400, error_code="context_length_exceeded", error_message=message), "10 tokens"
    return Script(status=400, error_message="prompt is too long: 250000 tokens > 200000 maximum"), "200000 tokens"
