"""Refusals and failures of the HTTP door as each official SDK parses it: the token by bearer or x-api-key, and no
provider key in any answer."""

from __future__ import annotations

import anthropic
import httpx2
import openai
import pytest

from tests.conftest import serving_doors
from tests.fakes.base import FakeUpstream
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import key_of
from tests.http_door import (
    async_anthropic_client,
    async_openai_client,
    base_url,
    load_hosted,
)
from tests.http_errors_support import ANTHROPIC_MESSAGES, OPENAI_MESSAGES, anthropic_failure, openai_failure
from warpcore.server.doors import Doors
from warpcore.server.rpc.server import ServingOptions


async def test_the_token_is_required_by_bearer_or_x_api_key(
    server_env: dict[str, str], openai_upstream: FakeOpenAI
) -> None:
    token = "door-token-0123456789"
    async with serving_doors(server_env, ServingOptions(token=token)) as doors:
        await load_hosted(doors, openai_upstream)
        for key in ("", "wrong"):
            async with async_openai_client(doors, key or "x") as client:
                with pytest.raises(openai.AuthenticationError) as refused:
                    await client.models.list()
            async with async_anthropic_client(doors, key or "x") as anthropic_sdk:
                with pytest.raises(anthropic.AuthenticationError) as refused_anthropic:
                    await anthropic_sdk.messages.create(model="m", messages=ANTHROPIC_MESSAGES, max_tokens=5)
            assert token not in refused.value.response.text + refused_anthropic.value.response.text
        assert refused_anthropic.value.type == "authentication_error"
        assert refused.value.code == "invalid_api_key"
        async with async_openai_client(doors, token) as client, async_anthropic_client(doors, token) as anthropic_sdk:
            answer = await client.chat.completions.create(model="m", messages=OPENAI_MESSAGES)
            message = await anthropic_sdk.messages.create(model="m", messages=ANTHROPIC_MESSAGES, max_tokens=5)
        assert answer.choices[0].message.content == message.content[0].text == "Hello, world"  # type: ignore[union-attr]
        async with httpx2.AsyncClient() as raw:
            unauthenticated = await raw.post(f"{base_url(doors)}/v1/chat/completions", json={})
            # The scheme's name is case-insensitive (RFC 9110).
            body = {"model": "m", "messages": OPENAI_MESSAGES, "max_tokens": 5}
            answers = [
                await raw.post(f"{base_url(doors)}/v1/chat/completions", json=body, headers={"Authorization": value})
                for value in (f"bearer {token}", f"BEARER  {token}", f"Basic {token}", token)
            ]
            # Twice, a wrong value and the token: refused whichever order, rather than the first or last counting.
            twice = [
                await raw.post(f"{base_url(doors)}/v1/chat/completions", json=body, headers=headers)
                for headers in (
                    [("Authorization", "Bearer wrong"), ("Authorization", f"Bearer {token}")],
                    [("x-api-key", token), ("x-api-key", "wrong")],
                )
            ]
            # Both headers, one holding the token (an SDK's stale default key beside it): let in, either way round.
            both = [
                await raw.post(f"{base_url(doors)}/v1/chat/completions", json=body, headers=headers)
                for headers in (
                    {"Authorization": f"Bearer {token}", "x-api-key": "stale"},
                    {"Authorization": "Bearer stale", "x-api-key": token},
                    {"Authorization": "Bearer stale", "x-api-key": "stale"},
                )
            ]
        assert unauthenticated.status_code == 401
        assert unauthenticated.headers["WWW-Authenticate"] == "Bearer"  # the scheme it takes (RFC 9110, 11.6.1)
        assert [answer.status_code for answer in answers] == [200, 200, 401, 401]
        assert [answer.status_code for answer in twice] == [401, 401]
        assert [answer.status_code for answer in both] == [200, 200, 401]


async def test_no_provider_key_in_any_answer(hosted: Doors, upstream: FakeUpstream) -> None:
    key = key_of(upstream)
    upstream.script = Script(status=401, error_message=f"Incorrect API key provided: {key}")
    failures: list[openai.APIStatusError | anthropic.APIStatusError] = [
        await openai_failure(hosted),
        await anthropic_failure(hosted),
        await openai_failure(hosted, stream=True),
    ]
    for failure in failures:
        assert key not in failure.response.text
        assert key[-12:] not in str(failure.body)
