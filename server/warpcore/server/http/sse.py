"""Server-sent events on an aiohttp response: the headers every stream gets, and one event's bytes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import HttpVersion11, web

DONE = b"data: [DONE]\n\n"
"""The OpenAI dialect's end of stream."""


def event(data: Mapping[str, Any], name: str | None = None) -> bytes:
    """One event: `event: <name>` when named (Anthropic), then its JSON on one `data:` line."""
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {body}\n\n".encode()


SLOT = "\x00"
"""Stands in a template event for the one string that changes from one sending to the next."""
_SLOT_JSON = b'"\\u0000"'


def template(data: Mapping[str, Any], name: str | None = None) -> tuple[bytes, bytes]:
    """The bytes of `event(data, name)` before and after its SLOT string: an event sent once per token is those,
    around the token's JSON string, without encoding the rest again."""
    before, after = event(data, name).split(_SLOT_JSON)
    return before, after


def fill(slot: tuple[bytes, bytes], text: str) -> bytes:
    return slot[0] + json.dumps(text, ensure_ascii=False).encode() + slot[1]


class _EventStream(web.StreamResponse):
    # aiohttp's switch, off for its whole-body Response: the status line and headers wait for the first write and go
    # out in one send with it. Two sends would wake the client twice before its first event.
    _send_headers_immediately = False


async def open_stream(request: web.Request, headers: Mapping[str, str]) -> web.StreamResponse:
    """Start an event stream: its status and headers go out with its first events; the body follows event by
    event."""
    response = _EventStream(
        status=200,
        headers={
            **headers,
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            # Proxies in front (nginx and kin) would otherwise hold events back to fill a buffer.
            "X-Accel-Buffering": "no",
        },
    )
    if request.version < HttpVersion11:
        # No chunked framing before HTTP/1.1: the end of the stream is the end of the connection. (aiohttp works
        # this out for the head it sends, and then keeps the connection open regardless.)
        response.force_close()
    await response.prepare(request)
    return response
