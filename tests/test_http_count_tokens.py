"""The door's POST /v1/messages/count_tokens (Anthropic) and POST /v1/responses/input_tokens (OpenAI) with the official
SDKs: the counts of the gRPC CountTokens and the prompt usage of the generations they count, what goes upstream,
refusals in each dialect's shape, and the token, access log and metrics of count_tokens and /v1/embeddings."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anthropic
import openai
import pytest
from anthropic.types import MessageParam

from tests.conftest import serving_doors
from tests.embeddings import load_tiny_embedder
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI
from tests.http_door import (
    anthropic_client,
    anthropic_messages,
    async_anthropic_client,
    async_openai_client,
    load_hosted,
    openai_client,
)
from tests.http_embeddings_support import door_stub
from tests.http_responses_support import FUNCTION
from tests.test_http_door_sdks import tiny_door  # noqa: F401 - the fixture
from tests.tool_wire import WEATHER, WEATHER_SCHEMA
from warpcore.server.doors import Doors
from warpcore.server.rpc.server import ServingOptions
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import tools_pb2

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

__all__ = ["door_stub"]  # the fixture, used by name


TOOL: dict[str, Any] = {"name": "get_weather", "description": "The weather in a city", "input_schema": WEATHER_SCHEMA}
TURNS: list[MessageParam] = [
    *anthropic_messages("the world says hello"),
    {"role": "assistant", "content": "hello people"},
    *anthropic_messages("and again"),
]

NONSENSE: Any = {"role": "user", "content": [{"type": "nonsense"}]}
"""A turn with a block of no known type."""


async def grpc_count(stub: Stub, tools: bool) -> int:
    request = pb.GenerateRequest(
        model_id="tiny",
        messages=[
            pb.ChatMessage(role=pb.ROLE_USER, content="the world says hello"),
            pb.ChatMessage(role=pb.ROLE_ASSISTANT, content="hello people"),
            pb.ChatMessage(role=pb.ROLE_USER, content="and again"),
        ],
        options=pb.GenerationOptions(max_tokens=3, system="Be brief."),
        tools=[WEATHER] if tools else [],
        tool_choice=tools_pb2.ToolChoice(mode=tools_pb2.TOOL_CHOICE_MODE_REQUIRED) if tools else None,
    )
    response = await stub.CountTokens(pb.CountTokensRequest(request=request))
    return response.count.prompt_tokens


async def test_anthropic_count_tokens_equals_grpc_and_the_prompt_usage_of_messages(
    tiny_door: Doors,  # noqa: F811 - the fixture
    door_stub: Stub,
) -> None:
    counts: dict[bool, int] = {}
    for tools in (False, True):
        # A call required, and enforced by grammar: the tools' words in the prompt count as the generation's do.
        options: Mapping[str, Any] = {"tools": [TOOL], "tool_choice": {"type": "any"}} if tools else {}
        with anthropic_client(tiny_door) as client:
            counted = await asyncio.to_thread(
                client.messages.count_tokens, model="tiny", messages=TURNS, system="Be brief.", **options
            )
        async with async_anthropic_client(tiny_door) as async_client:
            counted_async = await async_client.messages.count_tokens(
                model="tiny", messages=TURNS, system="Be brief.", **options
            )
            message = await async_client.messages.create(
                model="tiny", messages=TURNS, system="Be brief.", max_tokens=3, **options
            )
            # Anthropic's API refuses max_tokens here; the door ignores it, as clients send what they send create.
            counted_with_max_tokens = await async_client.messages.count_tokens(
                model="tiny", messages=TURNS, system="Be brief.", extra_body={"max_tokens": 3}, **options
            )
        counts[tools] = counted.input_tokens
        assert counted.input_tokens == counted_async.input_tokens == message.usage.input_tokens
        assert counted_with_max_tokens.input_tokens == counted.input_tokens
        assert counted.input_tokens == await grpc_count(door_stub, tools)
    assert counts[True] > counts[False] > 1  # the tools are part of the prompt


async def test_anthropic_count_tokens_sends_upstream_what_messages_sends(
    doors: Doors, anthropic_upstream: FakeAnthropic
) -> None:
    await load_hosted(doors, anthropic_upstream)
    anthropic_upstream.script.prompt_tokens = 23
    options: dict[str, Any] = {
        "model": "m",
        "messages": TURNS,
        "system": "Be brief.",
        "tools": [TOOL],
        "thinking": {"type": "enabled", "budget_tokens": 2048},
    }
    async with async_anthropic_client(doors) as client:
        # max_tokens, which the door ignores there, is not passed on: Anthropic's API refuses it.
        counted = await client.messages.count_tokens(**options, extra_body={"max_tokens": 4096})
        await client.messages.create(max_tokens=4096, **options)
    assert counted.input_tokens == 23
    count_body = counted_as_generated(anthropic_upstream, ("model", "messages", "system", "tools", "thinking"))
    assert "max_tokens" not in count_body


def counted_as_generated(upstream: FakeAnthropic, fields: tuple[str, ...]) -> dict[str, Any]:
    """The body of the upstream's count, whose `fields` are those of the generation it got."""
    count_body, messages_body = (
        next(request.body for request in upstream.requests if request.path == path)
        for path in ("/v1/messages/count_tokens", "/v1/messages")
    )
    assert count_body is not None
    assert messages_body is not None
    assert {field: count_body[field] for field in fields} == {field: messages_body[field] for field in fields}
    return count_body


