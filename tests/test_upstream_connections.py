"""Kept-alive connections that an upstream closes (llama.cpp's server closes one after each stream while its headers
announce keep-alive): a request sent on one closed meanwhile, which nothing answered, is sent again on another."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import collect, rich_details
from tests.fakes.base import FakeUpstream
from tests.fakes.script import Script
from tests.hosted import load, prompt
from warpcore.server.adapters.hosted.streaming import RESENDS

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

CALLS = 12


async def test_back_to_back_calls_to_an_upstream_that_closes_after_each_stream_all_succeed(
    stub: Stub, upstream: FakeUpstream
) -> None:
    """The tester's finding: every other call failed at once, as a timeout (DEADLINE_EXCEEDED) through OpenAI."""
    upstream.script = Script(chunks=["back", " to", " back"], close_after_stream=True)
    await load(stub, upstream)
    posted = len(upstream.requests)
    for _ in range(CALLS):
        text, _ = await collect(stub.Generate(prompt(max_tokens=3)))
        assert text == "back to back"
    assert len(upstream.requests) - posted == CALLS  # each generation reached the upstream once


async def test_an_upstream_that_closes_every_connection_unanswered_is_unavailable_not_a_timeout(
    stub: Stub, upstream: FakeUpstream
) -> None:
    await load(stub, upstream)
    upstream.script = Script(close_unanswered=True)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await collect(stub.Generate(prompt(max_tokens=3)))
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert rich_details(refused.value)[0].reason == "UPSTREAM_UNAVAILABLE"
    assert "closed the connection before answering" in (refused.value.details() or "")
    assert upstream.closed_unanswered == 1 + RESENDS  # sent again a bounded number of times, then given up
