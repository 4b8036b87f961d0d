"""AsyncClient and event loops, against the real server: made outside any loop, used in one loop after another,
and refused, with a message saying what to do, in a second loop while the first runs, outside a loop and once closed.

Each loop of a client here runs in a worker thread (asyncio.to_thread), while the test's own loop serves the
in-process server."""

from __future__ import annotations

import asyncio
import json
import sys
import threading

import pytest
import uvloop

from tests.conftest import TINY_MODEL
from warpcore.client import AsyncClient, AsyncStream, CancelledError, TextDelta
from warpcore.server.rpc.server import WarpcoreServer

pytestmark = pytest.mark.timeout(120)

MADE_AT_IMPORT = """
import asyncio, json, sys
from warpcore.client import AsyncClient

client = AsyncClient(sys.argv[1], timeout=30)


async def generate() -> str:
    return (await client.generate("tiny", prompt="the world", max_tokens=4, temperature=0)).text


async def last() -> str:
    async with client:
        return await generate()


print(json.dumps([asyncio.run(generate()), asyncio.run(last())]))
"""
"""As a program uses it: made at import, in the main thread, before any loop runs; then asyncio.run, twice."""

ELSEWHERE = (
    "^this AsyncClient is in use in another event loop, still running \\(in another thread\\); an AsyncClient serves "
    "one running loop at a time: make an AsyncClient for each$"
)


@pytest.fixture
def target(server: WarpcoreServer) -> str:
    return f"127.0.0.1:{server.port}"


async def test_a_client_made_at_import_serves_one_asyncio_run_after_another(target: str) -> None:
    async with AsyncClient(target, timeout=30) as client:
        await client.load_model(TINY_MODEL, model_id="tiny")
        expected = (await client.generate("tiny", prompt="the world", max_tokens=4, temperature=0)).text
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-X", "dev", "-c", MADE_AT_IMPORT, target),  # dev: would show warnings, unclosed things
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert (process.returncode, stderr.decode()) == (0, "")
    assert json.loads(stdout) == [expected, expected]


async def test_one_client_in_loop_after_loop_with_a_stream_left_open_in_the_first(target: str) -> None:
    client = AsyncClient(target, timeout=30)

    async def first() -> AsyncStream[None]:
        await client.load_model(TINY_MODEL, model_id="a", context_size=4096)
        await client.load_model(TINY_MODEL, model_id="b")
        stream = await client.generate("a", prompt="the", max_tokens=4000, stream=True)
        event = await anext(stream)
        assert isinstance(event, TextDelta)
        return stream  # still generating when this loop stops

    async def second() -> list[str]:
        async with client:
            response = await client.generate("b", prompt="the world", max_tokens=4)
            assert response.usage is not None
            assert response.usage.completion_tokens == 4
            return sorted(model.id for model in await client.list_models())

    left_open = await asyncio.to_thread(asyncio.run, first())
    assert await asyncio.to_thread(uvloop.run, second()) == ["a", "b"]  # another kind of loop, as well

    async def third() -> None:
        """A tester's finding: the stream's text ended there with no error, as if the answer were whole."""
        with pytest.raises(CancelledError, match="opened in another event loop"):
            async for _ in left_open.text_stream:
                pass
        with pytest.raises(CancelledError, match="opened in another event loop"):
            await left_open.get_final_response()

    await asyncio.to_thread(asyncio.run, third())


async def test_a_second_loop_is_refused_while_the_first_runs_and_served_once_it_stops(target: str) -> None:
    client = AsyncClient(target, timeout=30)
    first_in, second_done = threading.Event(), threading.Event()

    async def first() -> list[str]:
        before = await client.health()
        first_in.set()
        await asyncio.to_thread(second_done.wait, 60)
        return [before, await client.health()]

    async def second() -> None:
        for refused in (client.health(), client.list_models(), client.close()):
            with pytest.raises(RuntimeError, match=ELSEWHERE):
                await refused

    async def third() -> str:
        async with client:
            return await client.health()

    running = asyncio.ensure_future(asyncio.to_thread(asyncio.run, first()))
    assert await asyncio.to_thread(first_in.wait, 60)
    try:
        await asyncio.to_thread(asyncio.run, second())
    finally:
        second_done.set()
    assert await running == ["SERVING", "SERVING"]  # the refusals did not disturb it
    assert await asyncio.to_thread(asyncio.run, third()) == "SERVING"


async def test_outside_a_loop_and_once_closed_the_client_says_what_to_do(target: str) -> None:
    client = AsyncClient(target)
    with pytest.raises(RuntimeError, match=r"^AsyncClient calls run in an event loop: .* or use Client, which blocks$"):
        await asyncio.to_thread(lambda: client.stub)
    await client.close()  # never used: nothing to close, and no error
    await client.close()
    with pytest.raises(RuntimeError, match=r"^this AsyncClient is closed$"):
        await client.health()

    async with AsyncClient(target) as used:
        assert await used.health() == "SERVING"
    with pytest.raises(RuntimeError, match=r"^this AsyncClient is closed$"):
        await used.list_models()
