"""The door's event streams on the wire: the status line and headers travel with the first event."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from warpcore.server.http.sse import event, open_stream


@pytest.fixture
async def held_stream() -> AsyncIterator[tuple[int, asyncio.Event]]:
    """A server whose one route opens an event stream, then waits for the test before its first event."""
    release = asyncio.Event()

    async def stream(request: web.Request) -> web.StreamResponse:
        response = await open_stream(request, {"x-request-id": "req-1"})
        await release.wait()
        await response.write(event({"n": 1}, "first"))
        return response

    app = web.Application()
    app.router.add_get("/", stream)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1], release
    finally:
        release.set()
        await runner.cleanup()


async def test_the_headers_wait_for_the_first_event_and_go_with_it(held_stream: tuple[int, asyncio.Event]) -> None:
    port, release = held_stream
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        # A client woken by the headers alone would wake again for the first event.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(1), 0.5)
        release.set()
        received = b""
        async with asyncio.timeout(10):
            while b"event: first" not in received:
                received += await reader.read(65536)
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"Content-Type: text/event-stream; charset=utf-8" in head
        assert b"x-request-id: req-1" in head.lower()
        assert b'event: first\ndata: {"n":1}\n\n' in body
    finally:
        writer.close()
        await writer.wait_closed()
