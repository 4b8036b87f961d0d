"""The floor of any Python HTTP gateway: a bare aiohttp proxy on uvloop that forwards each request's bytes to the
upstream and the answer's bytes back as they come, own process.

No parsing, validation, translation or SDK on either side: what it adds to a vendor SDK's time to first token is
the extra hop's own cost (one more aiohttp server, one more aiohttp client, one more process to wake on a shared
machine), which no gateway written with them can avoid.
"""

from __future__ import annotations

import argparse

import aiohttp
import uvloop
from aiohttp import web

from bench.api_upstream import ANTHROPIC_PREFIX, OPENAI_PREFIX, raise_open_file_limit, until_stopped

UPSTREAM = web.AppKey("upstream", str)
SESSION = web.AppKey("session", aiohttp.ClientSession)
_FORWARDED = ("content-type", "authorization", "x-api-key", "anthropic-version")


async def forward(request: web.Request) -> web.StreamResponse:
    """The request to the upstream under its dialect's prefix; the answer streamed back chunk by chunk."""
    prefix = ANTHROPIC_PREFIX if request.path.startswith("/v1/messages") else OPENAI_PREFIX
    headers = {name: request.headers[name] for name in _FORWARDED if name in request.headers}
    body = await request.read()
    url = request.app[UPSTREAM] + prefix + request.path
    async with request.app[SESSION].post(url, data=body, headers=headers) as answer:
        response = web.StreamResponse(status=answer.status, headers={"Content-Type": answer.content_type})
        await response.prepare(request)
        async for chunk in answer.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response


async def serve(upstream: str) -> None:
    app = web.Application()
    app[UPSTREAM] = upstream
    app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=False)
    app.router.add_post("/v1/chat/completions", forward)
    app.router.add_post("/v1/messages", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
    await site.start()
    print(f"listening on 127.0.0.1:{runner.addresses[0][1]}", flush=True)
    await until_stopped()
    await app[SESSION].close()
    await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("upstream", help="the upstream's origin, e.g. http://127.0.0.1:8080")
    arguments = parser.parse_args()
    raise_open_file_limit()
    uvloop.run(serve(arguments.upstream))
