"""A model whose base URL leads back to a server the request came through is refused as a loop, at its load (the
model list it asks for comes back to the server) and at each request, instead of calling itself until its deadline;
the servers a request came through go on upstream in its Via header, so that a loop through other gateways is met."""

from __future__ import annotations

import anthropic
import openai
import pytest

from tests.fakes.base import FakeUpstream
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import key_of
from tests.http_door import async_anthropic_client, async_openai_client, base_url, load_hosted, openai_messages
from warpcore.server.core.domain import ApiSettings, BackendKind, LoadSpec
from warpcore.server.core.errors import WarpcoreError
from warpcore.server.core.hops import MAX_HOPS, THIS_SERVER
from warpcore.server.doors import Doors

LOOP = "already passed through this server"
OTHER_SERVERS = ("warpcore-0123456789ab", "warpcore-ba9876543210")


@pytest.mark.parametrize("backend", [BackendKind.OPENAI, BackendKind.ANTHROPIC])
async def test_a_model_whose_base_url_is_this_servers_own_door_is_refused_at_its_load(
    doors: Doors, backend: BackendKind
) -> None:
    path = "/v1" if backend is BackendKind.OPENAI else ""
    settings = ApiSettings(api_key="-", base_url=f"{base_url(doors)}{path}")
    with pytest.raises(WarpcoreError, match=LOOP) as refusal:
        await doors.engine.load(LoadSpec("self", backend, "any", settings, None))
    assert "point it at the API that answers the model" in refusal.value.message
    assert "self" not in doors.engine.servable()


async def test_a_request_that_names_this_server_among_its_hops_is_refused_in_each_dialect(doors: Doors) -> None:
    via = {"Via": f"1.1 proxy.example, 1.0 {THIS_SERVER} (warpcore)"}
    async with async_openai_client(doors) as openai_sdk:
        with pytest.raises(openai.BadRequestError, match=LOOP) as openai_refusal:
            await openai_sdk.chat.completions.create(
                model="m", messages=openai_messages(), max_tokens=4, extra_headers=via
            )
    assert openai_refusal.value.code == "request_loop"
    async with async_anthropic_client(doors) as anthropic_sdk:
        with pytest.raises(anthropic.BadRequestError, match=LOOP):
            await anthropic_sdk.models.list(extra_headers=via)


async def test_a_request_past_the_most_servers_a_chain_has_is_refused(doors: Doors) -> None:
    hops = ", ".join(f"1.1 warpcore-{index:012x}" for index in range(MAX_HOPS))
    async with async_openai_client(doors) as client:
        with pytest.raises(openai.BadRequestError, match=f"already passed through {MAX_HOPS} warpcore servers"):
            await client.models.list(extra_headers={"Via": hops})


async def test_the_servers_a_request_came_through_go_upstream_before_this_one(
    doors: Doors, upstream: FakeUpstream
) -> None:
    """Only entries naming warpcore servers go on: another proxy's name is nothing the upstream needs to learn."""
    await load_hosted(doors, upstream)
    listing = upstream.requests[-1]
    assert listing.headers["via"] == f"1.1 {THIS_SERVER}"
    upstream.script = Script(chunks=["Hi"])
    incoming = f"1.1 {OTHER_SERVERS[0]}, 1.1 proxy.example, 1.1 {OTHER_SERVERS[1]}"
    async with async_openai_client(doors) as client:
        answer = await client.chat.completions.create(
            model="m", messages=openai_messages(), max_tokens=4, extra_headers={"Via": incoming}
        )
    assert answer.choices[0].message.content == "Hi"
    expected = ", ".join(f"1.1 {hop}" for hop in (*OTHER_SERVERS, THIS_SERVER))
    assert upstream.requests[-1].headers["via"] == expected


async def test_an_embedding_request_carries_its_hops_upstream(doors: Doors, openai_upstream: FakeOpenAI) -> None:
    settings = ApiSettings(api_key=key_of(openai_upstream), base_url=openai_upstream.base_url, embedding=True)
    await doors.engine.load(LoadSpec("e", BackendKind.OPENAI, openai_upstream.models[0], settings, None))
    async with async_openai_client(doors) as client:
        await client.embeddings.create(model="e", input="hello", extra_headers={"Via": f"1.1 {OTHER_SERVERS[0]}"})
    assert openai_upstream.requests[-1].headers["via"] == f"1.1 {OTHER_SERVERS[0]}, 1.1 {THIS_SERVER}"
