"""A hosted upstream's wait that the call's deadline cut short is the caller's deadline when it times out: the call
ends as any whose deadline passed (DEADLINE_EXCEEDED in gRPC's words, no reason of the server's, its line
`finish_reason` cancelled), even where the SDK's timeout fires before gRPC's own end of the call reaches it (an
outside tester's finding: 4 of 60 Generate calls with a deadline of 1.5 to 3 ms ended UPSTREAM_DEADLINE_EXCEEDED,
the backend's 600 s timeout named, their lines without `finish_reason`). The backend's own timeout, sooner than the
deadline, stays the upstream's.

The engine is driven without a door where the order must not be left to timing: no gRPC deadline there ends the
call before the SDK's timeout does."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc
import pytest
from grpc_status import rpc_status

from tests.conftest import AccessLines, failed_stream, rich_details
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import api_config, load, prompt
from warpcore.server.core.access import recording_usage
from warpcore.server.core.domain import FinishReason, GenerationParams, TextChunk
from warpcore.server.core.embeddings import EmbedParams
from warpcore.server.core.engine import GenerationResult
from warpcore.server.core.errors import DeadlineExceededError

if TYPE_CHECKING:
    from tests.fakes.base import FakeUpstream
    from warpcore.server.rpc.server import WarpcoreServer
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

LONG = {"seconds": 600}
"""The backend's timeout, far beyond the call's deadline."""
SHORT = {"nanos": 200_000_000}
"""The backend's timeout, well within the call's deadline."""

STALLS: dict[str, dict[str, Any]] = {"silent": {"silent": True}, "mid-stream": {"chunks": ["a", "b"], "stall_after": 1}}
"""Where the upstream stops answering: before its answer's status line, after its first text."""


async def stalled(
    stub: Stub, upstream: FakeUpstream, backend_timeout: dict[str, int], stall: str = "silent", model: str | None = None
) -> None:
    """The upstream's model loaded as "m" with `backend_timeout`, the upstream then stopping as `stall` says."""
    await load(stub, upstream, api_config(upstream, timeout=backend_timeout), model)
    upstream.script = Script(**STALLS[stall])


def within(deadline: float) -> GenerationParams:
    return GenerationParams(prompt="Say hello", messages=(), max_tokens=16, timeout=deadline)


async def generated(
    server: WarpcoreServer,
    stub: Stub,
    upstream: FakeUpstream,
    backend_timeout: dict[str, int],
    stall: str,
    deadline: float,
) -> tuple[list[object], DeadlineExceededError, dict[str, int | str]]:
    """What the engine gave model "m", stalled (`stall`) with `backend_timeout`, before failing past a deadline
    `deadline` seconds away; the failure; the usage noted for the call's line."""
    await stalled(stub, upstream, backend_timeout, stall)
    given: list[object] = []

    async def run() -> None:
        async for output in server.engine.generate("m", within(deadline)):
            given.append(output)

    with recording_usage() as usage, pytest.raises(DeadlineExceededError) as raised:
        await run()
    return given, raised.value, usage


@pytest.mark.parametrize("stall", STALLS)
async def test_a_wait_the_deadline_cut_short_is_the_callers_deadline(
    stall: str, server: WarpcoreServer, stub: Stub, upstream: FakeUpstream
) -> None:
    given, error, usage = await generated(server, stub, upstream, LONG, stall, 0.05)
    assert error.reason == "DEADLINE_EXCEEDED"  # no reason of the server's: the caller's own deadline
    if stall == "silent":  # no result: the call's line is told so
        assert (given, usage.get("finish_reason")) == ([], "cancelled")
    else:  # the result the door sends, and logs, before the error
        assert TextChunk("a") in given
        last = given[-1]
        assert isinstance(last, GenerationResult)
        assert last.finish.reason is FinishReason.CANCELLED


@pytest.mark.parametrize("stall", STALLS)
async def test_the_backends_timeout_sooner_than_the_deadline_stays_the_upstreams(
    stall: str, server: WarpcoreServer, stub: Stub, upstream: FakeUpstream
) -> None:
    _, error, usage = await generated(server, stub, upstream, SHORT, stall, 30)
    assert error.reason == "UPSTREAM_DEADLINE_EXCEEDED"
    assert error.message.endswith(
        "did not answer in time (the backend's timeout allows 0.2 s for each wait, the"
        " call's deadline less if it is sooner)"
    )
    assert usage.get("finish_reason") != "cancelled"


async def test_an_embedding_wait_the_deadline_cut_short_is_the_callers_deadline(
    server: WarpcoreServer, stub: Stub, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.models.append("text-embedding-3-small")
    await stalled(stub, openai_upstream, LONG, model="text-embedding-3-small")
    with pytest.raises(DeadlineExceededError) as raised:
        await server.engine.embed("m", EmbedParams(("hello",), timeout=0.05))
    assert raised.value.reason == "DEADLINE_EXCEEDED"


async def test_a_token_count_wait_the_deadline_cut_short_is_the_callers_deadline(
    server: WarpcoreServer, stub: Stub, anthropic_upstream: FakeAnthropic
) -> None:
    await stalled(stub, anthropic_upstream, LONG)
    with pytest.raises(DeadlineExceededError) as raised:
        await server.engine.count_tokens("m", within(0.05), include_tokens=False)
    assert raised.value.reason == "DEADLINE_EXCEEDED"


async def test_over_grpc_a_short_deadline_ends_as_the_callers_whichever_end_comes_first(
    stub: Stub, upstream: FakeUpstream, access_lines: AccessLines
) -> None:
    # gRPC's end of the call and the SDK's timeout come within a millisecond of each other, in either order: each
    # call ends the same. (The tester's deadlines of 1.5 ms are not used: gRPC ends some calls before their handler
    # begins, which no line tells.)
    await stalled(stub, upstream, LONG)
    assert (await access_lines.next())[0] == "LoadModel"
    for _ in range(10):
        _, error = await failed_stream(stub.Generate(prompt(), timeout=0.05))
        # No details: gRPC's own end of a call, which names no reason (the client's SDK then names its timeout).
        assert (error.code(), rpc_status.from_call(error)) == (grpc.StatusCode.DEADLINE_EXCEEDED, None)
        assert await access_lines.next() == ("Generate", "m", "DEADLINE_EXCEEDED")
        assert access_lines.records[-1].__dict__.get("finish_reason") == "cancelled"


async def test_over_grpc_the_backends_timeout_sooner_than_the_deadline_is_the_upstreams(
    stub: Stub, upstream: FakeUpstream, access_lines: AccessLines
) -> None:
    await stalled(stub, upstream, SHORT)
    assert (await access_lines.next())[0] == "LoadModel"
    _, error = await failed_stream(stub.Generate(prompt(), timeout=30))
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert rich_details(error)[0].reason == "UPSTREAM_DEADLINE_EXCEEDED"
    assert await access_lines.next() == ("Generate", "m", "DEADLINE_EXCEEDED")
    assert "finish_reason" not in access_lines.records[-1].__dict__  # failed before its first text
