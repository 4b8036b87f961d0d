"""Calls waiting for a model's load are admitted in the order they came once it ends, the call that started the load
first; and a load that fails is the failure of every call waiting for it, not one load per call.

An outside tester's findings: at a lazy model of max_streams 1, the call that started the load reached the upstream
after the calls that came during it (1, 2, 0); and when a lazy model's load timed out, each waiting call started a
load of its own (a 504 at 1.2 s, another at 2.2 s, then a 429)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import grpc
import openai
import pytest

from tests.conftest import collect
from tests.fakes.openai_api import FakeOpenAI
from tests.hosted import OPENAI_KEY, posts
from tests.http_door import async_openai_client, openai_messages
from tests.test_load_waiting_signals import gauges_until
from warpcore.server.core.domain import Admission, ApiSettings, BackendKind, LoadSpec
from warpcore.server.doors import Doors
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

CALLS = 3  # max_streams 1, max_queue 2: all of them wait for the load
Send = Callable[[Doors, str], Awaitable[str]]
"""A call naming the lazy model with `text` as its one user message, through one door: its answer."""


def declare(doors: Doors, upstream: FakeOpenAI) -> None:
    """The operator's lazy hosted model of one stream and two queue places, as a --config table declares it."""
    settings = ApiSettings(api_key=OPENAI_KEY, base_url=upstream.base_url)
    admission = Admission(max_streams=1, max_queue=2)
    spec = LoadSpec("lazy", BackendKind.OPENAI, "gpt-4o-mini", settings, None, admission=admission, lazy=True)
    doors.engine.declare(spec)


async def over_grpc(doors: Doors, text: str) -> str:
    request = pb.GenerateRequest(model_id="lazy", messages=[pb.ChatMessage(role=pb.ROLE_USER, content=text)])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{doors.grpc.port}") as channel:
        answer, _ = await collect(inference_pb2_grpc.InferenceServiceStub(channel).Generate(request))
    return answer


async def over_http(doors: Doors, text: str) -> str:
    async with async_openai_client(doors) as client:
        answer = await client.chat.completions.create(model="lazy", messages=openai_messages(text), max_tokens=4)
    return answer.choices[0].message.content or ""


async def waiting_in_turn(doors: Doors, send: Send) -> list[asyncio.Task[str]]:
    """CALLS calls, each sent once the one before is waiting for the load: their order of arrival is known."""
    calls = []
    for number in range(CALLS):
        calls.append(asyncio.ensure_future(send(doors, f"call {number}")))
        waiting = await gauges_until(doors.grpc, "lazy", (number + 1, number + 1, 0))
        assert waiting == (number + 1, number + 1, 0)
    return calls


@pytest.mark.parametrize("send", [over_grpc, over_http], ids=["grpc", "http"])
async def test_calls_waiting_for_a_load_are_admitted_in_their_order(
    doors: Doors, openai_upstream: FakeOpenAI, send: Send
) -> None:
    openai_upstream.listing_held = asyncio.Event()  # the load asks for the provider's list: held until set
    declare(doors, openai_upstream)
    calls = await waiting_in_turn(doors, send)
    assert posts(openai_upstream) == []
    openai_upstream.listing_held.set()
    assert all(await asyncio.gather(*calls))
    # One stream at a time: the upstream receives them in the order they were admitted.
    asked = [body["messages"][-1]["content"] for body in posts(openai_upstream)]
    assert asked == [f"call {number}" for number in range(CALLS)]


async def test_a_failed_load_is_the_failure_of_every_call_waiting_for_it(
    doors: Doors, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.listing_held = asyncio.Event()
    declare(doors, openai_upstream)
    calls = await waiting_in_turn(doors, over_http)
    openai_upstream.models = []  # the provider no longer offers the model: the load fails
    openai_upstream.listing_held.set()
    for failed in await asyncio.gather(*calls, return_exceptions=True):
        assert isinstance(failed, openai.NotFoundError), failed
        assert "model 'lazy' could not be loaded for this call: the OpenAI API does not offer" in failed.message
    listings = [request for request in openai_upstream.requests if request.method == "GET"]
    assert len(listings) == 1  # one load, shared
    assert posts(openai_upstream) == []
    assert await gauges_until(doors.grpc, "lazy", (0, None, None)) == (0, None, None)
    # The model stays as declared: a later call loads it again.
    openai_upstream.models = ["gpt-4o-mini"]
    assert await over_grpc(doors, "again")
    assert len([request for request in openai_upstream.requests if request.method == "GET"]) == 2
