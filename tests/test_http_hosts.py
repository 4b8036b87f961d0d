"""The HTTP door on loopback takes requests for loopback names only: a web page whose own name was made to resolve to
127.0.0.1 (DNS rebinding) sends its requests as same-origin ones, free to read the answers, but with its name in the
Host header. A door on another address is reached by names the server cannot know, and checks none."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import httpx2
import pytest

from tests.conftest import serving_doors
from tests.fakes.openai_api import FakeOpenAI
from tests.http_door import base_url, load_hosted, openai_messages
from warpcore.server.doors import Doors

REBOUND = "rebound.example"
"""A page's own name, resolving to 127.0.0.1 once the page is open."""


async def requests_for(doors: Doors, host: str) -> tuple[httpx2.Response, httpx2.Response, httpx2.Response]:
    """A model listing, a chat completion and a health check, sent to the door with `host` as their Host header."""
    port = doors.http.port if doors.http is not None else 0
    headers = {"Host": f"{host}:{port}"}
    body = {"model": "m", "max_tokens": 4, "messages": openai_messages()}
    async with httpx2.AsyncClient(base_url=base_url(doors), headers=headers) as client:
        listing = await client.get("/v1/models")
        chat = await client.post("/v1/chat/completions", json=body)
        health = await client.get("/health")
    return listing, chat, health


# "localhost:80" becomes "localhost:80:<port>": a loopback name, but no Host header (its port is no number).
@pytest.mark.parametrize("host", [REBOUND, f"{REBOUND}@localhost", "localhost:80"])
async def test_a_request_for_another_name_is_refused_before_it_goes_anywhere(
    doors: Doors, openai_upstream: FakeOpenAI, host: str
) -> None:
    await load_hosted(doors, openai_upstream)
    sent = len(openai_upstream.requests)
    listing, chat, health = await requests_for(doors, host)
    assert (listing.status_code, chat.status_code) == (403, 403)
    assert "a door listening on loopback only takes requests for localhost" in chat.json()["error"]["message"]
    assert len(openai_upstream.requests) == sent
    assert health.status_code == 200  # probes stay open, as without a token


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.1.2.3", "[::1]", "LocalHost."])
async def test_a_request_for_a_loopback_name_is_served(doors: Doors, openai_upstream: FakeOpenAI, host: str) -> None:
    await load_hosted(doors, openai_upstream)
    listing, chat, _ = await requests_for(doors, host)
    assert (listing.status_code, chat.status_code) == (200, 200)


@pytest.fixture
async def door_on_every_address(server_env: Mapping[str, str]) -> AsyncIterator[Doors]:
    async with serving_doors(server_env, http_host="0.0.0.0") as doors:
        yield doors


async def test_a_door_on_every_address_takes_any_name(
    door_on_every_address: Doors, openai_upstream: FakeOpenAI
) -> None:
    await load_hosted(door_on_every_address, openai_upstream)
    listing, chat, _ = await requests_for(door_on_every_address, "warpcore.default.svc.cluster.local")
    assert (listing.status_code, chat.status_code) == (200, 200)
