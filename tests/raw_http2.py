"""Just enough HTTP/2 (RFC 9113), by hand, to do what a gRPC library never does: open streams that send nothing, past
what the server said it takes, and read the frames it answers with."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HEADERS, RST_STREAM, SETTINGS = 0x1, 0x3, 0x4
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
MAX_CONCURRENT_STREAMS = 0x3
NO_ERROR, REFUSED_STREAM = 0x0, 0x7


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def header_block(headers: dict[str, str]) -> bytes:
    """HPACK literals without indexing, each with its name spelt out (short names and values only)."""
    block = b""
    for name, value in headers.items():
        block += b"\x00" + bytes([len(name)]) + name.encode() + bytes([len(value)]) + value.encode()
    return block


@dataclass
class Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    settings: dict[int, int] = field(default_factory=dict)
    """The server's first SETTINGS."""
    next_stream: int = 1

    async def read(self) -> tuple[int, int, int, bytes]:
        """The next frame: its type, flags, stream and payload."""
        head = await self.reader.readexactly(9)
        payload = await self.reader.readexactly(int.from_bytes(head[:3], "big"))
        return head[3], head[4], int.from_bytes(head[5:9], "big") & 0x7FFFFFFF, payload

    def open_streams(self, count: int, headers: dict[str, str], flags: int) -> list[int]:
        """Send `count` HEADERS frames, each opening a stream; their ids."""
        ids = list(range(self.next_stream, self.next_stream + 2 * count, 2))
        self.next_stream += 2 * count
        block = header_block(headers)
        self.writer.write(b"".join(frame(HEADERS, END_HEADERS | flags, stream, block) for stream in ids))
        return ids

    async def ended(self, count: int) -> dict[int, int]:
        """Read until the server has ended `count` streams: each with its RST_STREAM's error code, or NO_ERROR when
        it ended it with trailers."""
        ended: dict[int, int] = {}
        while len(ended) < count:
            kind, flags, stream, payload = await self.read()
            if kind == RST_STREAM:
                ended[stream] = int.from_bytes(payload, "big")
            elif kind == HEADERS and flags & END_STREAM:
                ended.setdefault(stream, NO_ERROR)
        return ended


@contextlib.asynccontextmanager
async def connected(port: int) -> AsyncIterator[Connection]:
    """A cleartext HTTP/2 connection to a loopback port, its SETTINGS exchanged."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    connection = Connection(reader, writer)
    try:
        writer.write(PREFACE + frame(SETTINGS, 0, 0))
        kind, _, _, payload = await connection.read()
        assert kind == SETTINGS
        for at in range(0, len(payload), 6):  # each a 16-bit identifier and a 32-bit value
            value = int.from_bytes(payload[at + 2 : at + 6], "big")
            connection.settings[int.from_bytes(payload[at : at + 2], "big")] = value
        writer.write(frame(SETTINGS, ACK, 0))
        yield connection
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
