"""The SDK at the ends of its objects' lives: a stream left early and dropped is cancelled on the server, a closed
client refuses every call alike (Client's and AsyncClient's), and a token gRPC cannot send is refused when the client
is made, a stream whose server went away still names its call, and one closed before its end says so."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from tests.fakes.openai_api import FakeOpenAI
from tests.sdk_support import stalled, target
from warpcore.client import AsyncClient, AsyncStream, CancelledError, Client, TextDelta, WarpcoreError
from warpcore.server.rpc.server import WarpcoreServer

__all__ = ["stalled", "target"]  # the fixtures, used by name

pytestmark = pytest.mark.timeout(120)


@contextlib.contextmanager
def only_reference_counting() -> Iterator[None]:
    """The garbage collector off: what is freed is freed because nothing refers to it, not by a collection that
    happens to run (a stream in a reference cycle was cancelled only then)."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def assert_upstream_left(upstream: FakeOpenAI) -> None:
    try:
        async with asyncio.timeout(10):
            await upstream.disconnected.wait()
    except TimeoutError:
        raise AssertionError("the generation went on: the server never cancelled the upstream's stream") from None


async def test_a_sync_stream_left_early_and_dropped_is_cancelled(target: str, stalled: FakeOpenAI) -> None:
    client = Client(target)

    def first_piece() -> str | None:
        stream = client.generate("m", prompt="hi", stream=True)
        for text in stream.text_stream:
            return text  # leaves the loop, and the stream, with the client still open
        return None

    try:
        with only_reference_counting():
            assert await asyncio.to_thread(first_piece) == "Once"
            await assert_upstream_left(stalled)
    finally:
        client.close()


async def test_an_async_stream_left_early_and_dropped_is_cancelled(target: str, stalled: FakeOpenAI) -> None:
    async with AsyncClient(target) as client:

        async def first_piece() -> str | None:
            stream = await client.generate("m", prompt="hi", stream=True)
            async for text in stream.text_stream:
                return text
            return None

        with only_reference_counting():
            assert await first_piece() == "Once"
            await assert_upstream_left(stalled)


CLOSED_SYNC = """
from warpcore.client import Client
with Client("127.0.0.1:1") as client:
    pass
for call in (lambda: client.stub, client.list_models, lambda: client.generate("m", prompt="hi"), client.health):
    try:
        call()
    except Exception as error:
        print(type(error).__name__, error)
"""


