"""A request that names no max_tokens gets the server's default: 256, or the operator's --max-tokens-limit when
lower (every such request was refused for a field its client never sent)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import openai
import pytest

from tests.conftest import TINY_MODEL, collect, failed_stream, serving_doors
from tests.http_door import async_openai_client, openai_messages
from warpcore.server.core.domain import BackendKind, LoadSpec
from warpcore.server.core.limits import Limits
from warpcore.server.doors import Doors
from warpcore.server.rpc.server import ServingOptions
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

LIMIT = 20


@pytest.fixture
async def limited(server_env: dict[str, str]) -> AsyncIterator[Doors]:
    async with serving_doors(server_env, ServingOptions(limits=Limits(max_tokens=LIMIT))) as doors:
        await doors.engine.load(LoadSpec("tiny", BackendKind.LLAMA_CPP, TINY_MODEL, None, None))
        yield doors


async def test_a_generate_without_max_tokens_stops_at_the_servers_lower_limit(limited: Doors) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{limited.grpc.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        unnamed = pb.GenerateRequest(model_id="tiny", prompt="the world", options=pb.GenerationOptions(temperature=0))
        _, result = await collect(stub.Generate(unnamed))
        assert result.finish_reason == pb.FINISH_REASON_LENGTH
        assert result.usage.completion_tokens == LIMIT
        counted = await stub.CountTokens(pb.CountTokensRequest(request=unnamed))
        assert counted.count.prompt_tokens > 0  # CountTokens takes it too
        named = pb.GenerateRequest(model_id="tiny", prompt="x", options=pb.GenerationOptions(max_tokens=LIMIT + 1))
        _, refused = await failed_stream(stub.Generate(named))
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT  # one that names more is still refused
    assert refused.details() == f"options.max_tokens must be between 1 and {LIMIT}"


async def test_a_chat_completion_without_max_tokens_stops_at_the_servers_lower_limit(limited: Doors) -> None:
    async with async_openai_client(limited) as client:
        answer = await client.chat.completions.create(model="tiny", messages=openai_messages(), temperature=0)
        assert answer.choices[0].finish_reason == "length"
        assert answer.usage is not None
        assert answer.usage.completion_tokens == LIMIT
        with pytest.raises(openai.BadRequestError):
            await client.chat.completions.create(model="tiny", messages=openai_messages(), max_tokens=LIMIT + 1)


async def test_a_response_without_max_output_tokens_stops_at_the_servers_lower_limit(limited: Doors) -> None:
    async with async_openai_client(limited) as client:
        answer = await client.responses.create(model="tiny", input="the world", temperature=0)
    assert answer.usage is not None
    assert answer.usage.output_tokens == LIMIT
