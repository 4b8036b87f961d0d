"""A loopback relay between a real gRPC client and the server, to see or change the HTTP/2 bytes on the wire."""

from __future__ import annotations

import asyncio
from asyncio import StreamReader, StreamWriter
from collections.abc import Callable

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
"""What an HTTP/2 client sends before its first frame."""


async def relay(
    port: int,
    sent: tuple[bytearray, bytearray],
    reader: StreamReader,
    writer: StreamWriter,
    rewrite: Callable[[bytes], bytes] = bytes,
) -> None:
    """Passes one client connection on to the server at `port`, keeping what each side sends: (client's, server's).
    What the client sends goes through `rewrite` first (kept as rewritten): a test's way to send bytes that gRPC's
    client refuses to."""
    server_reader, server_writer = await asyncio.open_connection("127.0.0.1", port)

    async def pipe(source: StreamReader, sink: StreamWriter, kept: bytearray, change: Callable[[bytes], bytes]) -> None:
        while data := change(await source.read(65536)):
            kept += data
            sink.write(data)
            await sink.drain()
        sink.close()

    await asyncio.gather(pipe(reader, server_writer, sent[0], rewrite), pipe(server_reader, writer, sent[1], bytes))
