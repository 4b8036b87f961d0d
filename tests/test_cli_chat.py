"""`warpcore chat` end to end against the OpenAI fake: Ctrl-C stops a reply, not the session; a turn past --timeout
says so."""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING

import pytest

from tests.cli import finish, start, warpcore
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import api_config, load
from warpcore.server.rpc.server import WarpcoreServer

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def target(server: WarpcoreServer) -> str:
    return f"127.0.0.1:{server.port}"


async def read_until(stream: asyncio.StreamReader, seen: bytearray, wanted: bytes, count: int = 1) -> None:
    """Read `stream` into `seen` until `wanted` is in it `count` times, within a minute."""
    try:
        async with asyncio.timeout(60):
            while seen.count(wanted) < count:
                chunk = await stream.read(256)
                assert chunk, f"ended before {wanted!r}: {bytes(seen)!r}"
                seen += chunk
    except TimeoutError:
        raise AssertionError(f"no {wanted!r} within a minute: {bytes(seen)!r}") from None


@pytest.mark.skipif(signal.getsignal(signal.SIGINT) is signal.SIG_IGN, reason="SIGINT is ignored, so is the child's")
async def test_ctrl_c_during_a_reply_stops_it_and_forgets_the_exchange(
    stub: Stub, openai_upstream: FakeOpenAI, target: str
) -> None:
    """Ctrl-C used to end the whole session, with exit code 130."""
    await load(stub, openai_upstream)
    openai_upstream.script = Script(chunks=["Once", " upon"], stall_after=1)  # then silent until cancelled
    process = await start(target, "chat", "--model", "m")
    assert process.stdin is not None
    assert process.stdout is not None
    assert process.stderr is not None
    stdout, stderr = bytearray(), bytearray()
    try:
        await read_until(process.stderr, stderr, b"> ")
        process.stdin.write(b"first question\n")
        await read_until(process.stdout, stdout, b"Once")
        process.send_signal(signal.SIGINT)
        await read_until(process.stderr, stderr, b"> ", count=2)  # back at the prompt
        openai_upstream.script = Script(chunks=["ok"])
        process.stdin.write(b"second question\n")
        await read_until(process.stdout, stdout, b"ok\n")
    finally:
        process.stdin.close()
        rest_out, rest_err = await finish(process)
    assert process.returncode == 0  # the end of input quit, as it does
    assert bytes(stdout + rest_out) == b"Once\nok\n"
    assert bytes(stderr + rest_err) == b"> [reply stopped]\n> > "
    body = openai_upstream.requests[-1].body
    assert body is not None
    assert body["messages"] == [{"role": "user", "content": "second question"}]


async def test_a_failed_turn_is_told_and_forgotten_and_the_session_goes_on(
    stub: Stub, openai_upstream: FakeOpenAI, target: str
) -> None:
    """A failed turn (here a conversation grown past the model's context) used to end the whole session."""
    await load(stub, openai_upstream)
    openai_upstream.script = Script(status=400, error_message="too long", error_code="context_length_exceeded")
    process = await start(target, "chat", "--model", "m")
    assert process.stdin is not None
    assert process.stdout is not None
    assert process.stderr is not None
    stderr = bytearray()
    try:
        await read_until(process.stderr, stderr, b"> ")
        process.stdin.write(b"a very long question\n")
        await read_until(process.stderr, stderr, b"> ", count=2)  # told, and back at the prompt
        openai_upstream.script = Script(chunks=["ok"])
        process.stdin.write(b"a short one\n")
        await read_until(process.stderr, stderr, b"> ", count=3)
    finally:
        process.stdin.close()
        rest_out, rest_err = await finish(process)
    assert process.returncode == 1  # a script feeding it learns that a turn failed
    assert rest_out == b"ok\n"
    told = bytes(stderr + rest_err).decode()
    assert told.startswith("> [turn failed, forgotten: INVALID_ARGUMENT: ")
    assert "too long" in told
    assert told.endswith("]\n> > ")
    body = openai_upstream.requests[-1].body
    assert body is not None
    assert body["messages"] == [{"role": "user", "content": "a short one"}]


async def test_a_turn_past_timeout_says_whose_deadline_passed(
    stub: Stub, openai_upstream: FakeOpenAI, target: str
) -> None:
    """A tester's finding: the turn failed with gRPC's "Deadline Exceeded", where generate says --timeout's."""
    await load(stub, openai_upstream)
    openai_upstream.script = Script(chunks=["Once", " upon"], stall_after=1)
    run = await warpcore(target, "--timeout", "0.5", "chat", "--model", "m", stdin="first question\n")
    assert run.code == 1
    assert "[turn failed, forgotten: DEADLINE_EXCEEDED: timed out after 0.5 s (--timeout)]" in run.stderr


async def test_a_deadline_the_upstream_timeout_passed_is_not_blamed_on_timeout(
    stub: Stub, openai_upstream: FakeOpenAI, target: str
) -> None:
    """A tester's finding: a model loaded with a short API timeout failed with "timed out after 30 s (--timeout)"
    half a second in: the server's own deadline, whose words name the upstream, is what the user must change."""
    await load(stub, openai_upstream, api_config(openai_upstream, timeout={"nanos": 500_000_000}))
    openai_upstream.script = Script(chunks=["Once", " upon"], stall_after=1)
    run = await warpcore(target, "--timeout", "30", "generate", "--model", "m", "hi")
    assert run.code == 1
    assert "(--timeout)" not in run.stderr
    assert "DEADLINE_EXCEEDED: openai upstream error:" in run.stderr
