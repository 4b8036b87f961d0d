"""A failure inside one local generation ends that generation alone: its caller gets a status, its neighbours and
later calls on the model go on. Faults are injected into llama-cpp-python and the standard library, on the model's
batching thread only, once."""

from __future__ import annotations

import asyncio
import codecs
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc
import llama_cpp
import pytest

from tests.conftest import assert_healthy, failed_stream, greedy, load_tiny, rich_details
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


class FailOnce:
    """Wraps `function` to raise once on the batching thread after `arm()`, and to behave as itself otherwise."""

    def __init__(self, function: Callable[..., Any]) -> None:
        self._function = function
        self._armed = threading.Event()
        self.raised = threading.Event()

    def arm(self) -> None:
        self._armed.set()

    def method(self) -> Callable[..., Any]:
        """This, as a function a class can hold as a method (an instance of a class is not bound to its object)."""
        return lambda *args, **kwargs: self(*args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name == "llama-cpp-batch" and self._armed.is_set() and not self.raised.is_set():
            self.raised.set()
            raise RuntimeError("injected fault")
        return self._function(*args, **kwargs)


async def result(call: grpc.aio.UnaryStreamCall[pb.GenerateRequest, pb.GenerateResponse]) -> pb.GenerateResult:
    """The result frame of a stream already read from with `read()` (which its iterator cannot follow), or the
    stream's status once read to its end."""
    results = []
    while (frame := await call.read()) is not grpc.aio.EOF:
        assert isinstance(frame, pb.GenerateResponse)
        results += [frame.result] if frame.HasField("result") else []
    assert len(results) == 1
    return results[0]


async def test_a_generation_whose_token_fails_ends_alone(stub: Stub, monkeypatch: pytest.MonkeyPatch) -> None:
    await load_tiny(stub, parallel=2, context_size=4096)
    fault = FailOnce(llama_cpp.Llama.detokenize)
    monkeypatch.setattr(llama_cpp.Llama, "detokenize", fault.method())
    calls = [stub.Generate(greedy(prompt, 1000)) for prompt in ("the", "people")]
    for call in calls:
        await call.read()  # both are running
    fault.arm()
    outcomes = await asyncio.gather(*(result(call) for call in calls), return_exceptions=True)
    assert fault.raised.is_set()
    failed = [outcome for outcome in outcomes if isinstance(outcome, grpc.aio.AioRpcError)]
    finished = [outcome for outcome in outcomes if isinstance(outcome, pb.GenerateResult)]
    assert len(failed) == 1, outcomes
    assert failed[0].code() == grpc.StatusCode.INTERNAL
    assert "injected fault" not in (failed[0].details() or "")  # the log has it, not the client
    assert len(finished) == 1
    assert finished[0].finish_reason == pb.FINISH_REASON_LENGTH
    await assert_healthy(stub)


async def test_a_generation_that_cannot_start_is_refused_alone(stub: Stub, monkeypatch: pytest.MonkeyPatch) -> None:
    await load_tiny(stub, parallel=2)
    fault = FailOnce(codecs.getincrementaldecoder)  # the generation's text decoder, made as it starts
    monkeypatch.setattr(codecs, "getincrementaldecoder", fault)
    fault.arm()
    _, error = await asyncio.wait_for(failed_stream(stub.Generate(greedy("the world", 8))), 10)
    assert fault.raised.is_set()
    assert error.code() == grpc.StatusCode.INTERNAL
    await assert_healthy(stub)


async def test_a_model_whose_batching_fails_tells_every_caller_and_says_so_after(
    stub: Stub, monkeypatch: pytest.MonkeyPatch
) -> None:
    await load_tiny(stub, parallel=2)
    fault = FailOnce(llama_cpp.llama_memory_seq_rm)  # freeing a slot's cells: no one generation's, the model's
    monkeypatch.setattr(llama_cpp, "llama_memory_seq_rm", fault)
    fault.arm()
    calls = [failed_stream(stub.Generate(greedy(prompt, 8))) for prompt in ("the world", "people")]
    outcomes = await asyncio.wait_for(asyncio.gather(*calls), 10)  # nobody waits forever
    assert fault.raised.is_set()
    assert {error.code() for _, error in outcomes} <= {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE}
    _, later = await asyncio.wait_for(failed_stream(stub.Generate(greedy("the world", 8))), 10)
    assert later.code() == grpc.StatusCode.UNAVAILABLE
    assert rich_details(later)[0].reason == "MODEL_FAILED"
    assert "unload it and load it again" in (later.details() or "")
    await stub.UnloadModel(pb.UnloadModelRequest(model_id="tiny"))
    await load_tiny(stub, parallel=2)
    await assert_healthy(stub)
