"""A fast loopback upstream for benchmarks: OpenAI chat-completions SSE and Anthropic messages SSE, own process."""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import resource
import signal
import time
from typing import Any

from aiohttp import web

FAST_MODEL = "bench-fast"
"""Streams every token at once: the best case for exposing a gateway's own cost."""
SLOW_MODEL = "bench-slow"
"""Streams SLOW_TOKENS_PER_SECOND tokens a second, like a hosted model."""
SLOW_TOKENS_PER_SECOND = 20.0
MODELS = (FAST_MODEL, SLOW_MODEL)
OPENAI_PREFIX = "/openai"
"""OpenAI's base URL is origin + /openai/v1; Anthropic's is origin + /anthropic (its SDK adds /v1)."""
ANTHROPIC_PREFIX = "/anthropic"
# Distinct words in a cycle of prime length, so no chunk repeats its predecessor (LiteLLM cuts a stream that
# repeats one chunk too often) and every token is a JSON-safe ASCII word of a typical token's length.
_WORDS = tuple(f" w{index:02d}" for index in range(97))
_WORD_BYTES = tuple(word.encode() for word in _WORDS)
_PLACEHOLDER = "@token@"
_BACKLOG = 4096  # a thousand streams may connect at once
_CREATED = int(time.time())


def token(index: int) -> str:
    return _WORDS[index % len(_WORDS)]


@functools.cache
def expected_text(tokens: int) -> str:
    """What a stream of `tokens` tokens spells, for clients to check that nothing was lost or reordered."""
    return "".join(token(index) for index in range(tokens))


def _sse(payload: dict[str, Any], event: str | None = None) -> bytes:
    data = json.dumps(payload, separators=(",", ":"))
    return (f"event: {event}\ndata: {data}\n\n" if event else f"data: {data}\n\n").encode()


def _interval(model: str) -> float:
    return 1.0 / SLOW_TOKENS_PER_SECOND if model == SLOW_MODEL else 0.0


def _around_token(event: bytes) -> tuple[bytes, bytes]:
    """An event made with the placeholder token, split where each token's text goes."""
    before, _, after = event.partition(_PLACEHOLDER.encode())
    return before, after


async def _send_tokens(response: web.StreamResponse, tokens: int, template: bytes, interval: float) -> None:
    """One write per token, as a real upstream flushes each one; on a schedule when the model is slow. The events
    come from a template, so that the upstream spends as little as possible per token."""
    before, after = _around_token(template)
    started = time.monotonic()
    for index in range(tokens):
        if interval:
            await asyncio.sleep(max(started + index * interval - time.monotonic(), 0.0))
        await response.write(before + _WORD_BYTES[index % len(_WORD_BYTES)] + after)


async def _event_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    return response


async def _openai_chat(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    model: str = body["model"]
    tokens = int(body.get("max_completion_tokens") or body.get("max_tokens") or 16)
    head = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": _CREATED, "model": model}
    include_usage = (body.get("stream_options") or {}).get("include_usage") is True
    extra = {"usage": None} if include_usage else {}

    def chunk(delta: dict[str, str], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _sse({**head, "choices": [choice], **extra})

    response = await _event_stream(request)
    await response.write(chunk({"role": "assistant", "content": ""}))
    await _send_tokens(response, tokens, chunk({"content": _PLACEHOLDER}), _interval(model))
    await response.write(chunk({}, "length"))
    if include_usage:
        usage = {"prompt_tokens": 8, "completion_tokens": tokens, "total_tokens": 8 + tokens}
        await response.write(_sse({**head, "choices": [], "usage": usage}))
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def _anthropic_messages(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    model: str = body["model"]
    tokens = int(body["max_tokens"])
    message: dict[str, Any] = {
        "id": "msg_bench",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": model,
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 8, "output_tokens": 1},
    }

    def event(name: str, **payload: Any) -> bytes:
        return _sse({"type": name, **payload}, name)

    response = await _event_stream(request)
    await response.write(event("message_start", message=message))
    await response.write(event("content_block_start", index=0, content_block={"type": "text", "text": ""}))
    delta = event("content_block_delta", index=0, delta={"type": "text_delta", "text": _PLACEHOLDER})
    await _send_tokens(response, tokens, delta, _interval(model))
    await response.write(event("content_block_stop", index=0))
    stop = {"stop_reason": "max_tokens", "stop_sequence": None}
    await response.write(event("message_delta", delta=stop, usage={"output_tokens": tokens}))
    await response.write(event("message_stop"))
    await response.write_eof()
    return response


async def _openai_models(request: web.Request) -> web.Response:
    data = [{"id": model, "object": "model", "created": _CREATED, "owned_by": "bench"} for model in MODELS]
    return web.json_response({"object": "list", "data": data})


async def _anthropic_models(request: web.Request) -> web.Response:
    data = [
        {"type": "model", "id": model, "display_name": model, "created_at": "2025-01-01T00:00:00Z"} for model in MODELS
    ]
    return web.json_response({"data": data, "has_more": False, "first_id": MODELS[0], "last_id": MODELS[-1]})


def application() -> web.Application:
    app = web.Application()
    app.router.add_post(f"{OPENAI_PREFIX}/v1/chat/completions", _openai_chat)
    app.router.add_get(f"{OPENAI_PREFIX}/v1/models", _openai_models)
    app.router.add_post(f"{ANTHROPIC_PREFIX}/v1/messages", _anthropic_messages)
    app.router.add_get(f"{ANTHROPIC_PREFIX}/v1/models", _anthropic_models)
    return app


def raise_open_file_limit() -> None:
    """A thousand streams need a descriptor each on both ends: take the hard limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def serve() -> None:
    runner = web.AppRunner(application(), access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=_BACKLOG)
    await site.start()
    port = runner.addresses[0][1]
    print(f"listening on 127.0.0.1:{port}", flush=True)
    await until_stopped()
    await runner.cleanup()


async def until_stopped() -> None:
    """Return on SIGINT or SIGTERM."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__).parse_args()
    raise_open_file_limit()
    asyncio.run(serve())