async def test_count_tokens_refusals_in_anthropic_shape(
    tiny_door: Doors,  # noqa: F811 - the fixture
    door_stub: Stub,
    openai_upstream: FakeOpenAI,
) -> None:
    await load_hosted(tiny_door, openai_upstream, "gpt")
    await load_tiny_embedder(door_stub)
    async with async_anthropic_client(tiny_door) as client:
        with pytest.raises(anthropic.BadRequestError) as openai_model:
            await client.messages.count_tokens(model="gpt", messages=TURNS)
        with pytest.raises(anthropic.BadRequestError) as embedding_model:
            await client.messages.count_tokens(model="tiny-embed", messages=TURNS)
        with pytest.raises(anthropic.BadRequestError) as no_messages:
            await client.messages.count_tokens(model="tiny", messages=[])
        with pytest.raises(anthropic.BadRequestError) as bad_block:
            await client.messages.count_tokens(model="tiny", messages=[NONSENSE])
        with pytest.raises(anthropic.NotFoundError):
            await client.messages.count_tokens(model="nobody", messages=TURNS)
    for raised in (openai_model, embedding_model, no_messages, bad_block):
        body = raised.value.body
        assert isinstance(body, dict)
        assert body["type"] == "error"
        assert body["error"]["type"] == "invalid_request_error"
    assert "count" in openai_model.value.message.lower()
    for wrong_model in (openai_model, embedding_model):  # the message begins with the field at fault, as the API's do
        assert isinstance(wrong_model.value.body, dict)
        assert wrong_model.value.body["error"]["message"].startswith("model: ")
    assert "messages[0].content[0].type" in bad_block.value.message
    assert not [request for request in openai_upstream.requests if request.method == "POST"]


INPUT: Any = [
    {"role": "user", "content": "the world says hello"},
    {"role": "assistant", "content": "hello people"},
    {"role": "user", "content": "and again"},
]


async def responses_count(doors: Doors, options: Mapping[str, Any]) -> int:
    """The count of a Responses request, by the sync and the async client, checked against its generation's usage."""
    with openai_client(doors) as client:
        counted = await asyncio.to_thread(client.responses.input_tokens.count, **options)
    async with async_openai_client(doors) as async_client:
        counted_async = await async_client.responses.input_tokens.count(**options, truncation="disabled")
        response = await async_client.responses.create(**options, max_output_tokens=3)
    assert response.usage is not None
    assert counted.object == "response.input_tokens"
    assert counted.input_tokens == counted_async.input_tokens == response.usage.input_tokens
    return counted.input_tokens


async def test_openai_input_tokens_equals_the_prompt_usage_of_responses(
    tiny_door: Doors,  # noqa: F811 - the fixture
) -> None:
    """A tester's finding: the openai SDK's responses.input_tokens.count, which LiteLLM calls for its count_tokens,
    was a 404 at the door, and LiteLLM fell back to an estimate without a word."""
    options: dict[str, Any] = {"model": "tiny", "instructions": "Be brief.", "input": INPUT}
    alone = await responses_count(tiny_door, options)
    # A call required, and enforced by grammar: the tools' words in the prompt count as the generation's do.
    tooled = {"tools": [FUNCTION], "tool_choice": "required", "parallel_tool_calls": False}
    assert await responses_count(tiny_door, options | tooled) > alone > 1


