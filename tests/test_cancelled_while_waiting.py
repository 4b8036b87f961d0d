"""A generation its client or deadline ended before it ran, queued behind its model's stream limit or waiting for a
lazy model's load, is logged `cancelled` as one ended while running is, through either door (an outside tester's
finding: its line had no `finish_reason` at all)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import AccessLines, failed_stream, serving_doors
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import OPENAI_KEY, prompt
from warpcore.server.core.domain import ApiSettings, BackendKind, LoadSpec
from warpcore.server.core.limits import Limits
from warpcore.server.rpc.server import ServingOptions
from warpcore.v1 import inference_pb2_grpc

if TYPE_CHECKING:
    from warpcore.server.doors import Doors

WHERE = ["queued", "loading"]
"""Where the generation waits: at its model's gate, behind a running one; for its lazy model's load."""


@contextlib.asynccontextmanager
async def waiting_place(
    where: str, env: Mapping[str, str], upstream: FakeOpenAI
) -> AsyncIterator[tuple[Doors, Callable[[], bool]]]:
    """Doors on which a generation naming "m" waits where `where` says, and whether one waits there now."""
    limits = Limits(max_streams_per_api_model=1)
    settings = ApiSettings(api_key=OPENAI_KEY, base_url=upstream.base_url)
    spec = LoadSpec("m", BackendKind.OPENAI, upstream.models[0], settings, None)
    async with (
        serving_doors(env, ServingOptions(limits=limits)) as doors,
        grpc.aio.insecure_channel(f"127.0.0.1:{doors.grpc.port}") as channel,
    ):
        if where == "loading":
            upstream.listing_held = asyncio.Event()  # the load waits for the provider's model list
            doors.engine.declare(dataclasses.replace(spec, lazy=True))
            try:
                yield doors, lambda: limits.awaiting_load.get("m") == 1
            finally:
                upstream.listing_held.set()
            return
        upstream.script = Script(chunks=["a", "b"], stall_after=1)  # the running call holds the one slot
        await doors.engine.load(spec)
        running = inference_pb2_grpc.InferenceServiceStub(channel).Generate(prompt())
        await anext(aiter(running))
        try:
            yield doors, lambda: limits.gates["m"].waiting == 1
        finally:
            running.cancel()


async def until(condition: Callable[[], bool]) -> None:
    while not condition():  # noqa: ASYNC110 - no event tells that a call waits
        await asyncio.sleep(0)


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("code", [grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED])
async def test_a_grpc_generation_its_deadline_or_client_ends_while_it_waits_is_logged_cancelled(
    where: str,
    code: grpc.StatusCode,
    server_env: dict[str, str],
    openai_upstream: FakeOpenAI,
    access_lines: AccessLines,
) -> None:
    async with (
        waiting_place(where, server_env, openai_upstream) as (doors, waiting),
        grpc.aio.insecure_channel(f"127.0.0.1:{doors.grpc.port}") as channel,
    ):
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        if code is grpc.StatusCode.DEADLINE_EXCEEDED:
            frames, error = await failed_stream(stub.Generate(prompt(), timeout=0.5))
            assert (frames, error.code()) == ([], code)
        else:
            call = stub.Generate(prompt())
            await until(waiting)
            call.cancel()
        assert await access_lines.next() == ("Generate", "m", code.name)
        line = access_lines.records[-1].__dict__
    assert line.get("finish_reason") == "cancelled"
    assert "prompt_tokens" not in line  # no backend counted any


@pytest.mark.parametrize("where", WHERE)
async def test_an_http_generation_whose_client_hangs_up_while_it_waits_is_logged_cancelled(
    where: str, server_env: dict[str, str], openai_upstream: FakeOpenAI, access_lines: AccessLines
) -> None:
    async with waiting_place(where, server_env, openai_upstream) as (doors, waiting):
        assert doors.http is not None
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}).encode()
        reader, writer = await asyncio.open_connection("127.0.0.1", doors.http.port)
        head = (
            "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await until(waiting)
        writer.close()
        assert await access_lines.next() == ("/v1/chat/completions", "m", "CANCELLED")
        assert access_lines.records[-1].__dict__.get("finish_reason") == "cancelled"
        assert not await reader.read()  # nothing was answered
