"""The HTTP door with the official openai and anthropic SDKs, sync and async, whole and streamed, against the llama.cpp
backend (the tiny model): the same answers as gRPC, event sequences the SDKs' own accumulators accept, system and stop
sequences, the usage chunk, the model list by each dialect's headers, the access log and metrics (of the legacy
Completions too), and Anthropic's prefill."""

from __future__ import annotations

import asyncio
import json

import grpc
import httpx2
import pytest
from anthropic.types import MessageParam

from tests.conftest import TINY_MODEL, collect
from tests.http_door import (
    anthropic_client,
    async_anthropic_client,
    async_openai_client,
    base_url,
    openai_client,
    text_of,
)
from tests.http_door_support import ANTHROPIC_MESSAGES, OPENAI_MESSAGES
from warpcore.server.core.domain import BackendKind, LoadSpec
from warpcore.server.doors import Doors
from warpcore.server.logs import JsonFormatter
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc


@pytest.fixture
async def tiny_door(doors: Doors) -> Doors:
    await doors.engine.load(LoadSpec("tiny", BackendKind.LLAMA_CPP, TINY_MODEL, None, None))
    return doors


async def grpc_text(doors: Doors, max_tokens: int) -> str:
    """The same chat through the gRPC door: what every HTTP answer must equal."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{doors.grpc.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        request = pb.GenerateRequest(
            model_id="tiny",
            messages=[pb.ChatMessage(role=pb.ROLE_USER, content="hello")],
            options=pb.GenerationOptions(max_tokens=max_tokens, temperature=0),
        )
        text, _ = await collect(stub.Generate(request))
    return text


async def test_openai_sdk_sync_and_async_whole_and_streamed_give_the_grpc_answer(tiny_door: Doors) -> None:
    text = await grpc_text(tiny_door, 12)
    words = text.split()
    assert len(words) > 2
    # A stop sequence: the SDK's stream helper refuses an answer cut by the length limit.
    expected = text[: text.index(words[2])]
    options = {"model": "tiny", "messages": OPENAI_MESSAGES, "max_tokens": 12, "temperature": 0, "stop": [words[2]]}

    def sync_calls() -> tuple[str | None, str | None]:
        with openai_client(tiny_door) as client:
            whole = client.chat.completions.create(**options)  # type: ignore[call-overload]
            with client.chat.completions.stream(**options) as stream:  # type: ignore[arg-type]
                streamed = stream.get_final_completion()
        assert whole.choices[0].finish_reason == streamed.choices[0].finish_reason == "stop"
        assert whole.usage is not None
        assert whole.usage.prompt_tokens > 0
        return whole.choices[0].message.content, streamed.choices[0].message.content

    assert await asyncio.to_thread(sync_calls) == (expected, expected)
    async with async_openai_client(tiny_door) as client:
        whole = await client.chat.completions.create(**options)  # type: ignore[call-overload]
        async with client.chat.completions.stream(**options) as stream:  # type: ignore[arg-type]
            streamed = await stream.get_final_completion()
        cut = await client.chat.completions.create(model="tiny", messages=OPENAI_MESSAGES, max_completion_tokens=12)
    assert whole.choices[0].message.content == streamed.choices[0].message.content == expected
    assert whole.model == streamed.model == "tiny"
    assert cut.choices[0].finish_reason == "length"
    assert cut.usage is not None
    assert cut.usage.completion_tokens == 12


async def test_anthropic_sdk_sync_and_async_whole_and_streamed_give_the_grpc_answer(tiny_door: Doors) -> None:
    expected = await grpc_text(tiny_door, 8)
    # The anthropic SDK has no `temperature` argument any more; the API still takes the field.
    options = {"model": "tiny", "messages": ANTHROPIC_MESSAGES, "max_tokens": 8, "extra_body": {"temperature": 0}}

    def sync_calls() -> list[str]:
        with anthropic_client(tiny_door) as client:
            whole = client.messages.create(**options)  # type: ignore[call-overload]
            with client.messages.stream(**options) as stream:  # type: ignore[arg-type]
                streamed = stream.get_final_message()
        assert whole.stop_reason == streamed.stop_reason == "max_tokens"
        assert whole.usage.output_tokens == streamed.usage.output_tokens == 8
        assert whole.usage.input_tokens == streamed.usage.input_tokens > 0  # message_delta carries the count
        return [text_of(whole), text_of(streamed)]

    assert await asyncio.to_thread(sync_calls) == [expected, expected]
    async with async_anthropic_client(tiny_door) as client:
        whole = await client.messages.create(**options)  # type: ignore[call-overload]
        async with client.messages.stream(**options) as stream:  # type: ignore[arg-type]
            streamed = await stream.get_final_message()
    assert [text_of(whole), text_of(streamed)] == [expected, expected]


async def test_anthropic_system_and_stop_sequences_reach_the_model(tiny_door: Doors) -> None:
    async with async_anthropic_client(tiny_door) as client:
        greedy = {"temperature": 0}
        plain = await client.messages.create(
            model="tiny", messages=ANTHROPIC_MESSAGES, max_tokens=12, extra_body=greedy
        )
        text = text_of(plain)
        words = text.split()
        assert len(words) > 2
        stopped = await client.messages.create(
            model="tiny",
            messages=ANTHROPIC_MESSAGES,
            max_tokens=12,
            extra_body=greedy,
            stop_sequences=[words[2]],
        )
        with_system = await client.messages.create(
            model="tiny",
            messages=ANTHROPIC_MESSAGES,
            max_tokens=12,
            extra_body=greedy,
            system="you are the world",
        )
    assert stopped.stop_reason == "stop_sequence"
    assert text_of(stopped) == text[: text.index(words[2])]
    assert with_system.content != plain.content


async def test_usage_chunk_comes_last_with_empty_choices(tiny_door: Doors) -> None:
    async with async_openai_client(tiny_door) as client:
        stream = await client.chat.completions.create(
            model="tiny",
            messages=OPENAI_MESSAGES,
            max_tokens=4,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4
    assert chunks[-2].choices[0].finish_reason == "length"
    assert all(chunk.usage is None for chunk in chunks[:-1])
    assert chunks[0].choices[0].delta.role == "assistant"
    # On the wire, as the API documents: `"usage": null` in every other chunk when asked for, absent otherwise.
    async with httpx2.AsyncClient(base_url=base_url(tiny_door)) as raw:
        for asked in (True, False):
            body = {"model": "tiny", "messages": OPENAI_MESSAGES, "max_tokens": 4, "stream": True}
            response = await raw.post("/v1/chat/completions", json={**body, "stream_options": {"include_usage": asked}})
            lines = response.text.split("\n")
            sent = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
            assert len(sent) >= 3
            assert {str(chunk.get("usage", "absent")) for chunk in sent[:-1]} == {"None" if asked else "absent"}
            assert ("usage" in sent[-1]) is asked


async def test_models_list_in_each_dialect_by_its_headers(tiny_door: Doors) -> None:
    async with async_openai_client(tiny_door) as openai_sdk, async_anthropic_client(tiny_door) as anthropic_sdk:
        openai_models = [model async for model in openai_sdk.models.list()]
        anthropic_models = [model async for model in anthropic_sdk.models.list()]
        one = await anthropic_sdk.models.retrieve("tiny")
    assert [(model.id, model.owned_by) for model in openai_models] == [("tiny", "llama_cpp")]
    assert [(model.id, model.type) for model in anthropic_models] == [("tiny", "model")]
    assert one.display_name == TINY_MODEL


@pytest.mark.parametrize("route", ["/v1/chat/completions", "/v1/completions"])
async def test_access_log_and_metrics_name_the_protocol(
    tiny_door: Doors, caplog: pytest.LogCaptureFixture, route: str
) -> None:
    caplog.set_level("INFO", logger="warpcore.access")
    async with async_openai_client(tiny_door) as client:
        if route == "/v1/completions":
            raw = await client.completions.with_raw_response.create(model="tiny", prompt="hello", max_tokens=3)
            headers = raw.headers
        else:
            answered = await client.chat.completions.with_raw_response.create(
                model="tiny", messages=OPENAI_MESSAGES, max_tokens=3
            )
            headers = answered.headers
    line = next(record for record in caplog.records if getattr(record, "protocol", "") == "http")
    assert line.request_id == headers["x-request-id"]  # type: ignore[attr-defined]
    assert json.loads(JsonFormatter().format(line))["request_id"] == headers["x-request-id"]
    assert (line.method, line.code, line.model, line.completion_tokens, line.finish_reason) == (  # type: ignore[attr-defined]
        route,
        "OK",
        "tiny",
        3,
        "length",
    )
    sample = tiny_door.engine.metrics.registry.get_sample_value(
        "warpcore_requests_total", {"method": route, "code": "OK", "protocol": "http"}
    )
    assert sample == 1.0


async def test_a_last_assistant_message_is_continued_as_anthropic_prefills_it(tiny_door: Doors) -> None:
    """Messages ending with an assistant's text ask for its continuation (Anthropic's prefill): its text opens the
    answer, which goes on from it, where the OpenAI dialect answers after it in a turn of its own (the template's
    end of turn and a new opening: more prompt tokens)."""
    greedy = {"temperature": 0}
    start = "the world and"
    prefilled: list[MessageParam] = [*ANTHROPIC_MESSAGES, {"role": "assistant", "content": start}]
    async with async_anthropic_client(tiny_door) as client, async_openai_client(tiny_door) as openai_sdk:
        asked = await client.messages.count_tokens(model="tiny", messages=ANTHROPIC_MESSAGES)
        counted = await client.messages.count_tokens(model="tiny", messages=prefilled)
        continued = await client.messages.create(model="tiny", messages=prefilled, max_tokens=6, extra_body=greedy)
        after = await openai_sdk.chat.completions.create(
            model="tiny", messages=[*OPENAI_MESSAGES, {"role": "assistant", "content": start}], max_tokens=1
        )
    assert after.usage is not None
    assert asked.input_tokens < counted.input_tokens < after.usage.prompt_tokens
    assert continued.usage.input_tokens == counted.input_tokens
    assert continued.stop_reason == "max_tokens"
    # The same over gRPC, asked for with continue_last_message: the same prompt, the same text.
    async with grpc.aio.insecure_channel(f"127.0.0.1:{tiny_door.grpc.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        messages = [
            pb.ChatMessage(role=pb.ROLE_USER, content=ANTHROPIC_MESSAGES[0]["content"]),  # type: ignore[arg-type]
            pb.ChatMessage(role=pb.ROLE_ASSISTANT, content=start),
        ]
        options = pb.GenerationOptions(max_tokens=6, temperature=0)
        request = pb.GenerateRequest(model_id="tiny", messages=messages, options=options, continue_last_message=True)
        text, result = await collect(stub.Generate(request))
        count = await stub.CountTokens(pb.CountTokensRequest(request=request))
        refused = pb.GenerateRequest(model_id="tiny", prompt="the", options=options, continue_last_message=True)
        with pytest.raises(grpc.aio.AioRpcError) as no_message:
            await collect(stub.Generate(refused))
    assert text == text_of(continued)
    assert result.usage.prompt_tokens == count.count.prompt_tokens == counted.input_tokens
    assert no_message.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # A tester's finding: the refusal named messages, which a prompt request has none of.
    assert (no_message.value.details() or "").startswith("continue_last_message continues the last message")