async def test_openai_input_tokens_of_an_anthropic_model_is_its_apis_count(
    doors: Doors, anthropic_upstream: FakeAnthropic
) -> None:
    await load_hosted(doors, anthropic_upstream)
    anthropic_upstream.script.prompt_tokens = 23
    options: Any = {"model": "m", "instructions": "Be brief.", "input": INPUT, "tools": [FUNCTION]}
    async with async_openai_client(doors) as client:
        counted = await client.responses.input_tokens.count(**options, reasoning={"effort": "low"})
        await client.responses.create(**options, reasoning={"effort": "low"}, max_output_tokens=4096)
    assert counted.input_tokens == 23
    counted_as_generated(anthropic_upstream, ("model", "messages", "system", "tools", "tool_choice", "output_config"))


async def test_openai_input_tokens_refusals_in_openai_shape(
    tiny_door: Doors,  # noqa: F811 - the fixture
    openai_upstream: FakeOpenAI,
) -> None:
    await load_hosted(tiny_door, openai_upstream, "gpt")
    refusals: dict[str, Any] = {
        "model": {"model": "gpt"},  # no exact count: an estimate is not given as one
        "previous_response_id": {"previous_response_id": "resp_1"},  # as /v1/responses refuses them
        "conversation": {"conversation": "conv_1"},
        "personality": {"personality": "friendly"},
        "truncation": {"truncation": "auto"},
        "max_output_tokens": {"extra_body": {"max_output_tokens": 3}},  # no member of this request
        "input[0].content[0].type": {"input": [{"role": "user", "content": [{"type": "nonsense"}]}]},
    }
    async with async_openai_client(tiny_door) as client:
        for param, options in refusals.items():
            with pytest.raises(openai.BadRequestError) as refused:
                await client.responses.input_tokens.count(**{"model": "tiny", "input": "hello", **options})
            assert refused.value.param == param
            assert refused.value.code != "unknown_field" or param == "max_output_tokens"
        with pytest.raises(openai.NotFoundError):
            await client.responses.input_tokens.count(model="nobody", input="hello")
    assert not [request for request in openai_upstream.requests if request.method == "POST"]


async def test_both_routes_ask_for_the_token(server_env: Mapping[str, str]) -> None:
    token = "door-token-0123456789"
    async with serving_doors(server_env, ServingOptions(token=token)) as doors:
        async with async_openai_client(doors) as client, async_anthropic_client(doors) as anthropic_sdk:
            with pytest.raises(openai.AuthenticationError):
                await client.embeddings.create(model="tiny-embed", input="hello")
            with pytest.raises(anthropic.AuthenticationError):
                await anthropic_sdk.messages.count_tokens(model="tiny", messages=TURNS)
        async with async_anthropic_client(doors, token) as anthropic_sdk:
            with pytest.raises(anthropic.NotFoundError):  # past the token: no such model
                await anthropic_sdk.messages.count_tokens(model="tiny", messages=TURNS)


async def test_access_log_and_metrics_name_both_routes(
    tiny_door: Doors,  # noqa: F811 - the fixture
    door_stub: Stub,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="warpcore.access")
    await load_tiny_embedder(door_stub)
    async with async_openai_client(tiny_door) as client, async_anthropic_client(tiny_door) as anthropic_sdk:
        await client.embeddings.create(model="tiny-embed", input="hello")
        await anthropic_sdk.messages.count_tokens(model="tiny", messages=TURNS)
        with pytest.raises(openai.BadRequestError):
            await client.embeddings.create(model="tiny", input="hello")
    lines = [record for record in caplog.records if getattr(record, "protocol", "") == "http"]
    assert [(line.method, line.code, line.model) for line in lines] == [  # type: ignore[attr-defined]
        ("/v1/embeddings", "OK", "tiny-embed"),
        ("/v1/messages/count_tokens", "OK", "tiny"),
        ("/v1/embeddings", "FAILED_PRECONDITION", "tiny"),
    ]
    for method, code in [("/v1/embeddings", "OK"), ("/v1/messages/count_tokens", "OK")]:
        labels = {"method": method, "code": code, "protocol": "http"}
        assert tiny_door.engine.metrics.registry.get_sample_value("warpcore_requests_total", labels) == 1.0
