"""A request of many messages, under the size limit, holds neither door's event loop, which the HTTP door shares with
the gRPC one: `GET /health` answers while it is read."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import grpc
import pytest

from tests.http_door import base_url
from tests.http_embeddings_support import door_stub
from tests.test_http_door_sdks import tiny_door  # noqa: F401 - the fixture
from warpcore.server.doors import Doors
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

__all__ = ["door_stub"]  # the fixture, used by name

MANY = 120_000
"""Messages of one letter: about 4 MB of JSON, under the door's 4 MiB limit, which took the door seconds to read."""
HEALTH_SECONDS = 1.0
"""Longest a `GET /health` may take meanwhile: far above its own time, even on a busy machine, and far below the
seconds the event loop was held."""
MESSAGE = {"role": "user", "content": "a"}
T = TypeVar("T")


async def health_while(session: aiohttp.ClientSession, doors: Doors, call: Awaitable[T]) -> T:
    """What `call` returns, once done, after `GET /health` on a connection of its own answered within HEALTH_SECONDS
    every time it was asked meanwhile, back to back."""
    task = asyncio.ensure_future(call)
    asked = 0
    while not task.done() or not asked:
        started = time.monotonic()
        async with asyncio.timeout(HEALTH_SECONDS), session.get(f"{base_url(doors)}/health") as response:
            assert response.status == 200
        # The same loop runs this test: a held loop delays the timeout too, which the time taken still shows.
        assert time.monotonic() - started < HEALTH_SECONDS
        asked += 1
    return await task


async def post(doors: Doors, path: str, body: bytes) -> tuple[int, Any]:
    """The status and body of a POST of JSON `body`, encoded before: its encoding, on this test's loop, would hold
    the loop the door shares with it. On a connection of its own: /health's must not wait behind it."""
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession() as own, own.post(f"{base_url(doors)}{path}", data=body, headers=headers) as sent:
        return sent.status, await sent.json()


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/v1/messages/count_tokens", {"model": "tiny", "messages": [MESSAGE] * MANY}, 400),
        ("/v1/chat/completions", {"model": "tiny", "messages": [MESSAGE] * MANY, "max_tokens": 1}, 400),
        ("/v1/responses", {"model": "tiny", "input": [MESSAGE] * MANY, "max_output_tokens": 16}, 400),
    ],
    ids=["count_tokens", "chat", "responses"],
)
async def test_health_answers_while_the_http_door_reads_many_messages(
    tiny_door: Doors,  # noqa: F811 - the fixture
    path: str,
    body: dict[str, Any],
    status: int,
) -> None:
    encoded = json.dumps(body).encode()
    assert len(encoded) < 4 * 1024 * 1024
    async with aiohttp.ClientSession() as session:
        answered, answer = await health_while(session, tiny_door, post(tiny_door, path, encoded))
    assert answered == status  # the prompt is longer than the tiny model's context
    assert "too long" in json.dumps(answer)


async def test_health_answers_while_grpc_reads_many_messages(
    tiny_door: Doors,  # noqa: F811 - the fixture
    door_stub: Stub,
) -> None:
    request = pb.GenerateRequest(model_id="tiny", messages=[pb.ChatMessage(role=pb.ROLE_USER, content="a")] * MANY)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await health_while(session, tiny_door, door_stub.CountTokens(pb.CountTokensRequest(request=request)))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "too long" in (refused.value.details() or "")