def test_a_closed_client_refuses_every_call_without_crashing() -> None:
    """health() on a closed Client crashed the interpreter (SIGSEGV); the other calls raised gRPC's ValueError."""
    done = subprocess.run([sys.executable, "-c", CLOSED_SYNC], capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == ["RuntimeError this Client is closed"] * 4


async def test_a_closed_async_client_refuses_as_the_sync_one_does() -> None:
    async with AsyncClient("127.0.0.1:1") as client:
        pass
    for refused in (client.list_models(), client.generate("m", prompt="hi"), client.health()):
        with pytest.raises(RuntimeError, match=r"^this AsyncClient is closed$"):
            await refused


@pytest.mark.parametrize("token", ["a\nb", "é", "tab\there"])
@pytest.mark.parametrize("make", [Client, AsyncClient], ids=["sync", "async"])
def test_a_token_grpc_cannot_send_is_refused_when_the_client_is_made(make: Callable[..., object], token: str) -> None:
    """It was taken, and the first call failed with INTERNAL "Invalid metadata" (and gRPC's own log lines)."""
    with pytest.raises(ValueError, match=r"^token: must be printable ASCII, as a gRPC header value is$"):
        make("127.0.0.1:1", token=token)


def test_a_token_from_the_environment_is_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARPCORE_TOKEN", "line\nbreak")
    with pytest.raises(ValueError, match=r"\(from \$WARPCORE_TOKEN\)$"):
        Client("127.0.0.1:1")


@pytest.mark.parametrize("make", [Client, AsyncClient], ids=["sync", "async"])
def test_a_target_grpc_would_dial_otherwise_than_written_is_refused_when_the_client_is_made(
    make: Callable[..., object], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match=r"^target: must not be empty"):
        make("")
    with pytest.raises(ValueError, match=r"^target: port 70000 is not one of 1 to 65535$"):
        make("dns:///localhost:70000")
    monkeypatch.setenv("WARPCORE_TARGET", "[::1]:99999")
    with pytest.raises(ValueError, match=r"^target: port 99999 is not one of 1 to 65535 \(from \$WARPCORE_TARGET\)$"):
        make()


async def test_a_stream_kept_past_its_event_loop_is_cancelled_when_the_client_moves_to_another(
    target: str, stalled: FakeOpenAI
) -> None:
    """Each asyncio.run has a loop of its own; the server generated the first one's stream to its end, its slot held."""
    client = AsyncClient(target)

    async def open_stream() -> AsyncStream[None]:
        stream = await client.generate("m", prompt="hi", stream=True)
        await anext(stream)
        return stream

    kept = await asyncio.to_thread(asyncio.run, open_stream())
    assert await asyncio.to_thread(asyncio.run, client.health()) == "SERVING"
    await assert_upstream_left(stalled)
    await asyncio.to_thread(asyncio.run, client.close())
    del kept


async def test_a_stream_read_after_its_client_closed_raises_as_the_sync_one_does(
    target: str, stalled: FakeOpenAI
) -> None:
    """The async read raised asyncio.CancelledError, as if the reading task itself had been cancelled."""
    sync_client = Client(target)
    sync_stream = sync_client.generate("m", prompt="hi", stream=True)
    assert await asyncio.to_thread(next, sync_stream) == TextDelta("Once")
    sync_client.close()
    with pytest.raises(CancelledError) as sync_raised:
        await asyncio.to_thread(next, sync_stream)
    client = AsyncClient(target)
    stream = await client.generate("m", prompt="hi", stream=True)
    assert await anext(stream) == TextDelta("Once")
    await client.close()
    with pytest.raises(CancelledError) as raised:
        await anext(stream)
    assert (raised.value.status, type(raised.value)) == (sync_raised.value.status, type(sync_raised.value))


async def test_a_reading_task_cancelled_is_still_cancelled(target: str, stalled: FakeOpenAI) -> None:
    async with AsyncClient(target) as client:
        stream = await client.generate("m", prompt="hi", stream=True)
        await anext(stream)
        reading = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0)  # one turn of the loop: the read has started, and waits on the stalled stream
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reading


async def test_a_stream_whose_server_went_away_fails_with_the_calls_request_id(
    server: WarpcoreServer, target: str, stalled: FakeOpenAI
) -> None:
    """No status details come from a server that died mid-stream: the id it sent first still names the call (and
    tells the CLI that a server did answer)."""
    async with AsyncClient(target) as client:
        stream = await client.generate("m", prompt="hi", stream=True)
        assert isinstance(await anext(aiter(stream)), TextDelta)
        await server.stop(None)
        with pytest.raises(WarpcoreError) as failed:
            async for _ in stream:
                pass
    assert failed.value.request_id.startswith("req_")


async def test_a_stream_closed_before_its_end_says_so_whenever_its_answer_is_asked(
    target: str, stalled: FakeOpenAI
) -> None:
    """A tester's finding: get_final_response() after the with block raised "CANCELLED: Locally cancelled by
    application!", gRPC's words; the async stream's second ask raised RuntimeError (no result frame)."""
    said = "CANCELLED: the stream was closed before its end (its close(), or the end of its with block)"

    def sync_asks() -> None:
        with Client(target) as client:
            with client.generate("m", prompt="hi", stream=True) as stream:
                next(stream)
            for _ in range(2):
                with pytest.raises(CancelledError) as raised:
                    stream.get_final_response()
                assert str(raised.value) == said

    await asyncio.to_thread(sync_asks)
    async with AsyncClient(target) as client:
        async with await client.generate("m", prompt="hi", stream=True) as async_stream:
            await anext(async_stream)
        for _ in range(2):
            with pytest.raises(CancelledError) as raised:
                await async_stream.get_final_response()
            assert str(raised.value) == said
