"""The OpenAI routes' fields that change no answer are ignored but checked as OpenAI's API checks them: a misspelt
member or a value of the wrong shape is a 400 naming it, before anything goes upstream, where it passed silently
(an outside tester's findings); well formed, none is passed on. A Responses answer repeats the request's own
identifiers and settings, and says what this server did of the rest: no service tier chosen. A thinking budget over a
max_tokens the request did not give says the server's default it was compared with."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import grpc
import openai
import pytest
from anthropic.types import ThinkingConfigEnabledParam

from tests.conftest import failed_stream, serving_doors
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI
from tests.hosted import key_of
from tests.http_door import anthropic_messages, async_anthropic_client, async_openai_client, load_hosted
from tests.http_fields_support import OPENAI_MESSAGES, both, last_body, message_of
from warpcore.server.core.bounds import DEFAULT_MAX_TOKENS
from warpcore.server.core.domain import ApiSettings, BackendKind, LoadSpec
from warpcore.server.core.limits import Limits
from warpcore.server.doors import Doors
from warpcore.server.rpc.server import ServingOptions
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc, tools_pb2

__all__ = ["both"]  # the fixture, used by name

SHARED_REFUSALS: list[tuple[dict[str, Any], str]] = [
    ({"metadata": {"a": 1}}, "metadata.a"),
    ({"metadata": "tag"}, "metadata"),
    ({"metadata": {f"k{n}": "v" for n in range(17)}}, "metadata"),
    ({"metadata": {"k" * 65: "v"}}, "metadata"),
    ({"metadata": {"k": "v" * 513}}, "metadata.k"),
    ({"service_tier": "bogus"}, "service_tier"),
    ({"store": "yes"}, "store"),
    ({"user": 5}, "user"),
    ({"safety_identifier": 5}, "safety_identifier"),
    ({"safety_identifier": "s" * 129}, "safety_identifier"),
    ({"prompt_cache_key": ["k"]}, "prompt_cache_key"),
    ({"prompt_cache_retention": "forever"}, "prompt_cache_retention"),
    ({"prompt_cache_options": {"mode": "sometimes"}}, "prompt_cache_options.mode"),
    ({"prompt_cache_options": {"ttl": "1y"}}, "prompt_cache_options.ttl"),
    ({"prompt_cache_options": {"tll": "30m"}}, "prompt_cache_options.tll"),
]
CHAT_REFUSALS: list[tuple[dict[str, Any], str]] = [
    ({"prediction": {"type": "bogus", "content": "x"}}, "prediction.type"),
    ({"prediction": {"type": "content", "contnt": "x"}}, "prediction.contnt"),
    ({"prediction": {"type": "content"}}, "prediction.content"),
    ({"prediction": {"type": "content", "content": 5}}, "prediction.content"),
    ({"prediction": {"type": "content", "content": [{"type": "image_url"}]}}, "prediction.content[0].type"),
    ({"prediction": {"type": "content", "content": [{"type": "text", "txt": "x"}]}}, "prediction.content[0].txt"),
    ({"service_tier": "ultrafast"}, "service_tier"),  # the Responses API's alone
]
RESPONSES_REFUSALS: list[tuple[dict[str, Any], str]] = [
    ({"max_tool_calls": "3"}, "max_tool_calls"),
    ({"stream_options": {"include_obfuscation": "no"}}, "stream_options.include_obfuscation"),
    ({"stream_options": {"include_usage": True}}, "stream_options.include_usage"),
]
WELL_FORMED: dict[str, Any] = {
    "metadata": {"k" * 64: "v" * 512, **{f"k{n}": "v" for n in range(15)}},
    "service_tier": "flex",
    "store": True,
    "user": "u",
    "safety_identifier": "s" * 128,
    "prompt_cache_key": "k",
    "prompt_cache_retention": "24h",
    "prompt_cache_options": {"mode": "explicit", "ttl": "30m"},
}
CHAT_WELL_FORMED = {
    **WELL_FORMED,
    "prediction": {"type": "content", "content": [{"type": "text", "text": "Hello"}]},
}
RESPONSES_WELL_FORMED = {
    **WELL_FORMED,
    "service_tier": "ultrafast",
    "max_tool_calls": 3,
    "stream_options": {"include_obfuscation": False},
}


REFUSALS = [("chat", *case) for case in SHARED_REFUSALS + CHAT_REFUSALS] + [
    ("responses", *case) for case in SHARED_REFUSALS + RESPONSES_REFUSALS
]


@pytest.mark.parametrize(("route", "fields", "param"), REFUSALS, ids=lambda value: str(value)[:40])
async def test_a_malformed_ignored_field_is_refused_naming_it(
    both: Doors, openai_upstream: FakeOpenAI, route: str, fields: dict[str, Any], param: str
) -> None:
    sent = len(openai_upstream.requests)
    async with async_openai_client(both) as client:
        create = (
            client.chat.completions.create(model="gpt", messages=OPENAI_MESSAGES, max_tokens=5, extra_body=fields)
            if route == "chat"
            else client.responses.create(model="gpt", input="Say hello", max_output_tokens=5, extra_body=fields)
        )
        with pytest.raises(openai.BadRequestError) as refused:
            await create
    assert refused.value.param == param, refused.value.message
    assert refused.value.body["message"].startswith((f"{param}: ", f"{param} is "))  # type: ignore[index]
    assert len(openai_upstream.requests) == sent


async def test_user_is_checked_on_the_completions_and_embeddings_routes_too(
    both: Doors, openai_upstream: FakeOpenAI
) -> None:
    """A sweep's finding: `user: 5` was a 400 on chat and Responses, taken on the legacy Completions and embeddings
    routes."""
    openai_upstream.models.append("text-embedding-3-small")
    settings = ApiSettings(api_key=key_of(openai_upstream), base_url=openai_upstream.base_url)
    await both.engine.load(LoadSpec("embed", BackendKind.OPENAI, "text-embedding-3-small", settings, None))
    sent = len(openai_upstream.requests)
    async with async_openai_client(both) as client:
        with pytest.raises(openai.BadRequestError) as completion:
            await client.completions.create(model="gpt", prompt="Say", max_tokens=5, extra_body={"user": 5})
        with pytest.raises(openai.BadRequestError) as embedding:
            await client.embeddings.create(model="embed", input="hello", extra_body={"user": 5})
        with pytest.raises(openai.BadRequestError) as chat:
            await client.chat.completions.create(
                model="gpt", messages=OPENAI_MESSAGES, max_tokens=5, extra_body={"user": 5}
            )
        assert len(openai_upstream.requests) == sent
        await client.completions.create(model="gpt", prompt="Say", max_tokens=5, user="u")
        await client.embeddings.create(model="embed", input="hello", user="u")
    for refused in (completion, embedding, chat):
        assert (refused.value.param, refused.value.code) == ("user", "invalid_field")
        assert refused.value.body["message"] == "user: must be a string"  # type: ignore[index]
    assert "user" not in last_body(openai_upstream)


async def test_the_testers_values_are_refused_with_what_is_expected(both: Doors) -> None:
    async with async_openai_client(both) as client:
        with pytest.raises(openai.BadRequestError) as tier:
            await client.chat.completions.create(
                model="gpt", messages=OPENAI_MESSAGES, max_tokens=5, extra_body={"service_tier": "bogus"}
            )
        with pytest.raises(openai.BadRequestError) as store:
            await client.responses.create(model="gpt", input="Say hello", extra_body={"store": "yes"})
    assert tier.value.body["message"] == (  # type: ignore[index]
        "service_tier: unknown value 'bogus'; expected one of auto, default, flex, scale, priority, fast"
    )
    assert store.value.body["message"] == "store: must be true or false"  # type: ignore[index]


async def test_well_formed_ignored_fields_are_taken_and_not_passed_on(
    both: Doors, openai_upstream: FakeOpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    async with async_openai_client(both) as client:
        for model, upstream in (("gpt", openai_upstream), ("claude", anthropic_upstream)):
            await client.chat.completions.create(
                model=model, messages=OPENAI_MESSAGES, max_tokens=5, extra_body=CHAT_WELL_FORMED
            )
            assert not set(CHAT_WELL_FORMED) & set(last_body(upstream))
            await client.responses.create(
                model=model, input="Say hello", max_output_tokens=5, extra_body=RESPONSES_WELL_FORMED
            )
            body = last_body(upstream)
            # The OpenAI adapter asks its upstream for a stream's usage with its own stream_options.
            assert not (set(RESPONSES_WELL_FORMED) - {"stream_options"}) & set(body)
            assert body.get("stream_options") != RESPONSES_WELL_FORMED["stream_options"]


async def test_a_response_repeats_the_requests_own_values_and_no_service_tier(both: Doors) -> None:
    async with async_openai_client(both) as client:
        chat = await client.chat.completions.create(
            model="gpt", messages=OPENAI_MESSAGES, max_tokens=5, service_tier="flex"
        )
        asked: dict[str, Any] = {
            "service_tier": "flex",
            "store": True,
            "user": "u",
            "safety_identifier": "s",
            "prompt_cache_key": "k",
            "prompt_cache_retention": "24h",
            "metadata": {"a": "b"},
            "max_tool_calls": 3,
        }
        whole = await client.responses.create(model="gpt", input="Say hello", max_output_tokens=5, **asked)
        events = [event async for event in await client.responses.create(stream=True, model="gpt", input="hi", **asked)]
    assert events[-1].type == "response.completed"
    done = events[-1].response
    for response in (whole, done):
        # The tier, the storage and the cache retention are what the server did: it chose no tier, stored nothing
        # and kept no cache as OpenAI's retention means it, as the chat route's service_tier says.
        assert (response.service_tier, response.store, response.prompt_cache_retention) == (None, False, None)
        assert (response.user, response.safety_identifier, response.prompt_cache_key) == ("u", "s", "k")
        assert (response.metadata, response.max_tool_calls) == ({"a": "b"}, 3)
    assert chat.service_tier is None


async def test_a_budget_over_the_default_max_tokens_says_the_default(
    both: Doors, anthropic_upstream: FakeAnthropic
) -> None:
    sent = len(anthropic_upstream.requests)
    thinking = {"type": "enabled", "budget_tokens": 1024}
    async with async_openai_client(both) as client:
        with pytest.raises(openai.BadRequestError) as defaulted:
            await client.chat.completions.create(
                model="claude", messages=OPENAI_MESSAGES, extra_body={"thinking": thinking}
            )
        with pytest.raises(openai.BadRequestError) as given:
            await client.chat.completions.create(
                model="claude", messages=OPENAI_MESSAGES, max_completion_tokens=1000, extra_body={"thinking": thinking}
            )
    assert defaulted.value.param == given.value.param == "thinking.budget_tokens"
    assert defaulted.value.body["message"] == (  # type: ignore[index]
        "budget_tokens must be at least 1 and less than max_tokens: the request gives none, so the server's default"
        f" of {DEFAULT_MAX_TOKENS} applies (give a max_tokens greater than budget_tokens)"
    )
    assert given.value.body["message"] == "budget_tokens must be at least 1 and less than max_tokens (1000)"  # type: ignore[index]
    error = await refused_generate(both, 1024)
    assert f"the server's default of {DEFAULT_MAX_TOKENS}" in (error.details() or "")
    assert len(anthropic_upstream.requests) == sent


async def refused_generate(doors: Doors, budget: int) -> grpc.aio.AioRpcError:
    """A gRPC Generate of this thinking budget and no max_tokens on `claude`, refused as INVALID_ARGUMENT."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{doors.grpc.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        request = pb.GenerateRequest(
            model_id="claude",
            messages=[pb.ChatMessage(role=pb.ROLE_USER, content="hi")],
            options=pb.GenerationOptions(reasoning=tools_pb2.ReasoningOptions(budget_tokens=budget)),
        )
        _, error = await failed_stream(stub.Generate(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    return error


LIMIT = 100
"""A --max-tokens-limit under the Anthropic API's smallest thinking budget, 1024."""


@pytest.fixture
async def limited(server_env: dict[str, str], anthropic_upstream: FakeAnthropic) -> AsyncIterator[Doors]:
    async with serving_doors(server_env, ServingOptions(limits=Limits(max_tokens=LIMIT))) as doors:
        await load_hosted(doors, anthropic_upstream, "claude")
        yield doors


async def test_a_budget_the_servers_limit_leaves_no_room_for_says_so(
    limited: Doors, anthropic_upstream: FakeAnthropic
) -> None:
    """A sweep's finding: under a --max-tokens-limit of 1024 or less, the refusal said to give a max_tokens above the
    budget, which the limit refuses, and a smaller budget is one the Anthropic API refuses."""
    sent = len(anthropic_upstream.requests)
    thinking: ThinkingConfigEnabledParam = {"type": "enabled", "budget_tokens": 2000}
    expected = (
        f"budget_tokens must be at least 1 and less than max_tokens, which this server's --max-tokens-limit of {LIMIT}"
        f" caps: give a budget_tokens below {LIMIT} (an Anthropic model's thinking needs a budget of 1024 or more, so"
        f" a max_tokens above 1024, which this server's --max-tokens-limit of {LIMIT} forbids)"
    )
    async with async_openai_client(limited) as client:
        with pytest.raises(openai.BadRequestError) as chat:
            await client.chat.completions.create(
                model="claude", messages=OPENAI_MESSAGES, extra_body={"thinking": thinking}
            )
    assert (chat.value.param, chat.value.body["message"]) == ("thinking.budget_tokens", expected)  # type: ignore[index]
    async with async_anthropic_client(limited) as anthropic_client:
        with pytest.raises(anthropic.BadRequestError) as messages:
            await anthropic_client.messages.create(
                model="claude",
                max_tokens=LIMIT,
                messages=anthropic_messages(),
                thinking=thinking,
            )
    # Said once (a sweep's finding: "thinking.budget_tokens: budget_tokens must be ...")
    assert message_of(messages.value) == f"thinking.budget_tokens: {expected.removeprefix('budget_tokens ')}"
    error = await refused_generate(limited, 2000)
    assert expected in (error.details() or "")
    assert len(anthropic_upstream.requests) == sent
