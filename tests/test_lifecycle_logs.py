"""The server log tells a model's load and unload once each, however many calls asked for them at once (one load and
one unload are what happened; the calls are each in the access log)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import load_tiny
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

CALLERS = 3


def said(caplog: pytest.LogCaptureFixture, beginning: str) -> int:
    return sum(record.getMessage().startswith(beginning) for record in caplog.records)


async def test_concurrent_loads_and_unloads_of_one_model_are_each_logged_once(
    stub: Stub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="warpcore.server")
    models = await asyncio.gather(*(load_tiny(stub) for _ in range(CALLERS)))
    assert {model.state for model in models} == {pb.MODEL_STATE_READY}
    assert said(caplog, "loaded model tiny ") == 1
    unloads = (stub.UnloadModel(pb.UnloadModelRequest(model_id="tiny")) for _ in range(CALLERS))
    answers = await asyncio.gather(*unloads, return_exceptions=True)
    # A call that comes once the model is freed finds none to unload: on a busy machine the calls do not all
    # arrive while the first one runs.
    refused = [answer for answer in answers if isinstance(answer, BaseException)]
    assert all(isinstance(error, grpc.aio.AioRpcError) for error in refused), refused
    assert {error.code() for error in refused if isinstance(error, grpc.aio.AioRpcError)} <= {grpc.StatusCode.NOT_FOUND}
    assert len(refused) < CALLERS
    assert said(caplog, "unloaded model tiny") == 1
