"""The OpenAI routes' fields that change no answer are ignored but checked as OpenAI's API checks them: a misspelt
member or a value of the wrong shape is a 400 naming it, before anything goes upstream, where it passed silently
(an outside tester's findings); well formed, none is passed on. A Responses answer repeats the request's own
identifiers and settings, and says what this server did of the rest: no service tier chosen. A thinking budget over a
max_tokens the request did not give says the server's default it was compared with."""

from __future__ import annotations

from typing import Any

import grpc
import openai
import pytest

from tests.conftest import failed_stream
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI
from tests.http_door import async_openai_client
from tests.http_fields_support import OPENAI_MESSAGES, both, last_body
from warpcore.server.core.bounds import DEFAULT_MAX_TOKENS
from warpcore.server.doors import Doors
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
    assert refused.value.body["message"].startswith(f"{param}: ")  # type: ignore[index]
    assert len(openai_upstream.requests) == sent


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
    async with grpc.aio.insecure_channel(f"127.0.0.1:{both.grpc.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        request = pb.GenerateRequest(
            model_id="claude",
            messages=[pb.ChatMessage(role=pb.ROLE_USER, content="hi")],
            options=pb.GenerationOptions(reasoning=tools_pb2.ReasoningOptions(budget_tokens=1024)),
        )
        _, error = await failed_stream(stub.Generate(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"the server's default of {DEFAULT_MAX_TOKENS}" in (error.details() or "")
    assert len(anthropic_upstream.requests) == sent
